package main

import (
	"strings"
	"testing"
)

// A database URL is printed by migrate and logged by serve; a password in
// it, wherever the URL carries one, must not be.
func TestRedactHidesPasswords(t *testing.T) {
	for in, want := range map[string]string{
		"sqlite:cardrail.db":                                         "sqlite:cardrail.db",
		"postgres://app@db:5432/cards?sslmode=disable":               "postgres://app@db:5432/cards?sslmode=disable",
		"postgres://app:hunter2@db:5432/cards":                       "postgres://app:***@db:5432/cards",
		"postgres://app:p@ss:w@rd@db/cards":                          "postgres://app:***@db/cards",
		"postgresql://app@db/cards?sslmode=disable&password=hunter2": "postgresql://app@db/cards?sslmode=disable&password=***",
		"postgres://db/cards?PASSWORD=hunter2&sslpassword=k3y":       "postgres://db/cards?PASSWORD=***&sslpassword=***",
		"postgres://app@db/cards?password=a@b/c":                     "postgres://app@db/cards?password=***",
		"postgres://app:hunter2@db":                                  "postgres://app:***@db",
	} {
		got := redact(in)
		if got != want || strings.Contains(got, "hunter2") || strings.Contains(got, "k3y") {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// The start-up hint names the database the token command must open, and
// no password with it.
func TestTokenHintNamesTheDatabase(t *testing.T) {
	if got := tokenHint("sqlite:cardrail.db"); strings.Contains(got, "--database-url") {
		t.Errorf("default database: hint %q names a database", got)
	}
	if got := tokenHint("sqlite:/srv/cards.db"); !strings.Contains(got, "cardrail token --sub alice --database-url 'sqlite:/srv/cards.db'") {
		t.Errorf("other SQLite file: hint %q does not name it", got)
	}
	if got := tokenHint("postgres://app:hunter2@db/cards"); strings.Contains(got, "hunter2") || !strings.Contains(got, "postgres://app:***@db/cards") {
		t.Errorf("PostgreSQL: hint %q", got)
	}
}
