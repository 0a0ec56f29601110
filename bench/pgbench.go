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

// pgbenchDB is the scratch database pgbench's tables live in, beside the
// server's own on the same PostgreSQL server.
const pgbenchDB = "cardrail_pgbench"

// PGBench runs pgbench's built-in TPC-B-like script against a scratch
// database on the same PostgreSQL server as the one Cardrail uses. Each
// pgbench transaction is one durable commit, so its rate is the server's
// per-commit rate on this machine.
type PGBench struct {
	admin   string // the server's URL, for creating and dropping the scratch database
	target  string // the scratch database's URL
	clients int
}

// NewPGBench creates the scratch database and loads pgbench's tables at a
// scale factor of the client count: pgbench's documentation asks for at
// least that, so that its clients do not queue on a few branch rows (a
// smaller scale would flatter the ratio). Loading writes hundreds of MB,
// so it is done once, before anything is measured.
func NewPGBench(ctx context.Context, dbURL string, clients int) (*PGBench, error) {
	if _, err := exec.LookPath("pgbench"); err != nil {
		return nil, fmt.Errorf("pgbench is not installed (apt-get install postgresql-client): %w", err)
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		return nil, err
	}
	p := &PGBench{admin: dbURL, clients: clients}
	p.exec(ctx, "DROP DATABASE IF EXISTS "+pgbenchDB+" WITH (FORCE)")
	if err := p.exec(ctx, "CREATE DATABASE "+pgbenchDB); err != nil {
		return nil, fmt.Errorf("create %s: %w", pgbenchDB, err)
	}
	u.Path = "/" + pgbenchDB
	p.target = u.String()
	if out, err := exec.CommandContext(ctx, "pgbench", "-i", "-q", "-s", strconv.Itoa(max(1, clients)), p.target).CombinedOutput(); err != nil {
		p.Close(ctx)
		return nil, fmt.Errorf("pgbench -i: %v: %s", err, out)
	}
	return p, nil
}

// Run drives the script for d and returns pgbench's transactions per
// second and its output.
func (p *PGBench) Run(ctx context.Context, d time.Duration) (float64, string, error) {
	out, err := exec.CommandContext(ctx, "pgbench", "-c", strconv.Itoa(p.clients), "-j", "2", "-T", strconv.Itoa(int(d.Seconds())),
		"-M", "prepared", p.target).CombinedOutput()
	if err != nil {
		return 0, string(out), fmt.Errorf("pgbench: %v: %s", err, out)
	}
	m := tpsLine.FindSubmatch(out)
	if m == nil {
		return 0, string(out), fmt.Errorf("pgbench printed no tps line")
	}
	tps, _ := strconv.ParseFloat(string(m[1]), 64)
	return tps, string(out), nil
}

// Close drops the scratch database.
func (p *PGBench) Close(ctx context.Context) {
	p.exec(ctx, "DROP DATABASE IF EXISTS "+pgbenchDB+" WITH (FORCE)")
}

func (p *PGBench) exec(ctx context.Context, sql string) error { return execOn(ctx, p.admin, sql) }

// Checkpoint asks the PostgreSQL server at dbURL to write its dirty pages
// now, so that a phase does not pay for the writes of the one before it.
// It needs superuser or pg_checkpoint; without them it reports the error
// and the run goes on.
func Checkpoint(ctx context.Context, dbURL string) error { return execOn(ctx, dbURL, "CHECKPOINT") }

// execOn runs one statement on a connection of its own to dbURL.
func execOn(ctx context.Context, dbURL, sql string) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}
