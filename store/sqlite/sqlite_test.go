package sqlite_test

import (
	"context"
	"fmt"
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
