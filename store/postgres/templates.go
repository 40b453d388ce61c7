package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-go/tasker/store"
)

const stmtRegisterTemplate = "tasker_register_template"

// registerTemplateSQL inserts a template version unless it exists, and
// returns either the new row (true) or the stored one (false).
const registerTemplateSQL = `WITH inserted AS (
	INSERT INTO templates (` + templateColumns + `)
	VALUES ($1::text, $2::text, $3::text, $4::text, $5::text, $6::bigint)
	ON CONFLICT (namespace, name, version) DO NOTHING
	RETURNING ` + templateColumns + `
)
SELECT ` + templateColumns + `, true FROM inserted
UNION ALL
SELECT ` + templateColumns + `, false FROM templates
WHERE namespace = $1::text AND name = $2::text AND version = $3::text AND NOT EXISTS (SELECT 1 FROM inserted)`

// TemplateRegister implements store.Store. It goes through the group
// committer like every other write, so it is durable when it returns.
func (s *Store) TemplateRegister(ctx context.Context, params *store.TemplateRegisterParams) (*store.Template, bool, error) {
	if err := params.Validate(); err != nil {
		return nil, false, err
	}
	key := params.Namespace + "/" + params.Name + "@" + params.Version
	args := []any{params.Namespace, params.Name, params.Version, params.Digest, string(params.Spec), toNanos(params.At)}
	var (
		tmpl    *store.Template
		created bool
	)
	err := s.write(ctx, "TemplateRegister", func(p *pipe) {
		tmpl, created = nil, false
		p.query(stmtRegisterTemplate, args, func(rows pgx.Rows) error {
			var err error
			tmpl, err = scanTemplate(rows, &created)
			return err
		}, func(err *pgconn.PgError) error {
			return fmt.Errorf("TemplateRegister: insert template %s: %w", key, err)
		})
	})
	if err != nil {
		return nil, false, err
	}
	if tmpl == nil {
		// Another coordinator inserted it after the statement began; ON
		// CONFLICT waited for that to commit, so it is visible now.
		if tmpl, err = s.TemplateGet(ctx, &store.TemplateGetParams{
			Namespace: params.Namespace, Name: params.Name, Version: params.Version,
		}); err != nil {
			return nil, false, fmt.Errorf("TemplateRegister: read template %s: %w", key, err)
		}
	}
	if !created && tmpl.Digest != params.Digest {
		return nil, false, fmt.Errorf("template %s has digest %s, not %s: %w",
			key, tmpl.Digest, params.Digest, store.ErrTemplateExists)
	}
	return tmpl, created, nil
}

// TemplateGet implements store.Store.
func (s *Store) TemplateGet(ctx context.Context, params *store.TemplateGetParams) (*store.Template, error) {
	if params == nil {
		return nil, errors.New("TemplateGet: params are nil")
	}
	if s.isClosed() {
		return nil, fmt.Errorf("TemplateGet: %w", store.ErrClosed)
	}
	tmpl, err := scanTemplate(s.reader.QueryRow(ctx, `SELECT `+templateColumns+` FROM templates
		WHERE namespace = $1 AND name = $2 AND version = $3`, params.Namespace, params.Name, params.Version))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("template %s/%s@%s: %w", params.Namespace, params.Name, params.Version, store.ErrNotFound)
	}
	if err != nil {
		return nil, s.readErr(err, "get template %s/%s@%s", params.Namespace, params.Name, params.Version)
	}
	return tmpl, nil
}

// TemplateList implements store.Store. Insertion order within a name is the
// seq identity column.
func (s *Store) TemplateList(ctx context.Context, params *store.TemplateListParams) ([]*store.Template, error) {
	if params == nil {
		params = &store.TemplateListParams{}
	}
	if s.isClosed() {
		return nil, fmt.Errorf("TemplateList: %w", store.ErrClosed)
	}
	query := `SELECT ` + templateColumns + ` FROM templates WHERE true`
	var args []any
	if params.Namespace != "" {
		args = append(args, params.Namespace)
		query += ` AND namespace = $` + strconv.Itoa(len(args))
	}
	if params.Name != "" {
		args = append(args, params.Name)
		query += ` AND name = $` + strconv.Itoa(len(args))
	}
	query += ` ORDER BY namespace, name, seq`

	rows, err := s.reader.Query(ctx, query, args...)
	if err != nil {
		return nil, s.readErr(err, "list templates")
	}
	tmpls, err := collect(rows, func(row pgx.Row) (*store.Template, error) { return scanTemplate(row) })
	if err != nil {
		return nil, s.readErr(err, "list templates")
	}
	return tmpls, nil
}
