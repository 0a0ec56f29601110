// Package testdb gives tests real databases: a SQLite file in a temporary
// directory always, and a fresh PostgreSQL database per test when one
// answers at CARDRAIL_TEST_POSTGRES_URL (default
// postgres://postgres@127.0.0.1:5432/postgres), created for the test and
// dropped after it. Without PostgreSQL those subtests skip with the reason,
// unless CARDRAIL_TEST_REQUIRE_POSTGRES=1 (CI sets it), which fails them.
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultPostgresURL is where the tests look for PostgreSQL.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Backends are the databases every storage-touching test runs against.
var Backends = []string{"sqlite", "postgres"}

func adminURL() string {
	if u := os.Getenv("CARDRAIL_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return DefaultPostgresURL
}

var (
	probeOnce sync.Once
	probeErr  error
)

// postgresReachable connects once per test binary.
func postgresReachable() error {
	probeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, adminURL())
		if err != nil {
			probeErr = err
			return
		}
		probeErr = c.Close(ctx)
	})
	return probeErr
}

// URL returns a database URL of the backend for this test: a new SQLite
// file, or a new PostgreSQL database dropped when the test ends.
func URL(t testing.TB, backend string) string {
	t.Helper()
	switch backend {
	case "sqlite":
		return "sqlite:" + filepath.Join(t.TempDir(), "cardrail.db")
	case "postgres":
		return postgresURL(t)
	}
	t.Fatalf("unknown backend %q", backend)
	return ""
}

func postgresURL(t testing.TB) string {
	t.Helper()
	if err := postgresReachable(); err != nil {
		if os.Getenv("CARDRAIL_TEST_REQUIRE_POSTGRES") == "1" {
			t.Fatalf("PostgreSQL at %s is required (CARDRAIL_TEST_REQUIRE_POSTGRES=1) but unreachable: %v", redacted(adminURL()), err)
		}
		t.Skipf("skipping PostgreSQL: nothing answers at %s (%v); set CARDRAIL_TEST_POSTGRES_URL", redacted(adminURL()), err)
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, adminURL())
	if err != nil {
		t.Fatalf("connect PostgreSQL: %v", err)
	}
	defer admin.Close(ctx)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "cardrail_test_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		c, err := pgx.Connect(ctx, adminURL())
		if err != nil {
			t.Logf("drop database %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(adminURL())
	if err != nil {
		t.Fatalf("parse %s: %v", redacted(adminURL()), err)
	}
	u.Path = "/" + name
	return u.String()
}

// Each runs fn as a subtest per backend.
func Each(t *testing.T, fn func(t *testing.T, url string)) {
	for _, b := range Backends {
		t.Run(b, func(t *testing.T) { fn(t, URL(t, b)) })
	}
}

func redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable url)"
	}
	return fmt.Sprint(u.Redacted())
}
