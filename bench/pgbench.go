package bench

import (
	"context"
	"fmt"
	"net/url"
	"os/exec"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

var tpsLine = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// PGBench runs pgbench's built-in TPC-B-like script against a scratch
// database on the same PostgreSQL server as dbURL, with the given clients
// and duration, and returns its transactions per second. Each pgbench
// transaction is one durable commit, so this is the server's per-commit
// rate on this machine.
func PGBench(ctx context.Context, dbURL string, clients int, d time.Duration) (float64, string, error) {
	if _, err := exec.LookPath("pgbench"); err != nil {
		return 0, "", fmt.Errorf("pgbench is not installed (apt-get install postgresql-client): %w", err)
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		return 0, "", err
	}
	const scratch = "cardrail_pgbench"
	admin, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return 0, "", err
	}
	_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+scratch+" WITH (FORCE)")
	_, err = admin.Exec(ctx, "CREATE DATABASE "+scratch)
	admin.Close(ctx)
	if err != nil {
		return 0, "", fmt.Errorf("create %s: %w", scratch, err)
	}
	u.Path = "/" + scratch
	target := u.String()
	// pgbench's documentation asks for a scale factor at least the client
	// count, so that its clients are not held up queueing on a few branch
	// rows: a smaller scale would flatter the ratio.
	scale := max(1, clients)
	if out, err := exec.CommandContext(ctx, "pgbench", "-i", "-q", "-s", strconv.Itoa(scale), target).CombinedOutput(); err != nil {
		return 0, "", fmt.Errorf("pgbench -i: %v: %s", err, out)
	}
	out, err := exec.CommandContext(ctx, "pgbench", "-c", strconv.Itoa(clients), "-j", "2", "-T", strconv.Itoa(int(d.Seconds())),
		"-M", "prepared", target).CombinedOutput()
	if err != nil {
		return 0, "", fmt.Errorf("pgbench: %v: %s", err, out)
	}
	m := tpsLine.FindSubmatch(out)
	if m == nil {
		return 0, string(out), fmt.Errorf("pgbench printed no tps line")
	}
	tps, _ := strconv.ParseFloat(string(m[1]), 64)
	if admin, err := pgx.Connect(ctx, dbURL); err == nil {
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+scratch+" WITH (FORCE)")
		admin.Close(ctx)
	}
	return tps, string(out), nil
}
