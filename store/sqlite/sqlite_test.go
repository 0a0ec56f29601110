package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/internal/testdb"
	"github.com/cardrail/cardrail/store/sqlite"
	"github.com/cardrail/cardrail/store/sqlstore"
	"github.com/cardrail/cardrail/store/storetest"
)

// open returns a store on a new database file, closed when t ends.
func open(t *testing.T) *sqlstore.Store {
	t.Helper()
	path := strings.TrimPrefix(testdb.URL(t, "sqlite"), "sqlite:")
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
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

// TestPragmas checks the durability settings on both handles: the writer
// that commits and the readers that serve every plain read.
func TestPragmas(t *testing.T) {
	s := open(t)
	conn, ok := s.Conn().(*sqlstore.SQLConn)
	if !ok {
		t.Fatalf("Conn() is %T, want *sqlstore.SQLConn", s.Conn())
	}
	for _, tc := range []struct {
		pragma string
		want   string
	}{
		{"journal_mode", "wal"},
		{"synchronous", "2"}, // FULL
		{"foreign_keys", "1"},
		{"temp_store", "2"}, // MEMORY
	} {
		var got string
		if err := s.Conn().QueryRow(t.Context(), "PRAGMA "+tc.pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", tc.pragma, err)
		}
		if got != tc.want {
			t.Errorf("PRAGMA %s = %s on a reader, want %s", tc.pragma, got, tc.want)
		}
		if err := conn.Writer.QueryRowContext(t.Context(), "PRAGMA "+tc.pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s on the writer: %v", tc.pragma, err)
		}
		if got != tc.want {
			t.Errorf("PRAGMA %s = %s on the writer, want %s", tc.pragma, got, tc.want)
		}
	}
}

// TestConcurrentWritersNeverBusy races many writers; the single writer
// connection with IMMEDIATE transactions must queue them, never fail one
// with SQLITE_BUSY.
func TestConcurrentWritersNeverBusy(t *testing.T) {
	const writers, txsEach = 16, 25
	s := open(t)
	ctx := t.Context()
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for w := range writers {
		wg.Go(func() {
			for i := range txsEach {
				err := s.Tx(ctx, func(tx cardrail.Tx) error {
					return tx.SetSetting(ctx, fmt.Sprintf("writer-%d-%d", w, i), "v")
				})
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("writer %d, transaction %d: %w", w, i, err))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	var n int
	if err := s.Conn().QueryRow(ctx, "SELECT COUNT(*) FROM settings").Scan(&n); err != nil {
		t.Fatalf("count settings: %v", err)
	}
	if n != writers*txsEach {
		t.Errorf("settings holds %d rows, want %d", n, writers*txsEach)
	}
}

// TestCachedStatements runs one statement text many times on the writer,
// whose connection keeps it prepared: each run binds its own arguments, a
// run that fails leaves the statement usable, a schema change is picked up,
// and a rolled-back transaction undoes its runs.
func TestCachedStatements(t *testing.T) {
	s := open(t)
	w := s.Conn().(*sqlstore.SQLConn).Writer
	ctx := t.Context()
	if _, err := w.ExecContext(ctx, `CREATE TABLE cache_probe (k TEXT PRIMARY KEY, v INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	const insert = `INSERT INTO cache_probe (k, v) VALUES ($1, $2)`
	for i := range 5 {
		if _, err := w.ExecContext(ctx, insert, fmt.Sprintf("k%d", i), i); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.ExecContext(ctx, insert, "k0", 99); err == nil {
		t.Fatal("duplicate key accepted")
	}
	if _, err := w.ExecContext(ctx, insert, "k5", 5); err != nil {
		t.Fatalf("statement unusable after a failed run: %v", err)
	}
	if _, err := w.ExecContext(ctx, `ALTER TABLE cache_probe ADD COLUMN note TEXT NOT NULL DEFAULT 'x'`); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ExecContext(ctx, insert, "k6", 6); err != nil {
		t.Fatalf("after a schema change: %v", err)
	}
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, insert, "k7", 7); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	var n, sum int
	if err := w.QueryRowContext(ctx, `SELECT COUNT(*), SUM(v) FROM cache_probe WHERE note = 'x'`).Scan(&n, &sum); err != nil {
		t.Fatal(err)
	}
	if n != 7 || sum != 0+1+2+3+4+5+6 {
		t.Fatalf("table holds %d rows summing to %d, want 7 rows summing to 21", n, sum)
	}
}

// TestCachedQueries runs one query text many times on the writer, whose
// connection keeps it prepared: each run sees its own arguments, including
// while rows of the same text are still open in the same transaction.
func TestCachedQueries(t *testing.T) {
	s := open(t)
	w := s.Conn().(*sqlstore.SQLConn).Writer
	ctx := t.Context()
	if _, err := w.ExecContext(ctx, `CREATE TABLE query_probe (k INTEGER PRIMARY KEY, v TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := w.ExecContext(ctx, `INSERT INTO query_probe (k, v) VALUES ($1, $2)`, i, fmt.Sprintf("v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	const query = `SELECT v FROM query_probe WHERE k >= $1 AND k < $2 ORDER BY k`
	read := func(rows *sql.Rows) []string {
		t.Helper()
		var out []string
		for rows.Next() {
			var v string
			if err := rows.Scan(&v); err != nil {
				t.Fatal(err)
			}
			out = append(out, v)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	for i := range 5 {
		rows, err := w.QueryContext(ctx, query, i, i+2)
		if err != nil {
			t.Fatal(err)
		}
		got := read(rows)
		rows.Close()
		if want := []string{fmt.Sprintf("v%d", i), fmt.Sprintf("v%d", i+1)}; !slices.Equal(got, want) {
			t.Fatalf("run %d: %v, want %v", i, got, want)
		}
	}
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	outer, err := tx.QueryContext(ctx, query, 0, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !outer.Next() {
		t.Fatal("outer query: no first row")
	}
	inner, err := tx.QueryContext(ctx, query, 7, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := read(inner); !slices.Equal(got, []string{"v7", "v8", "v9"}) {
		t.Errorf("inner query while the outer is open: %v", got)
	}
	inner.Close()
	var first string
	if err := outer.Scan(&first); err != nil {
		t.Fatal(err)
	}
	if got := append([]string{first}, read(outer)...); !slices.Equal(got, []string{"v0", "v1", "v2"}) {
		t.Errorf("outer query, read around the inner one: %v", got)
	}
	outer.Close()
	rows, err := tx.QueryContext(ctx, query, 4, 6)
	if err != nil {
		t.Fatal(err)
	}
	if got := read(rows); !slices.Equal(got, []string{"v4", "v5"}) {
		t.Errorf("after both closed: %v", got)
	}
	rows.Close()
	if _, err := tx.QueryContext(ctx, query, "x"); err == nil {
		t.Error("a query missing an argument ran")
	}
	rows, err = tx.QueryContext(ctx, query, 9, 10)
	if err != nil {
		t.Fatalf("statement unusable after a failed run: %v", err)
	}
	if got := read(rows); !slices.Equal(got, []string{"v9"}) {
		t.Errorf("after a failed run: %v", got)
	}
	rows.Close()
}

// Lists that would read whole tables use their indexes (EXPLAIN QUERY
// PLAN names the index a search uses).
func TestIndexedLists(t *testing.T) {
	storetest.IndexedLists(t, open, sqlite.Dialect, func(ctx context.Context, conn sqlstore.Conn, query string, args []any) (string, error) {
		rows, err := conn.Query(ctx, "EXPLAIN QUERY PLAN "+query, args...)
		if err != nil {
			return "", err
		}
		defer rows.Close()
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				return "", err
			}
			plan = append(plan, detail)
		}
		return strings.Join(plan, "\n"), rows.Err()
	})
}
