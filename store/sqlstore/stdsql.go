package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/cardrail/cardrail"
)

// SQLConn adapts database/sql handles to Conn: writes and transactions go to
// Writer, plain reads to Reader (which may be the same handle). SQLite uses a
// single writer connection and a pool of readers.
type SQLConn struct {
	Writer *sql.DB
	Reader *sql.DB
}

// Exec implements Querier.
func (c *SQLConn) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	return execSQL(ctx, c.Writer, query, args...)
}

// Query implements Querier.
func (c *SQLConn) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	r, err := c.Reader.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{r}, nil
}

// QueryRow implements Querier.
func (c *SQLConn) QueryRow(ctx context.Context, query string, args ...any) Row {
	return sqlRow{c.Reader.QueryRowContext(ctx, query, args...)}
}

// Begin implements Conn.
func (c *SQLConn) Begin(ctx context.Context) (TxConn, error) {
	t, err := c.Writer.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return sqlTx{t}, nil
}

// Ping implements Conn.
func (c *SQLConn) Ping(ctx context.Context) error { return c.Reader.PingContext(ctx) }

// Close implements Conn.
func (c *SQLConn) Close() error {
	err := c.Writer.Close()
	if c.Reader != c.Writer {
		err = errors.Join(err, c.Reader.Close())
	}
	return err
}

type execContext interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func execSQL(ctx context.Context, e execContext, query string, args ...any) (int64, error) {
	r, err := e.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return r.RowsAffected()
}

type sqlTx struct{ t *sql.Tx }

func (t sqlTx) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	return execSQL(ctx, t.t, query, args...)
}

func (t sqlTx) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	r, err := t.t.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{r}, nil
}

func (t sqlTx) QueryRow(ctx context.Context, query string, args ...any) Row {
	return sqlRow{t.t.QueryRowContext(ctx, query, args...)}
}

func (t sqlTx) Commit(context.Context) error   { return t.t.Commit() }
func (t sqlTx) Rollback(context.Context) error { return t.t.Rollback() }

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { _ = r.Rows.Close() }

type sqlRow struct{ r *sql.Row }

func (r sqlRow) Scan(dest ...any) error {
	err := r.r.Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w", cardrail.ErrNoRows)
	}
	return err
}
