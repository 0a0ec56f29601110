package bench

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// CreateDatabase creates the PostgreSQL database dbURL names when the
// server has none by that name, and reports whether it did. It connects
// to the server's postgres database to do so. The bench drops a database
// it created when it ends (DropDatabase), so a run on a name that did not
// exist starts from empty tables and leaves nothing behind; a database
// that already existed is used as it is and kept.
func CreateDatabase(ctx context.Context, dbURL string) (bool, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err == nil {
		return false, conn.Close(ctx)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "3D000" { // invalid_catalog_name
		return false, err
	}
	name, admin, err := maintenanceURL(dbURL)
	if err != nil {
		return false, err
	}
	if err := execOn(ctx, admin, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return false, fmt.Errorf("create database %s: %w", name, err)
	}
	return true, nil
}

// DropDatabase drops the database dbURL names, closing any connection
// still open to it.
func DropDatabase(ctx context.Context, dbURL string) error {
	name, admin, err := maintenanceURL(dbURL)
	if err != nil {
		return err
	}
	return execOn(ctx, admin, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
}

// maintenanceURL returns the database dbURL names and a URL of the same
// server's postgres database.
func maintenanceURL(dbURL string) (name, admin string, err error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", "", err
	}
	name = strings.TrimPrefix(u.Path, "/")
	if name == "" || name == "postgres" {
		return "", "", fmt.Errorf("bench: %q names no database of its own", u.Redacted())
	}
	u.Path = "/postgres"
	return name, u.String(), nil
}
