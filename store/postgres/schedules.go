package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/store"
)

// Schedules are few and change once per firing, so their writes do not ride
// the group committer's pipelines (which need every statement prepared on
// its one connection): each runs as its own short transaction on the pool.
// synchronous_commit is forced on inside it, so a returned write is durable
// whatever the server's default.

const scheduleColumns = `id, name, namespace, template_name, template_version, cron, timezone, context, overlap,
	catchup_window, paused, next_fire_at, buffered_at, revision, created_at, updated_at`

func scanSchedule(row pgx.Row) (*store.Schedule, error) {
	var (
		s                                        store.Schedule
		ctxJSON                                  string
		window, next, buffered, created, updated int64
	)
	if err := row.Scan(&s.ID, &s.Name, &s.Namespace, &s.TemplateName, &s.TemplateVersion, &s.Cron, &s.Timezone, &ctxJSON,
		&s.Overlap, &window, &s.Paused, &next, &buffered, &s.Revision, &created, &updated); err != nil {
		return nil, err
	}
	s.Context = json.RawMessage(ctxJSON)
	s.CatchupWindow = time.Duration(window)
	s.NextFireAt, s.Buffered = fromNanos(next), fromNanos(buffered)
	s.CreatedAt, s.UpdatedAt = fromNanos(created), fromNanos(updated)
	return &s, nil
}

const scheduleRunColumns = `schedule_id, fire_at, task_id, skipped, skipped_count, last_fire_at, created_at`

func scanScheduleRun(row pgx.Row) (*store.ScheduleRun, error) {
	var (
		r                   store.ScheduleRun
		fire, last, created int64
	)
	if err := row.Scan(&r.ScheduleID, &fire, &r.TaskID, &r.Skipped, &r.Count, &last, &created); err != nil {
		return nil, err
	}
	r.FireAt, r.LastFireAt, r.CreatedAt = fromNanos(fire), fromNanos(last), fromNanos(created)
	return &r, nil
}

// scheduleTx runs fn in a durable transaction on the pool.
func (s *Store) scheduleTx(ctx context.Context, op string, fn func(pgx.Tx) error) error {
	if s.isClosed() {
		return fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	err := pgx.BeginFunc(ctx, s.reader, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = on`); err != nil {
			return err
		}
		return fn(tx)
	})
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrScheduleExists) {
			return err
		}
		return s.readErr(err, "%s", op)
	}
	return nil
}

// ScheduleCreate implements store.ScheduleStore.
func (s *Store) ScheduleCreate(ctx context.Context, sched *store.Schedule) (*store.Schedule, error) {
	if err := store.ValidateSchedule(sched); err != nil {
		return nil, err
	}
	out := *sched
	out.Revision = 1
	err := s.scheduleTx(ctx, "ScheduleCreate", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO schedules (`+scheduleColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT DO NOTHING`,
			out.ID, out.Name, out.Namespace, out.TemplateName, out.TemplateVersion, out.Cron, out.Timezone, string(out.Context),
			out.Overlap, int64(out.CatchupWindow), out.Paused, toNanos(out.NextFireAt), toNanos(out.Buffered), out.Revision,
			toNanos(out.CreatedAt), toNanos(out.UpdatedAt))
		if err != nil {
			return fmt.Errorf("insert schedule %s: %w", out.Name, err)
		}
		if tag.RowsAffected() == 0 {
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
	sched, err := scanSchedule(s.reader.QueryRow(ctx, `SELECT `+scheduleColumns+` FROM schedules WHERE name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("schedule %s: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return nil, s.readErr(err, "get schedule %s", name)
	}
	return sched, nil
}

// ScheduleList implements store.ScheduleStore.
func (s *Store) ScheduleList(ctx context.Context) ([]*store.Schedule, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("ScheduleList: %w", store.ErrClosed)
	}
	rows, err := s.reader.Query(ctx, `SELECT `+scheduleColumns+` FROM schedules ORDER BY name`)
	if err != nil {
		return nil, s.readErr(err, "list schedules")
	}
	out, err := collect(rows, scanSchedule)
	if err != nil {
		return nil, s.readErr(err, "list schedules")
	}
	return out, nil
}

// ScheduleDelete implements store.ScheduleStore.
func (s *Store) ScheduleDelete(ctx context.Context, name string) error {
	return s.scheduleTx(ctx, "ScheduleDelete", func(tx pgx.Tx) error {
		var id string
		err := tx.QueryRow(ctx, `DELETE FROM schedules WHERE name = $1 RETURNING id`, name).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("schedule %s: %w", name, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("delete schedule %s: %w", name, err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM schedule_runs WHERE schedule_id = $1`, id); err != nil {
			return fmt.Errorf("delete schedule %s runs: %w", name, err)
		}
		return nil
	})
}

// ScheduleAdvance implements store.ScheduleStore. The UPDATE's WHERE on
// revision takes the row lock and re-checks after a concurrent writer
// commits, so of two racing advances from one revision exactly one matches.
func (s *Store) ScheduleAdvance(ctx context.Context, p *store.ScheduleAdvanceParams) (*store.Schedule, error) {
	if p == nil || p.ID == "" {
		return nil, errors.New("ScheduleAdvance: params and id are required")
	}
	var out *store.Schedule
	err := s.scheduleTx(ctx, "ScheduleAdvance", func(tx pgx.Tx) error {
		sched, err := scanSchedule(tx.QueryRow(ctx, `UPDATE schedules SET next_fire_at = $1, buffered_at = $2, paused = $3,
			revision = revision + 1, updated_at = $4 WHERE id = $5 AND revision = $6 RETURNING `+scheduleColumns,
			toNanos(p.NextFireAt), toNanos(p.Buffered), p.Paused, toNanos(p.At), p.ID, p.ExpectRevision))
		if errors.Is(err, pgx.ErrNoRows) {
			var rev int64
			err := tx.QueryRow(ctx, `SELECT revision FROM schedules WHERE id = $1`, p.ID).Scan(&rev)
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("schedule %s: %w", p.ID, store.ErrNotFound)
			}
			if err != nil {
				return fmt.Errorf("advance schedule %s: %w", p.ID, err)
			}
			return fmt.Errorf("schedule %s is at revision %d, not %d: %w", p.ID, rev, p.ExpectRevision, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("advance schedule %s: %w", p.ID, err)
		}
		if _, err := insertRuns(ctx, tx, p.ID, p.Runs, p.At); err != nil {
			return err
		}
		out = sched
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// insertRuns stores runs; a task run for a fire time that has one already
// is left out (the partial unique index).
func insertRuns(ctx context.Context, tx pgx.Tx, scheduleID string, runs []*store.ScheduleRun, at time.Time) (int, error) {
	stored := 0
	for _, r := range runs {
		created := r.CreatedAt
		if created.IsZero() {
			created = at
		}
		tag, err := tx.Exec(ctx, `INSERT INTO schedule_runs (`+scheduleRunColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (schedule_id, fire_at) WHERE task_id <> '' DO NOTHING`,
			scheduleID, toNanos(r.FireAt), r.TaskID, r.Skipped, r.Count, toNanos(r.LastFireAt), toNanos(created))
		if err != nil {
			return 0, fmt.Errorf("insert run of schedule %s: %w", scheduleID, err)
		}
		stored += int(tag.RowsAffected())
	}
	return stored, nil
}

// ScheduleRunRecord implements store.ScheduleStore.
func (s *Store) ScheduleRunRecord(ctx context.Context, scheduleID string, runs []*store.ScheduleRun) (int, error) {
	var stored int
	err := s.scheduleTx(ctx, "ScheduleRunRecord", func(tx pgx.Tx) error {
		var n int
		// FOR SHARE keeps a concurrent delete from leaving orphan runs.
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM schedules WHERE id = $1 FOR SHARE) s`, scheduleID).Scan(&n); err != nil {
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
	query := `SELECT ` + scheduleRunColumns + ` FROM schedule_runs WHERE schedule_id = $1`
	args := []any{p.ScheduleID}
	if !p.From.IsZero() {
		args = append(args, toNanos(p.From))
		query += ` AND fire_at >= $` + strconv.Itoa(len(args))
	}
	if !p.To.IsZero() {
		args = append(args, toNanos(p.To))
		query += ` AND fire_at <= $` + strconv.Itoa(len(args))
	}
	if p.TasksOnly {
		query += ` AND task_id <> ''`
	}
	limit := p.Limit
	if limit <= 0 {
		limit = store.DefaultListLimit
	}
	args = append(args, limit)
	query += ` ORDER BY fire_at DESC, seq DESC LIMIT $` + strconv.Itoa(len(args))
	rows, err := s.reader.Query(ctx, query, args...)
	if err != nil {
		return nil, s.readErr(err, "list runs of schedule %s", p.ScheduleID)
	}
	out, err := collect(rows, scanScheduleRun)
	if err != nil {
		return nil, s.readErr(err, "list runs of schedule %s", p.ScheduleID)
	}
	return out, nil
}
