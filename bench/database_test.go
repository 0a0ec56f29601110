package bench_test

import (
	"testing"

	"github.com/cardrail/cardrail/bench"
	"github.com/cardrail/cardrail/internal/testdb"
	"github.com/jackc/pgx/v5"
)

// A database that already exists is used as it is: the bench neither
// creates it nor offers to drop it. (TestBenchCommand covers one that did
// not exist.)
func TestCreateDatabaseKeepsAnExistingOne(t *testing.T) {
	url := testdb.URL(t, "postgres")
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	if _, err := conn.Exec(t.Context(), "CREATE TABLE kept (x int)"); err != nil {
		t.Fatal(err)
	}
	created, err := bench.CreateDatabase(t.Context(), url)
	if err != nil || created {
		t.Fatalf("CreateDatabase on an existing database = %v, %v; want false, nil", created, err)
	}
	if _, err := conn.Exec(t.Context(), "SELECT count(*) FROM kept"); err != nil {
		t.Errorf("the existing database lost its table: %v", err)
	}
}

// The bench never drops the server's maintenance database.
func TestDropDatabaseRefusesPostgres(t *testing.T) {
	if err := bench.DropDatabase(t.Context(), "postgres://postgres@127.0.0.1:1/postgres"); err == nil {
		t.Error("DropDatabase accepted the postgres database")
	}
}
