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
	"io"
	"io/fs"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

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
	// A server that accepts the connection and never answers would hang
	// the start (and every later dial) without a word; the URL's
	// connect_timeout, when given, still wins.
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
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
	// Instances starting together on a fresh database (a deploy, a
	// scale-out) would otherwise run the same migrations at once and all
	// but one fail; a session advisory lock makes the others wait their
	// turn and then find nothing left to apply. It is tried every second
	// for up to ten minutes.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 600))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub, goose.WithAllowOutofOrder(true), goose.WithSessionLocker(locker))
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
	Arrays:    true,
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
	n, err := adapter{c.Pool}.Exec(ctx, query, args...)
	if c.again(err, query) {
		n, err = adapter{c.Pool}.Exec(ctx, query, args...)
	}
	return n, err
}

// Query implements sqlstore.Querier.
func (c *Conn) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	r, err := adapter{c.Pool}.Query(ctx, query, args...)
	if c.again(err, query) {
		r, err = adapter{c.Pool}.Query(ctx, query, args...)
	}
	return r, err
}

// QueryRow implements sqlstore.Querier.
func (c *Conn) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return retryRow{c: c, ctx: ctx, query: query, args: args}
}

// retryRow runs its query when scanned, and once more on another
// connection if the first one turned out dead (see Conn.again).
type retryRow struct {
	c     *Conn
	ctx   context.Context
	query string
	args  []any
}

func (r retryRow) Scan(dest ...any) error {
	err := adapter{r.c.Pool}.QueryRow(r.ctx, r.query, r.args...).Scan(dest...)
	if r.c.again(err, r.query) {
		err = adapter{r.c.Pool}.QueryRow(r.ctx, r.query, r.args...).Scan(dest...)
	}
	return err
}

// again reports whether a statement that failed with err on a pooled
// connection may run again on another: when nothing of it was sent, or
// when it only reads.
func (c *Conn) again(err error, query string) bool {
	return c.reset(err) && (pgconn.SafeToRetry(err) || readOnly(query))
}

// reset reports whether err ended its pooled connection, and if so resets
// the pool. After the database restarted or terminated its sessions, every
// idle connection in the pool is dead and each would fail one request in
// turn; resetting at the first makes the retry (and everything after) dial
// afresh.
func (c *Conn) reset(err error) bool {
	if err == nil || !connLost(err) {
		return false
	}
	c.Pool.Reset()
	return true
}

// connLost reports an error that ended its connection: the server shut the
// session down (57P01 admin shutdown, 57P02 crash shutdown, 57P03 starting
// up) or the connection broke.
func connLost(err error) bool {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code == "57P01" || e.Code == "57P02" || e.Code == "57P03"
	}
	return pgconn.SafeToRetry(err) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

func readOnly(query string) bool {
	q := strings.TrimSpace(query)
	return len(q) >= 6 && strings.EqualFold(q[:6], "SELECT")
}

// Begin implements sqlstore.Conn. Nothing is sent yet: BEGIN travels with
// the transaction's first statement and COMMIT with its last writes, so a
// transaction of one read and one pipeline of writes costs two round trips.
func (c *Conn) Begin(ctx context.Context) (sqlstore.TxConn, error) {
	conn, err := c.Pool.Acquire(ctx)
	if err != nil {
		if ctx.Err() == nil {
			// Nothing was sent: the database may be restarting.
			err = fmt.Errorf("%w: %w", sqlstore.ErrConnectionLost, err)
		}
		return nil, err
	}
	return &txConn{conn: conn, pool: c.Pool}, nil
}

// Ping implements sqlstore.Conn; a dead pooled connection is not the
// database being unreachable, so it is tried once more on a fresh one.
func (c *Conn) Ping(ctx context.Context) error {
	err := c.Pool.Ping(ctx)
	if c.reset(err) {
		err = c.Pool.Ping(ctx)
	}
	return err
}

// Close implements sqlstore.Conn.
func (c *Conn) Close() error { c.Pool.Close(); return nil }

// keyLookups plans the rest of a write transaction for what its statements
// are: lookups of a few rows by key. On small tables PostgreSQL's costs
// prefer reading a whole table into a hash over probing its index once per
// key; with 200 cards the authorization batch's locking read hashed every
// card and both accounts of each on every call (268 µs for a batch of 32,
// against 201 µs by key). The settings only price such plans out: a
// statement with no usable index still gets its scan. They end with the
// transaction, and reads outside one keep the planner's own choice.
const keyLookups = `SELECT set_config('enable_seqscan', 'off', true), set_config('enable_hashjoin', 'off', true),
	set_config('enable_mergejoin', 'off', true)`

// txConn is a transaction on one pooled connection whose BEGIN is sent
// with its first statement.
type txConn struct {
	conn  *pgxpool.Conn
	pool  *pgxpool.Pool
	begun bool
	done  bool
}

// lost marks err as sqlstore.ErrConnectionLost when it left the connection
// closed: the session is gone and, COMMIT not yet sent, its transaction
// with it. The pool is reset, as the rest of its connections are likely
// dead too. The commit's pipeline goes through here only when none of it
// was sent.
func (t *txConn) lost(err error) error {
	if err == nil || !t.conn.Conn().IsClosed() {
		return err
	}
	t.pool.Reset()
	return fmt.Errorf("%w: %w", sqlstore.ErrConnectionLost, err)
}

// batch sends stmts in one round trip, after BEGIN when the transaction has
// not begun, and returns the results positioned after BEGIN.
func (t *txConn) batch(ctx context.Context, stmts []sqlstore.Stmt) (pgx.BatchResults, error) {
	b := &pgx.Batch{}
	first := !t.begun
	if first {
		b.Queue("begin")
		b.Queue(keyLookups)
	}
	for _, s := range stmts {
		b.Queue(s.SQL, s.Args...)
	}
	br := t.conn.SendBatch(ctx, b)
	t.begun = true
	if first {
		for range 2 { // BEGIN, then keyLookups
			if _, err := br.Exec(); err != nil {
				br.Close()
				return nil, err
			}
		}
	}
	return br, nil
}

func (t *txConn) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	if t.begun {
		tag, err := t.conn.Exec(ctx, query, args...)
		return tag.RowsAffected(), t.lost(err)
	}
	br, err := t.batch(ctx, []sqlstore.Stmt{{SQL: query, Args: args}})
	if err != nil {
		return 0, t.lost(err)
	}
	tag, err := br.Exec()
	return tag.RowsAffected(), t.lost(errors.Join(err, br.Close()))
}

func (t *txConn) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	if t.begun {
		r, err := t.conn.Query(ctx, query, args...)
		if err != nil {
			return nil, t.lost(err)
		}
		return txRows{rows{r}, t}, nil
	}
	br, err := t.batch(ctx, []sqlstore.Stmt{{SQL: query, Args: args}})
	if err != nil {
		return nil, t.lost(err)
	}
	r, err := br.Query()
	if err != nil {
		br.Close()
		return nil, t.lost(err)
	}
	return txRows{batchRows{rows{r}, br}, t}, nil
}

func (t *txConn) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	if t.begun {
		return txRow{row{t.conn.QueryRow(ctx, query, args...)}, t}
	}
	br, err := t.batch(ctx, []sqlstore.Stmt{{SQL: query, Args: args}})
	if err != nil {
		return errRow{t.lost(err)}
	}
	return txRow{batchRow{row{br.QueryRow()}, br}, t}
}

// ExecPipeline implements sqlstore.Pipeliner: the statements go out as one
// pgx batch, in one round trip.
func (t *txConn) ExecPipeline(ctx context.Context, stmts []sqlstore.Stmt) error {
	return t.lost(t.execBatch(ctx, stmts))
}

// txRow and txRows report a connection lost while their results were read.
type txRow struct {
	sqlstore.Row
	t *txConn
}

func (r txRow) Scan(dest ...any) error { return r.t.lost(r.Row.Scan(dest...)) }

type txRows struct {
	sqlstore.Rows
	t *txConn
}

func (r txRows) Err() error { return r.t.lost(r.Rows.Err()) }

// CommitPipeline implements sqlstore.Committer: the last writes and COMMIT
// in one round trip.
func (t *txConn) CommitPipeline(ctx context.Context, stmts []sqlstore.Stmt) error {
	if !t.begun && len(stmts) == 0 {
		t.release(false)
		return nil
	}
	all := append(stmts, sqlstore.Stmt{SQL: "commit"})
	failed, err := t.execBatchAt(ctx, all)
	if err != nil {
		// The caller rolls back. Whether the transaction may have
		// committed depends on what failed:
		var pgErr *pgconn.PgError
		refused := errors.As(err, &pgErr)
		switch {
		case pgconn.SafeToRetry(err):
			// Nothing was sent: rolled back; run again if the connection
			// is dead.
			return t.lost(err)
		case refused && failed < len(all)-1:
			// The server refused a statement before COMMIT, and skips the
			// rest of the batch (or, a FATAL, ended there): rolled back.
			return t.lost(err)
		case refused && !t.conn.Conn().IsClosed():
			// The server refused COMMIT itself and lives: rolled back.
			return err
		}
		// The connection failed or timed out with COMMIT on its way, or a
		// FATAL answered COMMIT (as 57P01 can during a synchronous-
		// replication wait, after the commit was made durable): unknown.
		return fmt.Errorf("%w: %w", cardrail.ErrOutcomeUnknown, err)
	}
	t.release(false)
	return nil
}

func (t *txConn) execBatch(ctx context.Context, stmts []sqlstore.Stmt) error {
	_, err := t.execBatchAt(ctx, stmts)
	return err
}

// execBatchAt is execBatch, also saying which statement failed: -1 for
// the transaction's BEGIN, len(stmts) when the batch failed as it closed.
func (t *txConn) execBatchAt(ctx context.Context, stmts []sqlstore.Stmt) (int, error) {
	br, err := t.batch(ctx, stmts)
	if err != nil {
		return -1, err
	}
	for i := range stmts {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return i, err
		}
	}
	return len(stmts), br.Close()
}

func (t *txConn) Commit(ctx context.Context) error { return t.CommitPipeline(ctx, nil) }

// Rollback ends the transaction; a connection that cannot even roll back is
// closed rather than returned to the pool.
func (t *txConn) Rollback(ctx context.Context) error {
	if t.done {
		return nil
	}
	if !t.begun {
		t.release(false)
		return nil
	}
	_, err := t.conn.Exec(ctx, "rollback")
	t.release(err != nil)
	return err
}

func (t *txConn) release(broken bool) {
	if t.done {
		return
	}
	t.done = true
	if broken {
		_ = t.conn.Conn().Close(context.Background())
	}
	t.conn.Release()
}

// batchRows closes the batch once its rows are read.
type batchRows struct {
	rows
	br pgx.BatchResults
}

func (r batchRows) Close() {
	r.rows.Close()
	r.br.Close()
}

// batchRow closes the batch once the row is scanned.
type batchRow struct {
	row
	br pgx.BatchResults
}

func (r batchRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	return errors.Join(err, r.br.Close())
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

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
