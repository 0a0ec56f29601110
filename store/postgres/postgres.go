// Package postgres opens Cardrail's production database through pgx v5: a
// connection pool whose transactions run at READ COMMITTED, with row locks
// taken in a fixed order and every balance change conditional, so that
// correctness never rests on the isolation level. Serialization failures and
// deadlocks are retried by the store.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Open connects to url, applies the migrations and returns the store.
func Open(ctx context.Context, url string) (*sqlstore.Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse postgres url: %w", err)
	}
	if cfg.MaxConns < 16 {
		cfg.MaxConns = 16
	}
	// Statements are prepared once per connection and cached (pgx's
	// default); the batch statements come in a few bucketed shapes
	// (sqlstore/batch.go), so the cache holds them all.
	cfg.ConnConfig.StatementCacheCapacity = 1024
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect postgres: %w", err)
	}
	if err := Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return sqlstore.New(&Conn{Pool: pool}, Dialect), nil
}

// Migrate applies the embedded migrations.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub, goose.WithAllowOutofOrder(true))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate postgres: %w", err)
	}
	return nil
}

// Dialect is PostgreSQL's.
var Dialect = sqlstore.Dialect{
	Name:      "postgres",
	ForUpdate: " FOR UPDATE",
	Retryable: func(err error) bool {
		var e *pgconn.PgError
		return errors.As(err, &e) && (e.Code == "40001" || e.Code == "40P01")
	},
	UniqueViolation: func(err error) bool {
		var e *pgconn.PgError
		return errors.As(err, &e) && e.Code == "23505"
	},
}

// Conn adapts a pgx pool to sqlstore.Conn.
type Conn struct {
	Pool *pgxpool.Pool
}

type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

type adapter struct{ q querier }

func (a adapter) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	t, err := a.q.Exec(ctx, query, args...)
	return t.RowsAffected(), err
}

func (a adapter) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	r, err := a.q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return rows{r}, nil
}

func (a adapter) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return row{a.q.QueryRow(ctx, query, args...)}
}

// Exec implements sqlstore.Querier.
func (c *Conn) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	return adapter{c.Pool}.Exec(ctx, query, args...)
}

// Query implements sqlstore.Querier.
func (c *Conn) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	return adapter{c.Pool}.Query(ctx, query, args...)
}

// QueryRow implements sqlstore.Querier.
func (c *Conn) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return adapter{c.Pool}.QueryRow(ctx, query, args...)
}

// Begin implements sqlstore.Conn.
func (c *Conn) Begin(ctx context.Context) (sqlstore.TxConn, error) {
	t, err := c.Pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return txConn{adapter{t}, t}, nil
}

// Ping implements sqlstore.Conn.
func (c *Conn) Ping(ctx context.Context) error { return c.Pool.Ping(ctx) }

// Close implements sqlstore.Conn.
func (c *Conn) Close() error { c.Pool.Close(); return nil }

type txConn struct {
	adapter
	t pgx.Tx
}

func (t txConn) Commit(ctx context.Context) error { return t.t.Commit(ctx) }

// ExecPipeline implements sqlstore.Pipeliner: the statements go out as one
// pgx batch, in one round trip.
func (t txConn) ExecPipeline(ctx context.Context, stmts []sqlstore.Stmt) error {
	b := &pgx.Batch{}
	for _, s := range stmts {
		b.Queue(s.SQL, s.Args...)
	}
	br := t.t.SendBatch(ctx, b)
	for range stmts {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return err
		}
	}
	return br.Close()
}
func (t txConn) Rollback(ctx context.Context) error { return t.t.Rollback(ctx) }

type rows struct{ pgx.Rows }

func (r rows) Close() { r.Rows.Close() }

type row struct{ r pgx.Row }

func (r row) Scan(dest ...any) error {
	err := r.r.Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w", cardrail.ErrNoRows)
	}
	return err
}
