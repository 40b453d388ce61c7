package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tasker-go/tasker/store"
)

// Schedules are few and change once per firing, so their statements are
// plain (not prepared at Open); their writes still go through the group
// committer, the one writer of the file.

const scheduleColumns = `id, name, namespace, template_name, template_version, cron, timezone, context, overlap,
	catchup_window, paused, next_fire_at, buffered_at, revision, created_at, updated_at`

type scheduleRow struct {
	ID              string `db:"id"`
	Name            string `db:"name"`
	Namespace       string `db:"namespace"`
	TemplateName    string `db:"template_name"`
	TemplateVersion string `db:"template_version"`
	Cron            string `db:"cron"`
	Timezone        string `db:"timezone"`
	Context         string `db:"context"`
	Overlap         string `db:"overlap"`
	CatchupWindow   int64  `db:"catchup_window"`
	Paused          bool   `db:"paused"`
	NextFireAt      int64  `db:"next_fire_at"`
	BufferedAt      int64  `db:"buffered_at"`
	Revision        int64  `db:"revision"`
	CreatedAt       int64  `db:"created_at"`
	UpdatedAt       int64  `db:"updated_at"`
}

func (r *scheduleRow) schedule() *store.Schedule {
	return &store.Schedule{
		ID: r.ID, Name: r.Name, Namespace: r.Namespace, TemplateName: r.TemplateName, TemplateVersion: r.TemplateVersion,
		Cron: r.Cron, Timezone: r.Timezone, Context: json.RawMessage(r.Context), Overlap: r.Overlap,
		CatchupWindow: time.Duration(r.CatchupWindow), Paused: r.Paused, NextFireAt: fromNanos(r.NextFireAt),
		Buffered: fromNanos(r.BufferedAt), Revision: r.Revision, CreatedAt: fromNanos(r.CreatedAt), UpdatedAt: fromNanos(r.UpdatedAt),
	}
}

const scheduleRunColumns = `schedule_id, fire_at, task_id, skipped, skipped_count, last_fire_at, created_at`

type scheduleRunRow struct {
	ScheduleID   string `db:"schedule_id"`
	FireAt       int64  `db:"fire_at"`
	TaskID       string `db:"task_id"`
	Skipped      string `db:"skipped"`
	SkippedCount int    `db:"skipped_count"`
	LastFireAt   int64  `db:"last_fire_at"`
	CreatedAt    int64  `db:"created_at"`
}

func (r *scheduleRunRow) run() *store.ScheduleRun {
	return &store.ScheduleRun{
		ScheduleID: r.ScheduleID, FireAt: fromNanos(r.FireAt), TaskID: r.TaskID, Skipped: r.Skipped,
		Count: r.SkippedCount, LastFireAt: fromNanos(r.LastFireAt), CreatedAt: fromNanos(r.CreatedAt),
	}
}

// ScheduleCreate implements store.ScheduleStore.
func (s *Store) ScheduleCreate(ctx context.Context, sched *store.Schedule) (*store.Schedule, error) {
	if err := store.ValidateSchedule(sched); err != nil {
		return nil, err
	}
	out := *sched
	out.Revision = 1
	err := s.write(ctx, "ScheduleCreate", func(ctx context.Context, tx *wtx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO schedules (`+scheduleColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			out.ID, out.Name, out.Namespace, out.TemplateName, out.TemplateVersion, out.Cron, out.Timezone, string(out.Context),
			out.Overlap, int64(out.CatchupWindow), out.Paused, toNanos(out.NextFireAt), toNanos(out.Buffered), out.Revision,
			toNanos(out.CreatedAt), toNanos(out.UpdatedAt))
		if err != nil {
			return fmt.Errorf("insert schedule %s: %w", out.Name, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("insert schedule %s: %w", out.Name, err)
		} else if n == 0 {
			return fmt.Errorf("schedule %s: %w", out.Name, store.ErrScheduleExists)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// ScheduleGet implements store.ScheduleStore.
func (s *Store) ScheduleGet(ctx context.Context, name string) (*store.Schedule, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("ScheduleGet: %w", store.ErrClosed)
	}
	var row scheduleRow
	err := s.reader.GetContext(ctx, &row, `SELECT `+scheduleColumns+` FROM schedules WHERE name = ?`, name)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("schedule %s: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return nil, s.readErr(err, "get schedule %s", name)
	}
	return row.schedule(), nil
}

// ScheduleList implements store.ScheduleStore.
func (s *Store) ScheduleList(ctx context.Context) ([]*store.Schedule, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("ScheduleList: %w", store.ErrClosed)
	}
	var rows []scheduleRow
	if err := s.reader.SelectContext(ctx, &rows, `SELECT `+scheduleColumns+` FROM schedules ORDER BY name`); err != nil {
		return nil, s.readErr(err, "list schedules")
	}
	out := make([]*store.Schedule, len(rows))
	for i := range rows {
		out[i] = rows[i].schedule()
	}
	return out, nil
}

// ScheduleDelete implements store.ScheduleStore.
func (s *Store) ScheduleDelete(ctx context.Context, name string) error {
	return s.write(ctx, "ScheduleDelete", func(ctx context.Context, tx *wtx) error {
		var id string
		err := tx.GetContext(ctx, &id, `SELECT id FROM schedules WHERE name = ?`, name)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("schedule %s: %w", name, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("delete schedule %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM schedule_runs WHERE schedule_id = ?`, id); err != nil {
			return fmt.Errorf("delete schedule %s runs: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM schedules WHERE id = ?`, id); err != nil {
			return fmt.Errorf("delete schedule %s: %w", name, err)
		}
		return nil
	})
}

// ScheduleAdvance implements store.ScheduleStore.
func (s *Store) ScheduleAdvance(ctx context.Context, p *store.ScheduleAdvanceParams) (*store.Schedule, error) {
	if p == nil || p.ID == "" {
		return nil, errors.New("ScheduleAdvance: params and id are required")
	}
	var out *store.Schedule
	err := s.write(ctx, "ScheduleAdvance", func(ctx context.Context, tx *wtx) error {
		res, err := tx.ExecContext(ctx, `UPDATE schedules SET next_fire_at = ?, buffered_at = ?, paused = ?,
			revision = revision + 1, updated_at = ? WHERE id = ? AND revision = ?`,
			toNanos(p.NextFireAt), toNanos(p.Buffered), p.Paused, toNanos(p.At), p.ID, p.ExpectRevision)
		if err != nil {
			return fmt.Errorf("advance schedule %s: %w", p.ID, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("advance schedule %s: %w", p.ID, err)
		} else if n == 0 {
			var rev int64
			err := tx.GetContext(ctx, &rev, `SELECT revision FROM schedules WHERE id = ?`, p.ID)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("schedule %s: %w", p.ID, store.ErrNotFound)
			}
			if err != nil {
				return fmt.Errorf("advance schedule %s: %w", p.ID, err)
			}
			return fmt.Errorf("schedule %s is at revision %d, not %d: %w", p.ID, rev, p.ExpectRevision, store.ErrConflict)
		}
		if _, err := insertRuns(ctx, tx, p.ID, p.Runs, p.At); err != nil {
			return err
		}
		var row scheduleRow
		if err := tx.GetContext(ctx, &row, `SELECT `+scheduleColumns+` FROM schedules WHERE id = ?`, p.ID); err != nil {
			return fmt.Errorf("read schedule %s: %w", p.ID, err)
		}
		out = row.schedule()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// insertRuns stores runs; a task run for a fire time that has one already
// is left out (the partial unique index).
func insertRuns(ctx context.Context, tx *wtx, scheduleID string, runs []*store.ScheduleRun, at time.Time) (int, error) {
	stored := 0
	for _, r := range runs {
		created := r.CreatedAt
		if created.IsZero() {
			created = at
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO schedule_runs (`+scheduleRunColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (schedule_id, fire_at) WHERE task_id <> '' DO NOTHING`,
			scheduleID, toNanos(r.FireAt), r.TaskID, r.Skipped, r.Count, toNanos(r.LastFireAt), toNanos(created))
		if err != nil {
			return 0, fmt.Errorf("insert run of schedule %s: %w", scheduleID, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, fmt.Errorf("insert run of schedule %s: %w", scheduleID, err)
		}
		stored += int(n)
	}
	return stored, nil
}

// ScheduleRunRecord implements store.ScheduleStore.
func (s *Store) ScheduleRunRecord(ctx context.Context, scheduleID string, runs []*store.ScheduleRun) (int, error) {
	var stored int
	err := s.write(ctx, "ScheduleRunRecord", func(ctx context.Context, tx *wtx) error {
		var n int
		if err := tx.GetContext(ctx, &n, `SELECT count(*) FROM schedules WHERE id = ?`, scheduleID); err != nil {
			return fmt.Errorf("record runs of schedule %s: %w", scheduleID, err)
		} else if n == 0 {
			return fmt.Errorf("schedule %s: %w", scheduleID, store.ErrNotFound)
		}
		var err error
		stored, err = insertRuns(ctx, tx, scheduleID, runs, time.Now())
		return err
	})
	return stored, err
}

// ScheduleRunList implements store.ScheduleStore.
func (s *Store) ScheduleRunList(ctx context.Context, p *store.ScheduleRunListParams) ([]*store.ScheduleRun, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("ScheduleRunList: %w", store.ErrClosed)
	}
	query := `SELECT ` + scheduleRunColumns + ` FROM schedule_runs WHERE schedule_id = ?`
	args := []any{p.ScheduleID}
	if !p.From.IsZero() {
		query += ` AND fire_at >= ?`
		args = append(args, toNanos(p.From))
	}
	if !p.To.IsZero() {
		query += ` AND fire_at <= ?`
		args = append(args, toNanos(p.To))
	}
	if p.TasksOnly {
		query += ` AND task_id <> ''`
	}
	limit := p.Limit
	if limit <= 0 {
		limit = store.DefaultListLimit
	}
	query += ` ORDER BY fire_at DESC, seq DESC LIMIT ?`
	args = append(args, limit)
	var rows []scheduleRunRow
	if err := s.reader.SelectContext(ctx, &rows, query, args...); err != nil {
		return nil, s.readErr(err, "list runs of schedule %s", p.ScheduleID)
	}
	out := make([]*store.ScheduleRun, len(rows))
	for i := range rows {
		out[i] = rows[i].run()
	}
	return out, nil
}
