package main

import (
	"bytes"
	"context"
	"errors"
	neturl "net/url"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/cardrail/cardrail/bench"
	"github.com/cardrail/cardrail/internal/testdb"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestBenchCommand runs a short benchmark against an in-process server on
// each database and checks what it prints: both phases answered with no
// failures and, on PostgreSQL, a pgbench figure and the ratio. On
// PostgreSQL it names a database that does not exist yet, which the bench
// creates and drops again.
func TestBenchCommand(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		onPostgres := strings.HasPrefix(url, "postgres")
		if onPostgres {
			u, err := neturl.Parse(url)
			if err != nil {
				t.Fatal(err)
			}
			u.Path += "_bench"
			url = u.String()
			t.Cleanup(func() { _ = bench.DropDatabase(context.Background(), url) })
		}
		var out, errOut bytes.Buffer
		args := []string{"bench", "--duration", "1s", "--cards", "4", "--clients", "4", "--rounds", "2", "--database-url", url}
		if err := run(t.Context(), args, func(string) string { return "" }, &out, &errOut); err != nil {
			t.Fatalf("bench: %v\n%s", err, errOut.String())
		}
		text := out.String()
		phase := regexp.MustCompile(`(?m)^(spread|hot) +approved=(\d+) declined=(\d+) failed=(\d+) +(\d+) auth/s +p50=`)
		phases := phase.FindAllStringSubmatch(text, -1)
		if len(phases) != 4 {
			t.Fatalf("want a spread and a hot phase in each of 2 rounds, got %d phases:\n%s", len(phases), text)
		}
		for _, m := range phases {
			approved, _ := strconv.Atoi(m[2])
			if approved == 0 || m[4] != "0" {
				t.Errorf("%s phase approved %s and failed %s:\n%s", m[1], m[2], m[4], text)
			}
		}
		// Each round heats its own card, so that no card's daily limit
		// ends a later round's hot phase in declines.
		hot := regexp.MustCompile(`of spread; card (card_\w+)\)`).FindAllStringSubmatch(text, -1)
		if len(hot) != 2 || hot[0][1] == hot[1][1] {
			t.Errorf("want a different hot card in each of 2 rounds, got %v:\n%s", hot, text)
		}
		if runtime.GOOS == "linux" {
			cpu := regexp.MustCompile(`(?m)^ +cpu: (\d+)µs per authorization in this process, \d+µs in the rest of the machine, \d+% idle$`)
			lines := cpu.FindAllStringSubmatch(text, -1)
			if len(lines) != 4 {
				t.Errorf("want a cpu line after each of 4 phases, got %d:\n%s", len(lines), text)
			}
			for _, m := range lines {
				if m[1] == "0" {
					t.Errorf("the process spent no CPU on an authorization: %s", m[0])
				}
			}
		}
		if !strings.Contains(text, "median of 2 rounds: spread ") {
			t.Errorf("no medians line:\n%s", text)
		}
		if onPostgres {
			if !strings.Contains(text, "created the database; it is dropped when the bench ends") {
				t.Errorf("the bench did not say it created the database:\n%s", text)
			}
			conn, err := pgx.Connect(t.Context(), url)
			if err == nil {
				conn.Close(t.Context())
				t.Errorf("the database the bench created is still there after it")
			} else if pgErr := (*pgconn.PgError)(nil); !errors.As(err, &pgErr) || pgErr.Code != "3D000" {
				t.Errorf("connect to the dropped database: %v, want it not to exist", err)
			}
			if !regexp.MustCompile(`pgbench TPC-B-like, 4 clients, 1s: \d+ tps; cardrail spread / pgbench = [0-9.]+x`).MatchString(text) {
				t.Errorf("no pgbench figure:\n%s", text)
			}
		}
	})
}
