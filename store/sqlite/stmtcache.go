package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"

	"modernc.org/sqlite"
)

// maxCachedStmts bounds one connection's statement cache. The store's
// statement texts are few (multi-row writes come in power-of-two shapes), so
// the bound is only a backstop; when it is reached the cache starts over.
const maxCachedStmts = 512

// connector opens modernc connections whose ExecContext reuses prepared
// statements. modernc prepares a statement for every Exec and finalizes it
// afterwards; on the authorization path that parse was a fifth of the
// process's CPU (pprof: sqlite3Prepare under pipelineConn.flush). Only Exec
// is cached: an Exec runs to completion and resets its statement before it
// returns, so no two uses of one statement can overlap, which a Query's
// still-open rows could.
type connector struct {
	name string
	drv  *sqlite.Driver
}

func (c connector) Connect(context.Context) (driver.Conn, error) {
	conn, err := c.drv.Open(c.name)
	if err != nil {
		return nil, err
	}
	return &cachingConn{Conn: conn, stmts: map[string]driver.Stmt{}}, nil
}

func (c connector) Driver() driver.Driver { return c.drv }

// cachingConn is a modernc connection with an Exec statement cache.
// database/sql uses a connection from one goroutine at a time, so the map
// needs no lock.
type cachingConn struct {
	driver.Conn
	stmts map[string]driver.Stmt
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

func (c *cachingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	s, ok := c.stmts[query]
	if !ok {
		var err error
		if s, err = c.PrepareContext(ctx, query); err != nil {
			return nil, err
		}
		if len(c.stmts) >= maxCachedStmts {
			c.closeStmts()
		}
		c.stmts[query] = s
	}
	x, ok := s.(driver.StmtExecContext)
	if !ok {
		return nil, errUnsupported
	}
	return x.ExecContext(ctx, args)
}

func (c *cachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := c.Conn.(driver.QueryerContext)
	if !ok {
		return nil, errUnsupported
	}
	return q.QueryContext(ctx, query, args)
}

func (c *cachingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	p, ok := c.Conn.(driver.ConnPrepareContext)
	if !ok {
		return nil, errUnsupported
	}
	return p.PrepareContext(ctx, query)
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

func (c *cachingConn) closeStmts() {
	for q, s := range c.stmts {
		_ = s.Close()
		delete(c.stmts, q)
	}
}

func (c *cachingConn) Close() error {
	c.closeStmts()
	return c.Conn.Close()
}
