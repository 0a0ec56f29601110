// Package sqlstore implements cardrail.Store once, in SQL that PostgreSQL and
// SQLite both accept, over a small connection interface. The packages
// store/postgres and store/sqlite supply the connections, the schema
// migrations and the few dialect differences.
package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cardrail/cardrail"
)

// Querier is what both a connection pool and a transaction offer.
type Querier interface {
	Exec(ctx context.Context, query string, args ...any) (int64, error)
	Query(ctx context.Context, query string, args ...any) (Rows, error)
	QueryRow(ctx context.Context, query string, args ...any) Row
}

// Rows iterates a result set.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Row is a single-row result; Scan returns an error wrapping
// cardrail.ErrNoRows when there is none.
type Row interface {
	Scan(dest ...any) error
}

// Conn is a database handle able to start write transactions.
type Conn interface {
	Querier
	Begin(ctx context.Context) (TxConn, error)
	Ping(ctx context.Context) error
	Close() error
}

// TxConn is an open transaction.
type TxConn interface {
	Querier
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
}

// Dialect is what differs between the databases.
type Dialect struct {
	Name string
	// ForUpdate is appended to locking reads (" FOR UPDATE" on PostgreSQL;
	// empty on SQLite, whose write transactions hold the database lock).
	ForUpdate string
	// Arrays says the driver binds Go slices as SQL arrays, so multi-row
	// writes go as one unnest statement each (see rows.go) instead of
	// chunked VALUES lists.
	Arrays bool
	// Retryable reports serialization failures and deadlocks.
	Retryable func(error) bool
	// UniqueViolation reports a unique-constraint failure.
	UniqueViolation func(error) bool
}

// Store is the SQL implementation of cardrail.Store.
type Store struct {
	queries
	conn    Conn
	dialect Dialect
	now     func() time.Time
}

// New returns a Store over conn.
func New(conn Conn, d Dialect) *Store {
	s := &Store{conn: conn, dialect: d, now: time.Now}
	s.queries = queries{q: conn, d: &s.dialect, now: s.nowUTC}
	return s
}

func (s *Store) nowUTC() time.Time { return s.now().UTC() }

// Dialect implements cardrail.Store.
func (s *Store) Dialect() string { return s.dialect.Name }

// Ping implements cardrail.Store.
func (s *Store) Ping(ctx context.Context) error { return s.conn.Ping(ctx) }

// Close implements cardrail.Store.
func (s *Store) Close() error { return s.conn.Close() }

// Conn exposes the underlying connection for packages that add their own
// statements (idempotency, benchmarks).
func (s *Store) Conn() Conn { return s.conn }

const maxTxAttempts = 8

// ErrConnectionLost marks a transaction whose connection died before its
// COMMIT was sent (the database restarted, or terminated the session): the
// database rolled it back, so Tx runs it again on another connection. A
// connection lost once COMMIT is on its way is not marked: whether that
// transaction committed is unknown.
var ErrConnectionLost = errors.New("database connection lost before commit")

// Tx implements cardrail.Store: fn runs in one transaction, retried on
// serialization failures and deadlocks with jittered backoff.
func (s *Store) Tx(ctx context.Context, fn func(cardrail.Tx) error) error {
	var err error
	for attempt := 0; attempt < maxTxAttempts; attempt++ {
		if attempt > 0 {
			backoff := time.Duration(1<<min(attempt, 6)) * time.Millisecond
			backoff += time.Duration(rand.Int64N(int64(backoff)))
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
		}
		err = s.tx(ctx, fn)
		if err == nil || !s.dialect.Retryable(err) && !errors.Is(err, ErrConnectionLost) {
			return err
		}
	}
	return fmt.Errorf("transaction gave up after %d attempts: %w", maxTxAttempts, err)
}

func (s *Store) tx(ctx context.Context, fn func(cardrail.Tx) error) (err error) {
	raw, err := s.conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	c := &pipelineConn{TxConn: raw}
	defer func() {
		if err != nil {
			// The rollback error is secondary to the one that caused it.
			rollback, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
			_ = c.Rollback(rollback)
			cancel()
		}
	}()
	t := &tx{queries: queries{q: c, d: &s.dialect, now: s.nowUTC}}
	if err = fn(t); err != nil {
		return err
	}
	if m, ok := cardrail.IdempotencyMarkFrom(ctx); ok {
		if _, err = c.Exec(ctx, markApplied, m.Scope, m.Key, nullable(m.Created), m.Token); err != nil {
			return fmt.Errorf("mark idempotency key: %w", err)
		}
	}
	// A caller whose deadline passed has been told, or is about to be,
	// that its request was rolled back: so it is. Past this point the
	// commit is not cut short by the caller leaving, which would leave its
	// outcome unknown; it is bounded on its own.
	if err = ctx.Err(); err != nil {
		return err
	}
	commit, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	if err = c.Commit(commit); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// commitTimeout bounds a commit (and a rollback), which no caller's
// cancellation interrupts: only a database that has stopped answering
// reaches it. A request's deadline (at most 20 s), a commit and the
// idempotency write after it fit inside the HTTP server's 30 s write
// timeout, so even then the client gets its answer.
const commitTimeout = 5 * time.Second

// tx implements cardrail.Tx.
type tx struct {
	queries
}

// queries holds every statement, run on either the pool or a transaction.
type queries struct {
	q   Querier
	d   *Dialect
	now func() time.Time
}

var _ cardrail.Store = (*Store)(nil)
var _ cardrail.Tx = (*tx)(nil)

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

func notFound(err error) bool { return errors.Is(err, cardrail.ErrNoRows) }
