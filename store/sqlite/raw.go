package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"
)

// rawWriter runs the batch's most frequent statements on the writer's
// driver connection itself, inside the committer's transaction. Through database/sql every call allocated a fresh argument slice,
// checked and converted each value and took the connection's locks: a
// fifth of the coordinator's allocations under load, all of it on the
// committer's goroutine, which every write waits for. Here the arguments
// go in a slice the committer reuses, as the driver's own values.
//
// Inserts run as queries (run), not executions: the driver binds a
// query's arguments and takes its first step in one cgo call, where an
// execution costs a call per argument besides (a transition row has
// eleven). A statement whose caller needs to know how many rows it changed
// runs as an execution (exec), which says so: as a query it would need
// RETURNING, a temporary table on every run, or a second query.
//
// Only the committer's goroutine uses it, between the transaction's other
// calls, never during one.
type rawWriter struct {
	conn *sql.Conn
	// stmts are rawStatements, prepared on conn's driver connection.
	stmts map[string]rawStmt
	// args is the reused argument storage; exec's callers fill it.
	args []driver.NamedValue
}

// newRawWriter prepares rawStatements on conn's driver connection.
func newRawWriter(ctx context.Context, conn *sql.Conn) (*rawWriter, error) {
	r := &rawWriter{conn: conn, stmts: make(map[string]rawStmt, len(rawStatements))}
	err := conn.Raw(func(dc any) error {
		c, ok := dc.(driver.ConnPrepareContext)
		if !ok {
			return fmt.Errorf("driver connection %T cannot prepare statements", dc)
		}
		for _, q := range rawStatements {
			st, err := c.PrepareContext(ctx, q)
			if err != nil {
				return fmt.Errorf("prepare %q: %w", q, err)
			}
			rs, ok := st.(rawStmt)
			if !ok {
				_ = st.Close()
				return fmt.Errorf("driver statement %T cannot execute or query with a context", st)
			}
			r.stmts[q] = rs
		}
		return nil
	})
	if err != nil {
		return nil, errors.Join(err, r.close())
	}
	return r, nil
}

// rawStmt is a driver statement that can be both executed and queried.
type rawStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

// reset empties the arguments, with room for a statement of n.
func (r *rawWriter) reset(n int) {
	if cap(r.args) < n {
		r.args = make([]driver.NamedValue, 0, n)
	}
	r.args = r.args[:0]
}

// add appends arguments: each must be a driver.Value (int64, float64,
// bool, []byte, string, time.Time or nil).
func (r *rawWriter) add(vs ...driver.Value) {
	for _, v := range vs {
		r.args = append(r.args, driver.NamedValue{Ordinal: len(r.args) + 1, Value: v})
	}
}

// exec runs query, one of rawStatements, with the arguments added since
// reset.
func (r *rawWriter) exec(ctx context.Context, query string) (driver.Result, error) {
	st := r.stmts[query]
	if st == nil {
		return nil, fmt.Errorf("statement %q was not prepared for the raw writer", query)
	}
	var res driver.Result
	err := r.conn.Raw(func(any) error {
		var err error
		res, err = st.ExecContext(ctx, r.args)
		return err
	})
	return res, err
}

// run runs query, one of rawStatements, with the arguments added since
// reset, for its effect alone: a statement that returns rows has done all
// its writing by the time the first is ready (SQLite runs a write to its
// end on the first step), and they are not read.
func (r *rawWriter) run(ctx context.Context, query string) error {
	st := r.stmts[query]
	if st == nil {
		return fmt.Errorf("statement %q was not prepared for the raw writer", query)
	}
	return r.conn.Raw(func(any) error {
		rows, err := st.QueryContext(ctx, r.args)
		if err != nil {
			return err
		}
		return rows.Close()
	})
}

// close finalizes the prepared statements; the connection stays open.
func (r *rawWriter) close() error {
	var errs []error
	err := r.conn.Raw(func(any) error {
		for q, st := range r.stmts {
			errs = append(errs, st.Close())
			delete(r.stmts, q)
		}
		return nil
	})
	return errors.Join(append(errs, err)...)
}

// nullString is s, or nil (SQL NULL) when s is empty.
func nullString(s string) driver.Value {
	if s == "" {
		return nil
	}
	return s
}

// nullNanos is t in Unix nanoseconds, or nil when t is zero.
func nullNanos(t time.Time) driver.Value {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

// nullJSON is raw as text, or nil when raw is nil.
func nullJSON(raw []byte) driver.Value {
	if raw == nil {
		return nil
	}
	return string(raw)
}
