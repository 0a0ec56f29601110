package main

import (
	"bytes"
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
