package sqlstore

import "context"

// Stmt is one statement of a pipeline.
type Stmt struct {
	SQL  string
	Args []any
}

// Pipeliner is implemented by transactions that can send several
// statements in one round trip (pgx batches on PostgreSQL). Others run the
// statements one after another, which costs nothing in-process (SQLite).
type Pipeliner interface {
	ExecPipeline(ctx context.Context, stmts []Stmt) error
}

// Committer is implemented by transactions that can send their last
// statements together with COMMIT.
type Committer interface {
	CommitPipeline(ctx context.Context, stmts []Stmt) error
}

// pipelineConn is a transaction that holds back inserts whose results
// nobody reads, and sends them together: before the next statement that
// does read, and before commit. Order is kept, so the database sees exactly
// the statements it would have seen one by one.
type pipelineConn struct {
	TxConn
	pending []Stmt
}

func (p *pipelineConn) flush(ctx context.Context) error {
	if len(p.pending) == 0 {
		return nil
	}
	stmts := p.pending
	p.pending = nil
	if pl, ok := p.TxConn.(Pipeliner); ok && len(stmts) > 1 {
		return pl.ExecPipeline(ctx, stmts)
	}
	for _, s := range stmts {
		if _, err := p.TxConn.Exec(ctx, s.SQL, s.Args...); err != nil {
			return err
		}
	}
	return nil
}

func (p *pipelineConn) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	if err := p.flush(ctx); err != nil {
		return 0, err
	}
	return p.TxConn.Exec(ctx, query, args...)
}

func (p *pipelineConn) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	if err := p.flush(ctx); err != nil {
		return nil, err
	}
	return p.TxConn.Query(ctx, query, args...)
}

func (p *pipelineConn) QueryRow(ctx context.Context, query string, args ...any) Row {
	if err := p.flush(ctx); err != nil {
		return errRow{err}
	}
	return p.TxConn.QueryRow(ctx, query, args...)
}

func (p *pipelineConn) Commit(ctx context.Context) error {
	if c, ok := p.TxConn.(Committer); ok {
		stmts := p.pending
		p.pending = nil
		return c.CommitPipeline(ctx, stmts)
	}
	if err := p.flush(ctx); err != nil {
		return err
	}
	return p.TxConn.Commit(ctx)
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// deferExec queues a statement whose result is not needed until commit;
// outside a pipelined transaction it runs at once.
func (q *queries) deferExec(ctx context.Context, query string, args ...any) error {
	if p, ok := q.q.(*pipelineConn); ok {
		p.pending = append(p.pending, Stmt{SQL: query, Args: args})
		return nil
	}
	_, err := q.q.Exec(ctx, query, args...)
	return err
}
