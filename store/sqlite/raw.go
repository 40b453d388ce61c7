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
// driver connection itself, inside the transaction database/sql began on
// it. Through database/sql every call allocated a fresh argument slice,
// checked and converted each value and took the connection's locks: a
// fifth of the coordinator's allocations under load, all of it on the
// committer's goroutine, which every write waits for. Here the arguments
// go in a slice the committer reuses, as the driver's own values.
//
// Only the committer's goroutine uses it, between the transaction's other
// calls, never during one.
type rawWriter struct {
	conn *sql.Conn
	// stmts are rawStatements, prepared on conn's driver connection.
	stmts map[string]driver.StmtExecContext
	// args is the reused argument storage; exec's callers fill it.
	args []driver.NamedValue
}

// newRawWriter prepares rawStatements on conn's driver connection.
func newRawWriter(ctx context.Context, conn *sql.Conn) (*rawWriter, error) {
	r := &rawWriter{conn: conn, stmts: make(map[string]driver.StmtExecContext, len(rawStatements))}
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
			ex, ok := st.(driver.StmtExecContext)
			if !ok {
				_ = st.Close()
				return fmt.Errorf("driver statement %T cannot execute with a context", st)
			}
			r.stmts[q] = ex
		}
		return nil
	})
	if err != nil {
		return nil, errors.Join(err, r.close())
	}
	return r, nil
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

// close finalizes the prepared statements; the connection stays open.
func (r *rawWriter) close() error {
	var errs []error
	err := r.conn.Raw(func(any) error {
		for q, st := range r.stmts {
			if c, ok := st.(driver.Stmt); ok {
				errs = append(errs, c.Close())
			}
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
