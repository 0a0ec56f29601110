package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"

	"modernc.org/sqlite"
)

// maxCachedStmts bounds each of one connection's statement caches (Exec,
// Query). The store's statement texts are few (multi-row writes come in
// power-of-two shapes), so the bound is only a backstop; when it is reached
// the cache starts over, keeping only statements lent to open rows.
const maxCachedStmts = 512

// connector opens modernc connections that reuse prepared statements.
// modernc prepares a statement for every Exec and Query and finalizes it
// afterwards; on the authorization path that parse was a fifth of the
// process's CPU (pprof: sqlite3Prepare under pipelineConn.flush), and once
// Execs were cached, the batch's locking read still spent 3% of the profile
// parsing. An Exec runs to completion and resets its statement before it
// returns, so its uses never overlap. A Query's rows stay open until
// closed, and two queries of one text may be open at once in one
// transaction: a cached query statement is lent to one set of rows at a
// time, and a second query of the same text meanwhile runs unprepared.
type connector struct {
	name string
	drv  *sqlite.Driver
}

func (c connector) Connect(context.Context) (driver.Conn, error) {
	conn, err := c.drv.Open(c.name)
	if err != nil {
		return nil, err
	}
	return &cachingConn{Conn: conn, execs: map[string]*cachedStmt{}, queries: map[string]*cachedStmt{}}, nil
}

func (c connector) Driver() driver.Driver { return c.drv }

// cachingConn is a modernc connection with a statement cache. database/sql
// uses a connection from one goroutine at a time, and closes rows under the
// same lock, so the maps need no lock of their own.
type cachingConn struct {
	driver.Conn
	execs, queries map[string]*cachedStmt
}

// cachedStmt is a prepared statement, and whether it is lent to rows that
// are still open (only ever for queries).
type cachedStmt struct {
	stmt driver.Stmt
	lent bool
}

// cachedRows returns its statement to the cache when closed. (modernc
// resets a prepared statement when its rows close, ready for the next.)
type cachedRows struct {
	driver.Rows
	from *cachedStmt
}

func (r *cachedRows) Close() error {
	r.from.lent = false
	return r.Rows.Close()
}

// The interfaces database/sql looks for, passed through to modernc.
var (
	_ driver.ConnBeginTx        = (*cachingConn)(nil)
	_ driver.ConnPrepareContext = (*cachingConn)(nil)
	_ driver.ExecerContext      = (*cachingConn)(nil)
	_ driver.QueryerContext     = (*cachingConn)(nil)
	_ driver.Pinger             = (*cachingConn)(nil)
	_ driver.SessionResetter    = (*cachingConn)(nil)
	_ driver.Validator          = (*cachingConn)(nil)
)

var errUnsupported = errors.New("sqlite: driver connection lacks an expected interface")

// cached returns cache's statement for query, preparing it on first use.
func (c *cachingConn) cached(ctx context.Context, cache map[string]*cachedStmt, query string) (*cachedStmt, error) {
	if cs, ok := cache[query]; ok {
		return cs, nil
	}
	s, err := c.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if len(cache) >= maxCachedStmts {
		closeCached(cache, false)
	}
	cs := &cachedStmt{stmt: s}
	cache[query] = cs
	return cs, nil
}

func (c *cachingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	cs, err := c.cached(ctx, c.execs, query)
	if err != nil {
		return nil, err
	}
	x, ok := cs.stmt.(driver.StmtExecContext)
	if !ok {
		return nil, errUnsupported
	}
	return x.ExecContext(ctx, args)
}

func (c *cachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	qs, err := c.cached(ctx, c.queries, query)
	if err != nil {
		return nil, err
	}
	if qs.lent {
		q, ok := c.Conn.(driver.QueryerContext)
		if !ok {
			return nil, errUnsupported
		}
		return q.QueryContext(ctx, anonymous(query), args)
	}
	x, ok := qs.stmt.(driver.StmtQueryContext)
	if !ok {
		return nil, errUnsupported
	}
	rows, err := x.QueryContext(ctx, args)
	if err != nil {
		return nil, err
	}
	qs.lent = true
	return &cachedRows{Rows: rows, from: qs}, nil
}

func (c *cachingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	p, ok := c.Conn.(driver.ConnPrepareContext)
	if !ok {
		return nil, errUnsupported
	}
	return p.PrepareContext(ctx, anonymous(query))
}

func (c *cachingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	b, ok := c.Conn.(driver.ConnBeginTx)
	if !ok {
		return nil, errUnsupported
	}
	return b.BeginTx(ctx, opts)
}

func (c *cachingConn) Ping(ctx context.Context) error {
	if p, ok := c.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *cachingConn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *cachingConn) IsValid() bool {
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

// closeCached closes a cache's statements: those lent to open rows too
// when all is set (the connection is closing), else only the others.
func closeCached(cache map[string]*cachedStmt, all bool) {
	for q, s := range cache {
		if all || !s.lent {
			_ = s.stmt.Close()
			delete(cache, q)
		}
	}
}

func (c *cachingConn) Close() error {
	closeCached(c.execs, true)
	closeCached(c.queries, true)
	return c.Conn.Close()
}
