package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
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
	// stmts are prepared on conn's driver connection, by text.
	stmts map[string]driver.Stmt
	// args is the reused argument storage; exec's callers fill it.
	args []driver.NamedValue
}

func newRawWriter(conn *sql.Conn) *rawWriter {
	return &rawWriter{conn: conn, stmts: map[string]driver.Stmt{}}
}

// reset empties args for a statement of n arguments and returns it.
func (r *rawWriter) reset(n int) []driver.NamedValue {
	if cap(r.args) < n {
		r.args = make([]driver.NamedValue, 0, n)
	}
	r.args = r.args[:0]
	return r.args
}

// add appends one argument: v must be a driver.Value (int64, float64,
// bool, []byte, string, time.Time or nil).
func (r *rawWriter) add(v driver.Value) {
	r.args = append(r.args, driver.NamedValue{Ordinal: len(r.args) + 1, Value: v})
}

// exec runs query, prepared once, with the arguments added since reset.
func (r *rawWriter) exec(ctx context.Context, query string) (driver.Result, error) {
	var res driver.Result
	err := r.conn.Raw(func(dc any) error {
		st := r.stmts[query]
		if st == nil {
			c, ok := dc.(driver.ConnPrepareContext)
			if !ok {
				return fmt.Errorf("driver connection %T cannot prepare statements", dc)
			}
			var err error
			if st, err = c.PrepareContext(ctx, query); err != nil {
				return err
			}
			r.stmts[query] = st
		}
		ex, ok := st.(driver.StmtExecContext)
		if !ok {
			return fmt.Errorf("driver statement %T cannot execute with a context", st)
		}
		var err error
		res, err = ex.ExecContext(ctx, r.args)
		return err
	})
	return res, err
}

// close finalizes the prepared statements; the connection stays open.
func (r *rawWriter) close() error {
	var first error
	err := r.conn.Raw(func(any) error {
		for q, st := range r.stmts {
			if err := st.Close(); err != nil && first == nil {
				first = err
			}
			delete(r.stmts, q)
		}
		return nil
	})
	if first != nil {
		return first
	}
	return err
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
