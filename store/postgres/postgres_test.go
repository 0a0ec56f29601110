package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	neturl "net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/internal/testdb"
	"github.com/cardrail/cardrail/store/postgres"
	"github.com/cardrail/cardrail/store/sqlstore"
	"github.com/cardrail/cardrail/store/storetest"
)

// open returns a store on a new database, closed (then dropped by testdb)
// when t ends.
func open(t *testing.T) *sqlstore.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), testdb.URL(t, "postgres"))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, open)
}

// Write transactions are planned as key lookups, and only they are: the
// settings end with the transaction.
func TestWriteTransactionsPlanKeyLookups(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	setting := func(q sqlstore.Querier) string {
		t.Helper()
		var v string
		if err := q.QueryRow(ctx, "SELECT current_setting('enable_hashjoin') || current_setting('enable_mergejoin') || current_setting('enable_seqscan')").Scan(&v); err != nil {
			t.Fatalf("read settings: %v", err)
		}
		return v
	}
	tx, err := s.Conn().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := setting(tx); got != "offoffoff" {
		t.Errorf("inside a write transaction: hash join, merge join, seq scan = %q, want all off", got)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := setting(s.Conn()); got != "ononon" {
		t.Errorf("outside a transaction: %q, want the server's defaults (all on)", got)
	}
}

// Every text column compares byte by byte, whatever the database's locale
// (migration 00009): a column added without COLLATE "C" would fail here.
func TestTextColumnsCompareBytewise(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	rows, err := s.Conn().Query(ctx, `SELECT table_name || '.' || column_name, collation_name IS NOT DISTINCT FROM 'C'
		FROM information_schema.columns WHERE table_schema = current_schema() AND data_type = 'text'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	sawCards := false
	for rows.Next() {
		var col string
		var ok bool
		if err := rows.Scan(&col, &ok); err != nil {
			t.Fatal(err)
		}
		if !ok {
			t.Errorf("%s compares by the database's locale, not byte by byte", col)
		}
		sawCards = sawCards || col == "cards.reference"
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if !sawCards {
		t.Error("cards.reference was not among the text columns checked")
	}
}

// Lists that would read whole tables use their indexes, in the plan a
// prepared statement ends up with: pgx prepares every query, and after a
// few executions PostgreSQL may keep one generic plan for all values,
// where an index's condition cannot be proved from a parameter's value.
// The plan is taken inside a write transaction, whose settings price
// sequential scans out: on the test's near-empty tables a whole-table
// read is otherwise cheaper.
func TestIndexedLists(t *testing.T) {
	storetest.IndexedLists(t, open, postgres.Dialect, func(ctx context.Context, conn sqlstore.Conn, query string, args []any) (string, error) {
		values := make([]string, len(args))
		for i, a := range args {
			switch v := a.(type) {
			case string:
				values[i] = "'" + strings.ReplaceAll(v, "'", "''") + "'"
			case bool, int, int64:
				values[i] = fmt.Sprint(v)
			default:
				return "", fmt.Errorf("argument %d is a %T, which this test cannot write as a literal", i+1, a)
			}
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			return "", err
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, "SET LOCAL plan_cache_mode = force_generic_plan"); err != nil {
			return "", err
		}
		if _, err := tx.Exec(ctx, "PREPARE listed AS "+query); err != nil {
			return "", err
		}
		defer tx.Exec(ctx, "DEALLOCATE listed") // a prepared statement outlives its transaction
		rows, err := tx.Query(ctx, "EXPLAIN (COSTS OFF) EXECUTE listed("+strings.Join(values, ", ")+")")
		if err != nil {
			return "", err
		}
		defer rows.Close()
		var plan []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				return "", err
			}
			plan = append(plan, line)
		}
		return strings.Join(plan, "\n"), rows.Err()
	})
}

// TestInstancesMigrateTogether: instances started at once on a fresh
// database (a deploy) take turns at the migrations instead of racing to
// create the same tables, which failed two starts in six.
func TestInstancesMigrateTogether(t *testing.T) {
	// Without the lock, most runs of three rounds had a start fail here
	// (duplicate pg_type entries as two created the same table).
	for round := range 3 {
		url := testdb.URL(t, "postgres")
		const n = 8
		errs := make(chan error, n)
		for range n {
			go func() {
				s, err := postgres.Open(context.Background(), url)
				if err == nil {
					s.Close()
				}
				errs <- err
			}()
		}
		for range n {
			if err := <-errs; err != nil {
				t.Errorf("round %d: a start failed: %v", round, err)
			}
		}
	}
}

// TestTerminatedSessionsAreRetried: after the database ends every session
// (a restart, a failover, pg_terminate_backend), each idle connection in
// the pool is dead. Transactions and reads must not fail on them: the
// first failure resets the pool and the work runs again on a fresh
// connection. Before, requests failed one per dead connection (14 of 48 in
// a reviewer's burst, authorizations among them).
func TestTerminatedSessionsAreRetried(t *testing.T) {
	ctx := context.Background()
	url := testdb.URL(t, "postgres")
	s, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 8
	run := func(what string, fn func(i int) error) {
		t.Helper()
		errs := make(chan error, n)
		for i := range n {
			go func() { errs <- fn(i) }()
		}
		for range n {
			if err := <-errs; err != nil {
				t.Errorf("%s: %v", what, err)
			}
		}
	}
	write := func(i int) error {
		return s.Tx(ctx, func(tx cardrail.Tx) error {
			if _, err := tx.Setting(ctx, fmt.Sprintf("k%d", i)); err != nil && !errors.Is(err, cardrail.ErrNoRows) {
				return err
			}
			return tx.SetSetting(ctx, fmt.Sprintf("k%d", i), "v")
		})
	}
	read := func(i int) error {
		_, err := s.Setting(ctx, fmt.Sprintf("k%d", i))
		return err
	}
	ping := func(int) error { return s.Ping(ctx) }
	// Fill the pool with n connections, each used moments ago.
	run("warm up", func(int) error { _, err := s.Conn().Exec(ctx, "SELECT pg_sleep(0.05)"); return err })
	run("write", write)

	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	for round, work := range []func(int) error{write, read, ping} {
		var killed int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM (SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()) k`).Scan(&killed); err != nil {
			t.Fatal(err)
		}
		if killed == 0 {
			t.Fatalf("round %d: no session to terminate", round)
		}
		run(fmt.Sprintf("round %d after %d sessions were terminated", round, killed), work)
		run("warm up again", func(int) error { _, err := s.Conn().Exec(ctx, "SELECT pg_sleep(0.05)"); return err })
	}
}

// TestLostCommitIsReportedUnknown: when the connection fails after COMMIT
// was sent, the database may have committed, so the error must say the
// outcome is unknown (the API answers 503 outcome_unknown) rather than
// that the transaction failed, which would invite a blind retry. Here the
// commit does land: a deferred trigger holds it for a second, the
// connection is cut meanwhile, and the row is there afterwards.
func TestLostCommitIsReportedUnknown(t *testing.T) {
	ctx := context.Background()
	url := testdb.URL(t, "postgres")
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	proxy := newCutProxy(t, url)
	s, err := postgres.Open(ctx, proxy.url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := admin.Exec(ctx, `CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS
		$$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$;
		CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON settings DEFERRABLE INITIALLY DEFERRED
		FOR EACH ROW EXECUTE FUNCTION slow_commit()`); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- s.Tx(ctx, func(tx cardrail.Tx) error { return tx.SetSetting(ctx, "committed", "maybe") })
	}()
	// Wait for the COMMIT to be running (in the deferred trigger), then cut.
	for {
		var n int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
			AND state = 'active' AND query ILIKE 'commit%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the transaction ended before its commit was seen running: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	proxy.cut()
	err = <-done
	if !errors.Is(err, cardrail.ErrOutcomeUnknown) {
		t.Fatalf("a commit cut off in flight returned %v, not ErrOutcomeUnknown", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var v string
		err := admin.QueryRow(ctx, `SELECT value FROM settings WHERE key = 'committed'`).Scan(&v)
		if err == nil {
			break // it did commit: "unknown" was the honest answer
		}
		if !errors.Is(err, pgx.ErrNoRows) || time.Now().After(deadline) {
			t.Fatalf("the cut-off commit never landed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cutProxy forwards TCP to PostgreSQL and can cut it off, as a network
// partition would: every connection drops and no new one gets through (not
// even the cancel request pgx sends for a query its connection lost).
type cutProxy struct {
	url   string
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newCutProxy(t *testing.T, dbURL string) *cutProxy {
	t.Helper()
	u, err := neturl.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	target := u.Host
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	u.Host = ln.Addr().String()
	p := &cutProxy{url: u.String(), ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

func (p *cutProxy) cut() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
