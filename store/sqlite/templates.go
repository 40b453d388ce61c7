package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/tasker-go/tasker/store"
)

// TemplateRegister implements store.Store. It goes through the group
// committer like every other write, so it is durable when it returns.
func (s *Store) TemplateRegister(ctx context.Context, params *store.TemplateRegisterParams) (*store.Template, bool, error) {
	if err := params.Validate(); err != nil {
		return nil, false, err
	}
	var (
		tmpl    *store.Template
		created bool
	)
	err := s.write(ctx, "TemplateRegister", func(ctx context.Context, tx *wtx) error {
		var err error
		tmpl, created, err = registerTemplate(ctx, tx, params)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return tmpl, created, nil
}

func registerTemplate(ctx context.Context, tx *wtx, p *store.TemplateRegisterParams) (*store.Template, bool, error) {
	row := templateRow{
		Namespace: p.Namespace,
		Name:      p.Name,
		Version:   p.Version,
		Digest:    p.Digest,
		Spec:      string(p.Spec),
		CreatedAt: toNanos(p.At),
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO templates (`+templateColumns+`)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (namespace, name, version) DO NOTHING`,
		row.Namespace, row.Name, row.Version, row.Digest, row.Spec, row.CreatedAt)
	if err != nil {
		return nil, false, fmt.Errorf("insert template %s/%s@%s: %w", p.Namespace, p.Name, p.Version, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, false, fmt.Errorf("insert template %s/%s@%s: %w", p.Namespace, p.Name, p.Version, err)
	} else if n == 1 {
		return row.template(), true, nil
	}

	var existing templateRow
	err = tx.GetContext(ctx, &existing, `SELECT `+templateColumns+` FROM templates
		WHERE namespace = ? AND name = ? AND version = ?`, p.Namespace, p.Name, p.Version)
	if err != nil {
		return nil, false, fmt.Errorf("read template %s/%s@%s: %w", p.Namespace, p.Name, p.Version, err)
	}
	if existing.Digest != p.Digest {
		return nil, false, fmt.Errorf("template %s/%s@%s has digest %s, not %s: %w",
			p.Namespace, p.Name, p.Version, existing.Digest, p.Digest, store.ErrTemplateExists)
	}
	return existing.template(), false, nil
}

// TemplateGet implements store.Store.
func (s *Store) TemplateGet(ctx context.Context, params *store.TemplateGetParams) (*store.Template, error) {
	if params == nil {
		return nil, errors.New("TemplateGet: params are nil")
	}
	if s.isClosed() {
		return nil, fmt.Errorf("TemplateGet: %w", store.ErrClosed)
	}
	var row templateRow
	err := s.reader.GetContext(ctx, &row, `SELECT `+templateColumns+` FROM templates
		WHERE namespace = ? AND name = ? AND version = ?`, params.Namespace, params.Name, params.Version)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("template %s/%s@%s: %w", params.Namespace, params.Name, params.Version, store.ErrNotFound)
	}
	if err != nil {
		return nil, s.readErr(err, "get template %s/%s@%s", params.Namespace, params.Name, params.Version)
	}
	return row.template(), nil
}

// TemplateList implements store.Store. Insertion order within a name is the
// rowid, which SQLite assigns increasing.
func (s *Store) TemplateList(ctx context.Context, params *store.TemplateListParams) ([]*store.Template, error) {
	if params == nil {
		params = &store.TemplateListParams{}
	}
	if s.isClosed() {
		return nil, fmt.Errorf("TemplateList: %w", store.ErrClosed)
	}
	query := `SELECT ` + templateColumns + ` FROM templates WHERE 1 = 1`
	var args []any
	if params.Namespace != "" {
		query += ` AND namespace = ?`
		args = append(args, params.Namespace)
	}
	if params.Name != "" {
		query += ` AND name = ?`
		args = append(args, params.Name)
	}
	query += ` ORDER BY namespace, name, rowid`

	var rows []templateRow
	if err := s.reader.SelectContext(ctx, &rows, query, args...); err != nil {
		return nil, s.readErr(err, "list templates")
	}
	out := make([]*store.Template, len(rows))
	for i := range rows {
		out[i] = rows[i].template()
	}
	return out, nil
}
