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
