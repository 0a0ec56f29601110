package postgres_test

import (
	"context"
	"testing"

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
