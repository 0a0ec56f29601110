package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/cardrail/cardrail/app"
	"github.com/cardrail/cardrail/auth"
	"github.com/cardrail/cardrail/bench"
	"github.com/cardrail/cardrail/config"
)

// benchCmd runs the authorization benchmark: against a server it starts
// itself (on a fresh SQLite file, or on --database-url), or against
// --target with --token.
func benchCmd(ctx context.Context, cfg config.Config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dbURL := fs.String("database-url", "", "database for the in-process server (default: a fresh SQLite file in a temp dir)")
	target := fs.String("target", "", "base URL of a running server, e.g. http://127.0.0.1:8080 (needs --token)")
	token := fs.String("token", "", "sandbox token for --target")
	cards := fs.Int("cards", 200, "cards created and funded through the API")
	direct := fs.Int("direct-cards", 0, "cards written straight into the database instead (up to 1,000,000; in-process server only)")
	clients := fs.Int("clients", 64, "concurrent keep-alive clients")
	duration := fs.Duration("duration", 10*time.Second, "how long each phase drives load")
	amount := fs.Int64("amount", 1, "authorization amount in minor units")
	hot := fs.Bool("hot", true, "also run the hot-card phase (every client hits one card)")
	pgbench := fs.Bool("pgbench", true, "on PostgreSQL, also run pgbench's TPC-B-like script and print the ratio")
	rounds := fs.Int("rounds", 1, "run every phase this many times and print the medians")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	if err := parseFlags(fs, args, dbURL, true); err != nil {
		return err
	}
	if *rounds < 1 {
		return errors.New("bench: --rounds must be at least 1")
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	client := bench.NewClient(*clients)
	var a *app.App
	base := strings.TrimSuffix(*target, "/") + "/cards/api/v1"
	if *target == "" {
		if *dbURL == "" {
			dir, err := os.MkdirTemp("", "cardrail-bench-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			*dbURL = "sqlite:" + filepath.Join(dir, "bench.db")
		}
		cfg.DatabaseURL = *dbURL
		cfg.RateLimit = 0
		if config.PostgresURL(*dbURL) {
			created, err := bench.CreateDatabase(ctx, *dbURL)
			if err != nil {
				return err
			}
			if created {
				fmt.Fprintln(stdout, "cardrail bench: created the database; it is dropped when the bench ends")
				// Registered before the app's Close, so it runs after it.
				defer func() {
					if err := bench.DropDatabase(context.WithoutCancel(ctx), *dbURL); err != nil {
						fmt.Fprintf(stderr, "cardrail bench: drop the database: %v\n", err)
					}
				}()
			}
		}
		var err error
		a, err = app.New(ctx, cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
		if err != nil {
			return err
		}
		defer a.Close()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		base = "http://" + ln.Addr().String() + "/cards/api/v1"
		sub := fmt.Sprintf("bench-%d", time.Now().UnixNano())
		if *token, err = auth.MintSandbox(a.SandboxSecret, auth.TokenRequest{Subject: sub, Country: "US", TTL: 2 * time.Hour}, time.Now()); err != nil {
			return err
		}
	} else if *token == "" {
		return errors.New("bench: --target needs --token (mint one with cardrail token --sub bench)")
	}

	const program, currency = "usd_visa_virtual", "USD"
	fund := int64(1_000_000) // the program's max balance
	start := time.Now()
	var refs []string
	var err error
	if *direct > 0 {
		if a == nil {
			return errors.New("bench: --direct-cards needs the in-process server")
		}
		prog, perr := a.Store.Program(ctx, false, program)
		if perr != nil {
			return perr
		}
		claims, verr := a.Verifier.Verify(*token)
		if verr != nil {
			return verr
		}
		refs, err = bench.ProvisionDirect(ctx, a.Store, claims.Subject, prog, *direct, fund)
	} else {
		refs, err = bench.ProvisionAPI(ctx, client, base, *token, program, currency, *cards, fund)
	}
	if err != nil {
		return fmt.Errorf("provision cards: %w", err)
	}
	dbName := "server at " + *target
	if a != nil {
		dbName = a.Store.Dialect()
	}
	fmt.Fprintf(stdout, "cardrail bench: %s/%s, %d cores, %s, %d cards (provisioned in %s), %d clients, %s per phase\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), dbName, len(refs), time.Since(start).Round(time.Millisecond), *clients, *duration)

	o := bench.Options{BaseURL: base, Token: *token, Cards: refs, Clients: *clients, Duration: *duration, Amount: *amount, Currency: currency}
	// A short warm-up fills connection pools and caches.
	warm := o
	warm.Duration = time.Second
	bench.Run(ctx, "warmup", client, warm)
	// engine reports what the authorization engine did during a phase.
	engine := func(run func()) {
		if a == nil {
			run()
			return
		}
		before := a.Service.BatchStats()
		cpu0, cpuOK := cpuSample()
		run()
		cpu1, cpuOK1 := cpuSample()
		after := a.Service.BatchStats()
		decided := after.Decided - before.Decided
		if n := after.Batches - before.Batches; n > 0 {
			fmt.Fprintf(stdout, "        engine: %d transactions, %.1f authorizations each, %.2fms each, %d fell back to one by one\n",
				n, float64(decided)/float64(n),
				float64((after.Busy-before.Busy).Microseconds())/1000/float64(n), after.Fallbacks-before.Fallbacks)
		}
		if cpuOK && cpuOK1 && decided > 0 {
			fmt.Fprintln(stdout, "        "+cpu1.since(cpu0, decided))
		}
	}
	// Each round runs every phase; on a shared machine whose speed drifts
	// (steal time on a VM), several rounds and their medians say more
	// than one.
	onPostgres := a != nil && a.Store.Dialect() == "postgres"
	var pgb *bench.PGBench
	if *pgbench && onPostgres {
		var err error
		if pgb, err = bench.NewPGBench(ctx, *dbURL, *clients); err != nil {
			fmt.Fprintf(stdout, "pgbench: %v\n", err)
		} else {
			defer pgb.Close(context.WithoutCancel(ctx))
		}
	}
	// Every phase on PostgreSQL starts from a checkpoint, so none pays for
	// the page writes of the one before it.
	checkpoint := func() {
		if onPostgres {
			if err := bench.Checkpoint(ctx, *dbURL); err != nil {
				fmt.Fprintf(stdout, "checkpoint: %v (phases may pay for each other's writes)\n", err)
			}
		}
	}
	var spreads, hots, ratios, p99s []float64
	for round := 1; round <= *rounds; round++ {
		if *rounds > 1 {
			fmt.Fprintf(stdout, "round %d of %d\n", round, *rounds)
		}
		var spread bench.Result
		checkpoint()
		engine(func() {
			spread = bench.Run(ctx, "spread", client, o)
			fmt.Fprintln(stdout, spread)
		})
		spreads, p99s = append(spreads, spread.Rate()), append(p99s, float64(spread.Percentile(99).Microseconds())/1000)
		if *hot {
			// Each round heats a different card: one card takes about
			// 200,000 approvals of 1 in a 10 s phase here, and the sandbox
			// program's daily limit of 500,000 would otherwise start
			// declining the third round's.
			h := o
			i := (round - 1) % len(refs)
			h.Cards = refs[i : i+1]
			checkpoint()
			engine(func() {
				hr := bench.Run(ctx, "hot", client, h)
				hots = append(hots, hr.Rate())
				fmt.Fprintf(stdout, "%s  (%.0f%% of spread; card %s)\n", hr, 100*hr.Rate()/spread.Rate(), h.Cards[0])
			})
		}
		if pgb != nil {
			checkpoint()
			tps, _, err := pgb.Run(ctx, *duration)
			if err != nil {
				fmt.Fprintf(stdout, "pgbench: %v\n", err)
			} else {
				ratios = append(ratios, spread.Rate()/tps)
				fmt.Fprintf(stdout, "pgbench TPC-B-like, %d clients, %s: %.0f tps; cardrail spread / pgbench = %.2fx\n", *clients, *duration, tps, spread.Rate()/tps)
			}
		}
	}
	if *rounds > 1 {
		fmt.Fprintf(stdout, "median of %d rounds: spread %.0f auth/s, p99 %.2fms", *rounds, median(spreads), median(p99s))
		if len(hots) > 0 {
			fmt.Fprintf(stdout, ", hot %.0f auth/s", median(hots))
		}
		if len(ratios) > 0 {
			fmt.Fprintf(stdout, ", spread / pgbench %.2fx", median(ratios))
		}
		fmt.Fprintln(stdout)
	}
	return nil
}

// cpuTimes is CPU time so far: this process's, and the whole machine's.
type cpuTimes struct {
	process    time.Duration
	busy, idle time.Duration // every core's, summed
}

// since reports the CPU spent between two samples per authorization: the
// process's (server and load generator), the rest of the machine's (the
// database, when it runs here), and the machine's idle share. Per
// authorization, these move less with a shared machine's speed than the
// throughput does, which makes runs minutes apart easier to compare.
func (c cpuTimes) since(start cpuTimes, auths int64) string {
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(auths) }
	process, busy, idle := c.process-start.process, c.busy-start.busy, c.idle-start.idle
	share := 0.0
	if busy+idle > 0 {
		share = 100 * float64(idle) / float64(busy+idle)
	}
	return fmt.Sprintf("cpu: %.0fµs per authorization in this process, %.0fµs in the rest of the machine, %.0f%% idle",
		per(process), per(max(0, busy-process)), share)
}

// median of xs (xs is not empty); it sorts xs.
func median(xs []float64) float64 {
	slices.Sort(xs)
	if n := len(xs); n%2 == 0 {
		return (xs[n/2-1] + xs[n/2]) / 2
	}
	return xs[len(xs)/2]
}
