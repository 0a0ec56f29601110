// Package sqlite opens Cardrail's embedded database: SQLite through the
// pure-Go modernc driver, in WAL mode with synchronous=FULL and foreign keys
// on. Write transactions begin IMMEDIATE on a single writer connection, so a
// writer takes the lock up front and never meets SQLITE_BUSY halfway through;
// reads use a separate pool and never wait for writers.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/cardrail/cardrail/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// dsn builds the connection string; every connection gets the same pragmas.
func dsn(path string, extra ...string) string {
	v := url.Values{}
	v.Add("_pragma", "journal_mode(WAL)")
	v.Add("_pragma", "synchronous(FULL)")
	v.Add("_pragma", "foreign_keys(1)")
	v.Add("_pragma", "busy_timeout(10000)")
	// Statement journals (how SQLite undoes one failed statement inside
	// a transaction) in memory rather than spilled to a temporary file:
	// a batch's multi-row writes outgrew the in-memory spill threshold and
	// wrote every touched page to that file (9% of the bench profile, in
	// pwrite). They play no part in crash recovery; the WAL does that.
	v.Add("_pragma", "temp_store(MEMORY)")
	for i := 0; i+1 < len(extra); i += 2 {
		v.Add(extra[i], extra[i+1])
	}
	return "file:" + path + "?" + v.Encode()
}

// Open opens (creating if needed) the database file at path and applies the
// migrations.
func Open(ctx context.Context, path string) (*sqlstore.Store, error) {
	writer := sql.OpenDB(connector{name: dsn(path, "_txlock", "immediate"), drv: &sqlite.Driver{}})
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	if err := Migrate(ctx, writer); err != nil {
		writer.Close()
		return nil, err
	}
	reader, err := sql.Open("sqlite", dsn(path, "_pragma", "query_only(1)"))
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	reader.SetMaxOpenConns(4)
	reader.SetMaxIdleConns(4)
	return sqlstore.New(&sqlstore.SQLConn{Writer: writer, Reader: reader}, Dialect), nil
}

// Migrate applies the embedded migrations.
func Migrate(ctx context.Context, db *sql.DB) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, sub, goose.WithAllowOutofOrder(true))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate sqlite: %w", err)
	}
	return nil
}

// Dialect is SQLite's: no row locks (the write transaction holds the
// database), and busy or locked errors are retried.
var Dialect = sqlstore.Dialect{
	Name:      "sqlite",
	ForUpdate: "",
	Retryable: func(err error) bool {
		var e *sqlite.Error
		if errors.As(err, &e) {
			c := e.Code() & 0xff
			return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED
		}
		return false
	},
	UniqueViolation: func(err error) bool {
		var e *sqlite.Error
		if errors.As(err, &e) {
			return e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
		}
		return false
	},
}
