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
