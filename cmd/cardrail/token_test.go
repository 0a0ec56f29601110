package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTokenCommand mints a sandbox token and refuses what it cannot mint
// as asked.
func TestTokenCommand(t *testing.T) {
	url := "sqlite:" + filepath.Join(t.TempDir(), "token.db")
	getenv := func(k string) string {
		if k == "CARDRAIL_DATABASE_URL" {
			return url
		}
		return ""
	}
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"token", "--sub", "alice", "--ttl", "2h"}, getenv, &out, &errOut); err != nil {
		t.Fatalf("token: %v\n%s", err, errOut.String())
	}
	if parts := strings.Split(strings.TrimSpace(out.String()), "."); len(parts) != 3 {
		t.Fatalf("token printed %q, want a JWT", out.String())
	}
	// The first token on a database without a secret made one; it says so,
	// as a server elsewhere will refuse the token. The second is quiet.
	if !strings.Contains(errOut.String(), "held no sandbox secret") {
		t.Errorf("first token's stderr %q: want a note that the secret is new", errOut.String())
	}
	errOut.Reset()
	if err := run(t.Context(), []string{"token", "--sub", "alice"}, getenv, &out, &errOut); err != nil || errOut.Len() > 0 {
		t.Errorf("second token: %v, stderr %q", err, errOut.String())
	}
	// Values the server gives no meaning are minted, with a word about it.
	for _, args := range [][]string{
		{"token", "--sub", "alice", "--kyc", "yes"},
		{"token", "--sub", "alice", "--role", "admin"},
	} {
		out.Reset()
		errOut.Reset()
		if err := run(t.Context(), args, getenv, &out, &errOut); err != nil || out.Len() == 0 ||
			!strings.Contains(errOut.String(), `"`+args[len(args)-1]+`"`) {
			t.Errorf("%v: token %q, err %v, stderr %q; want a token and a note naming the value", args, out.String(), err, errOut.String())
		}
	}
	for _, args := range [][]string{
		{"token", "--ttl", "1h"},
		{"token", "--sub", "alice", "--ttl", "0s"},
		{"token", "--sub", "alice", "--ttl", "-1h"},
	} {
		out.Reset()
		if err := run(t.Context(), args, getenv, &out, &errOut); err == nil || out.Len() > 0 {
			t.Errorf("%v: printed %q, err %v; want an error and no token", args, out.String(), err)
		}
	}
}

// TestCommandFlags: every command takes --database-url and --help, and
// refuses what it would otherwise ignore or crash on.
func TestCommandFlags(t *testing.T) {
	dir := t.TempDir()
	getenv := func(k string) string {
		if k == "CARDRAIL_DATABASE_URL" {
			return "sqlite:" + filepath.Join(dir, "env.db")
		}
		return ""
	}
	var out, errOut bytes.Buffer
	flagDB := filepath.Join(dir, "flag.db")
	if err := run(t.Context(), []string{"migrate", "--database-url", "sqlite:" + flagDB}, getenv, &out, &errOut); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if _, err := os.Stat(flagDB); err != nil || !strings.Contains(out.String(), flagDB) {
		t.Fatalf("migrate --database-url: printed %q, file: %v", out.String(), err)
	}
	if _, err := os.Stat(filepath.Join(dir, "env.db")); err == nil {
		t.Error("migrate --database-url also migrated the environment's database")
	}
	// A token minted from the flag's database, not the environment's.
	out.Reset()
	if err := run(t.Context(), []string{"token", "--sub", "a", "--database-url", "sqlite:" + flagDB}, getenv, &out, &errOut); err != nil || out.Len() == 0 {
		t.Fatalf("token --database-url: %v", err)
	}
	for _, cmd := range []string{"serve", "migrate", "token", "bench"} {
		out.Reset()
		if err := run(t.Context(), []string{cmd, "--help"}, getenv, &out, &errOut); err != nil {
			t.Errorf("%s --help: %v, want usage and no error", cmd, err)
		}
	}
	for _, args := range [][]string{
		{"serve", "typo"},
		{"migrate", "extra"},
		{"token", "--sub", "a", "extra"},
		{"serve", "--worker-interval", "0s"},
		{"serve", "--worker-interval", "-1s"},
		{"migrate", "--database-url", "postgress://u:hunter2@db/x"},
		{"bench", "typo"},
		{"migrate", "--database-url", ""},
		{"bench", "--database-url", "postgress://u:hunter2@db/x"},
	} {
		err := run(t.Context(), args, getenv, &out, &errOut)
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%v: %v, want a refusal that shows no password", args, err)
		}
	}
	// Help needs no configuration: a broken environment cannot hide it.
	broken := func(k string) string {
		if k == "CARDRAIL_LOG_LEVEL" {
			return "verbose"
		}
		return getenv(k)
	}
	for _, args := range [][]string{{"help"}, {"serve", "--help"}, {"token", "-h"}} {
		if err := run(t.Context(), args, broken, &out, &errOut); err != nil {
			t.Errorf("%v with a bad environment: %v", args, err)
		}
	}
	if err := run(t.Context(), []string{"migrate"}, broken, &out, &errOut); err == nil || !strings.Contains(err.Error(), "CARDRAIL_LOG_LEVEL") {
		t.Errorf("migrate with a bad environment: %v", err)
	}
	// A listen address that cannot be used is named as such.
	err := run(t.Context(), []string{"serve", "--addr", "notanaddr", "--database-url", "sqlite:" + flagDB}, getenv, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "CARDRAIL_ADDR") {
		t.Errorf("serve --addr notanaddr: %v", err)
	}
}
