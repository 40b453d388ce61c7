package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/tasker-go/tasker/store"
)

// restoreGap is how far above every stored transaction id a restored
// store's new era begins: more ids than the original can use between the
// dump and the restore (2^40: a year at 35,000 transactions a second), so
// no cursor it handed out meanwhile reaches the new era, and, added at each
// restore, room for millions of restores within an int64.
const restoreGap = 1 << 40

// restorePoint is one row of event_restores (migration 00023): cursors
// strictly between after and the start of the era that began at first
// were handed out by the store the database was dumped from, for events
// the restore undid.
type restorePoint struct {
	after position
	first int64
}

// boundary is the least cursor of the era that began at first: the tail
// as it stands before any of the era's rows are below the horizon.
func (r restorePoint) boundary() position { return position{r.first - 1, math.MaxInt64} }

// restoreState is what Open learns of the database's restores: the base
// its transactions' ids are moved by (0 if it was never restored) and its
// restore points, oldest first.
type restoreState struct {
	xactBase int64
	points   []restorePoint
}

// identitySQL names where the store lives: the cluster, the database and
// the tasks table (found through the search path, so the schema too). A
// dump restored anywhere, even into the same cluster, gets new oids; a
// physical replica keeps all three. The cluster's identifier is read
// apart (clusterIdentity), since a server may refuse it.
const identitySQL = `SELECT (SELECT oid FROM pg_database WHERE datname = current_database())::text || '/' || 'tasks'::regclass::oid::text`

// clusterIdentity is the cluster's system identifier, or "" if the server
// does not let this user read it (the oids still tell a restore into
// another database of the same cluster).
func clusterIdentity(ctx context.Context, conn *sql.Conn, logger *slog.Logger) string {
	var id string
	if err := conn.QueryRowContext(ctx, `SELECT system_identifier::text FROM pg_control_system()`).Scan(&id); err != nil {
		logger.LogAttrs(ctx, slog.LevelWarn, "postgres: cannot read the cluster's system identifier; a restore into another cluster is told only by its transaction ids",
			slog.Any("error", err))
		return ""
	}
	return id
}

// detectRestore runs after the migrations, under their lock, so one
// coordinator of the schema decides. It records where the store lives and,
// if that changed since the last Open or a stored row was written by a
// transaction id this cluster has not reached, starts a new era (see
// migration 00023): a restore point, and the xact column's default moved
// by the new base. Then it returns the store's restore state.
func detectRestore(ctx context.Context, conn *sql.Conn, logger *slog.Logger, now time.Time) (st restoreState, err error) {
	cluster := clusterIdentity(ctx, conn, logger)
	// Repeatable read, with txid_current() the first statement: every row
	// this transaction sees was written by a transaction older than its
	// own id, so a row at or above that id (plus the base) can only have
	// come from another cluster, never from a coordinator writing now.
	tx, err := conn.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead})
	if err != nil {
		return st, fmt.Errorf("postgres restore check: %w", classify(err))
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, tx.Rollback())
		}
	}()
	var cur int64
	if err := tx.QueryRowContext(ctx, `SELECT txid_current()`).Scan(&cur); err != nil {
		return st, fmt.Errorf("postgres restore check: read transaction id: %w", classify(err))
	}
	var identity, stored string
	if err := tx.QueryRowContext(ctx, identitySQL).Scan(&identity); err != nil {
		return st, fmt.Errorf("postgres restore check: read identity: %w", classify(err))
	}
	identity = cluster + "/" + identity
	switch err := tx.QueryRowContext(ctx, `SELECT identity FROM store_identity WHERE id = 1`).Scan(&stored); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return st, fmt.Errorf("postgres restore check: read stored identity: %w", classify(err))
	}
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(max(xact_base), 0) FROM event_restores`).Scan(&st.xactBase); err != nil {
		return st, fmt.Errorf("postgres restore check: read restores: %w", classify(err))
	}
	// The log's last entry, or its floor if pruning left none.
	var last position
	if err := tx.QueryRowContext(ctx, `SELECT xact, seq FROM event_floor WHERE id = 1`).Scan(&last.xact, &last.seq); err != nil {
		return st, fmt.Errorf("postgres restore check: read event floor: %w", classify(err))
	}
	var newest position
	switch err := tx.QueryRowContext(ctx, `SELECT xact, seq FROM transitions ORDER BY xact DESC, seq DESC LIMIT 1`).Scan(&newest.xact, &newest.seq); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return st, fmt.Errorf("postgres restore check: read the newest event: %w", classify(err))
	case last.less(newest):
		last = newest
	}

	var reason string
	switch {
	case stored != "" && !sameIdentity(stored, identity):
		reason = fmt.Sprintf("the store was at %s and is now at %s (cluster/database/table): restored from a dump", stored, identity)
	case last.xact >= cur+st.xactBase:
		reason = fmt.Sprintf("event %s was written by a transaction id this cluster has not reached (%d): restored from another cluster", last, cur+st.xactBase)
	}
	if reason != "" {
		first := max(last.xact, cur+st.xactBase) + restoreGap
		st.xactBase = first - cur
		if _, err := tx.ExecContext(ctx, `INSERT INTO event_restores (xact_base, first_xact, restored_after_xact, restored_after_seq, detected_at, reason)
			VALUES ($1, $2, $3, $4, $5, $6)`, st.xactBase, first, last.xact, last.seq, now.UnixNano(), reason); err != nil {
			return st, fmt.Errorf("postgres restore check: record the restore: %w", classify(err))
		}
		// A literal, not a lookup, so a row's insert costs what it did.
		if _, err := tx.ExecContext(ctx, `ALTER TABLE transitions ALTER COLUMN xact SET DEFAULT txid_current() + `+strconv.FormatInt(st.xactBase, 10)); err != nil {
			return st, fmt.Errorf("postgres restore check: move transaction ids: %w", classify(err))
		}
		logger.LogAttrs(ctx, slog.LevelWarn, "postgres: this store was restored; events from here on are numbered in a new era, and cursors handed out after the backup are refused",
			slog.String("reason", reason), slog.String("restored_after", last.String()), slog.Int64("first_xact", first))
	}
	if stored != identity {
		if _, err := tx.ExecContext(ctx, `INSERT INTO store_identity (id, identity) VALUES (1, $1)
			ON CONFLICT (id) DO UPDATE SET identity = EXCLUDED.identity`, identity); err != nil {
			return st, fmt.Errorf("postgres restore check: record identity: %w", classify(err))
		}
	}
	rows, err := tx.QueryContext(ctx, `SELECT restored_after_xact, restored_after_seq, first_xact FROM event_restores ORDER BY xact_base`)
	if err != nil {
		return st, fmt.Errorf("postgres restore check: read restores: %w", classify(err))
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var r restorePoint
		if err := rows.Scan(&r.after.xact, &r.after.seq, &r.first); err != nil {
			return st, fmt.Errorf("postgres restore check: read restores: %w", classify(err))
		}
		st.points = append(st.points, r)
	}
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("postgres restore check: read restores: %w", classify(err))
	}
	if err := tx.Commit(); err != nil {
		return st, fmt.Errorf("postgres restore check: %w", classify(err))
	}
	return st, nil
}

// sameIdentity compares two identities, leaving out the cluster when
// either could not read it.
func sameIdentity(a, b string) bool {
	if a == b {
		return true
	}
	ac, ar, _ := strings.Cut(a, "/")
	bc, br, _ := strings.Cut(b, "/")
	return (ac == "" || bc == "") && ar == br
}

// checkRestored refuses a cursor that a restore undid the events of.
func (s *Store) checkRestored(cursor string, after position) error {
	for _, r := range s.restores {
		if r.after.less(after) && after.less(r.boundary()) {
			return &store.CursorRestoredError{Cursor: cursor, Resume: r.after.String()}
		}
	}
	return nil
}

// eraStart is the least tail of the current era (see restorePoint), or
// the log's start if the store was never restored.
func (s *Store) eraStart() position {
	if len(s.restores) == 0 {
		return position{}
	}
	return s.restores[len(s.restores)-1].boundary()
}
