// Command cardrail runs the Cardrail card-issuing API.
//
//	cardrail serve     the API and its background workers
//	cardrail migrate   apply schema migrations
//	cardrail token     print a sandbox token
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
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/app"
	"github.com/cardrail/cardrail/auth"
	"github.com/cardrail/cardrail/config"
	"github.com/cardrail/cardrail/internal/logbuf"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// The first signal starts a graceful shutdown; restoring the
		// default handling lets a second one end the process at once.
		<-ctx.Done()
		stop()
	}()
	for _, w := range config.Unknown(os.Environ()) {
		fmt.Fprintln(os.Stderr, "cardrail: warning:", w)
	}
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "cardrail:", err)
		os.Exit(1)
	}
}

const usage = `usage: cardrail <command> [flags]

commands:
  serve     run the API and its background workers
  migrate   apply schema migrations and exit
  token     print a sandbox token (cardrail token --sub USER [--country CC] [--kyc verified] [--role ops] [--ttl 24h])
  bench     drive authorizations over HTTP and print throughput and latency (see README, Performance)

Configuration is by environment; see README.md.`

// run is main without the process: tests call it with their own
// environment and output.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return errors.New("no command")
	}
	if slices.Contains([]string{"help", "-h", "--help"}, args[0]) || slices.Contains(args[1:], "--help") || slices.Contains(args[1:], "-h") {
		// Help needs no configuration, so a bad environment cannot hide it.
		getenv = func(string) string { return "" }
	}
	cfg, err := config.FromEnv(getenv)
	if err != nil {
		return err
	}
	switch args[0] {
	case "serve":
		setGCPercent(getenv)
		err = serve(ctx, cfg, args[1:], stdout, stderr)
	case "migrate":
		err = migrate(ctx, cfg, args[1:], stdout, stderr)
	case "token":
		err = token(ctx, cfg, args[1:], stdout, stderr)
	case "bench":
		setGCPercent(getenv) // the in-process server runs as serve would
		err = benchCmd(ctx, cfg, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	default:
		fmt.Fprintln(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
	if errors.Is(err, flag.ErrHelp) {
		return nil // the flag set has printed its usage
	}
	return err
}

// parseFlags parses a command's flags, refusing arguments left over (a
// typo there would otherwise be ignored) and a database URL of the wrong
// form. optional lets an empty URL through (bench's "a fresh SQLite
// file"); for the other commands an empty one is refused like any bad one.
func parseFlags(fs *flag.FlagSet, args []string, databaseURL *string, optional bool) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	if optional && *databaseURL == "" {
		return nil
	}
	if err := config.CheckDatabaseURL(*databaseURL); err != nil {
		return fmt.Errorf("%s: --database-url: %w", fs.Name(), err)
	}
	return nil
}

func databaseFlag(fs *flag.FlagSet, cfg *config.Config) {
	fs.StringVar(&cfg.DatabaseURL, "database-url", cfg.DatabaseURL, "sqlite:PATH or postgres://… (CARDRAIL_DATABASE_URL)")
}

func migrate(ctx context.Context, cfg config.Config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	databaseFlag(fs, &cfg)
	if err := parseFlags(fs, args, &cfg.DatabaseURL, false); err != nil {
		return err
	}
	s, err := app.OpenStore(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "migrations applied to %s\n", redact(cfg.DatabaseURL))
	return s.Close()
}

// defaultGCPercent is the garbage collector's target when GOGC is not set.
// The server's live heap is small (tens of MB) and its garbage is
// per-request, so collecting at 4x the live heap rather than Go's default
// 2x halves the collections for a few tens of MB; the authorization
// profile had about 8% of the CPU in the collector at the default.
const defaultGCPercent = 400

func setGCPercent(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
}

// newLogger writes JSON lines to w through a buffer. Written line by line
// to a file, the access log (a line per request) cost the authorization
// path 6–11% of its throughput against discarding it, in alternated bench
// runs; through the buffer, about half of that. Info lines wait up to
// logFlushInterval; a warning or an error is written at once, with what
// came before it. The returned close flushes the rest.
func newLogger(w io.Writer, level string) (*slog.Logger, func() error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	b := logbuf.New(w, 64<<10, logFlushInterval)
	return slog.New(logbuf.Handler(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: l}), b, slog.LevelWarn)), b.Close
}

// logFlushInterval bounds how long an info line waits in the log buffer.
const logFlushInterval = 100 * time.Millisecond

func serve(ctx context.Context, cfg config.Config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "listen address (CARDRAIL_ADDR)")
	databaseFlag(fs, &cfg)
	workEvery := fs.Duration("worker-interval", 5*time.Second, "how often background jobs run (hold expiry, card expiry, key purge)")
	if err := parseFlags(fs, args, &cfg.DatabaseURL, false); err != nil {
		return err
	}
	if *workEvery <= 0 {
		return fmt.Errorf("serve: --worker-interval must be positive, not %s", *workEvery)
	}
	log, flushLog := newLogger(stdout, cfg.LogLevel)
	defer flushLog() // after everything below has logged its last
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeWithin(a, shutdownGrace, log)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("CARDRAIL_ADDR (--addr) %q: %w", cfg.Addr, err)
	}

	srv := &http.Server{
		Addr: cfg.Addr, Handler: a.Handler(),
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	workers, stopWorkers := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Workers(workers, *workEvery)
	}()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("cardrail serving", "addr", cfg.Addr, "database", redact(cfg.DatabaseURL),
		"production", cfg.ProductionEnabled(), "hint", tokenHint(cfg.DatabaseURL))

	select {
	case err = <-errc:
	case <-ctx.Done():
		log.Info("shutting down; a second signal stops at once", "grace", shutdownGrace.String())
		shut, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		err = srv.Shutdown(shut)
		cancel()
		if err != nil {
			// Requests still running have passed their own deadline's
			// worth of grace: their connections are closed, which ends
			// what they wait on.
			log.Warn("requests still running after the grace period; closing their connections", "error", err.Error())
			err = srv.Close()
		}
	}
	stopWorkers()
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// shutdownGrace is how long a shutdown waits for requests in flight, and
// then for the application to close. A request's own deadline
// (CARDRAIL_REQUEST_TIMEOUT, 20 s by default) ends most waits before it.
const shutdownGrace = 25 * time.Second

// closeWithin closes a, giving up after d: a database that stopped
// answering must not keep the process from exiting.
func closeWithin(a *app.App, d time.Duration, log *slog.Logger) {
	closed := make(chan struct{})
	go func() {
		a.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(d):
		log.Error("closing the database and workers took too long; exiting anyway", "waited", d.String())
	}
}

// redact hides the passwords a database URL may hold, in its user info
// (postgres://user:secret@host) and in its query (?password=secret, and
// pgx's sslpassword), before the URL is printed or logged.
func redact(url string) string {
	base, query, hasQuery := strings.Cut(url, "?")
	if scheme := strings.Index(base, "://"); scheme > 0 {
		rest := base[scheme+3:]
		end := strings.IndexByte(rest, '/')
		if end < 0 {
			end = len(rest)
		}
		authority := rest[:end]
		if at := strings.LastIndex(authority, "@"); at > 0 {
			if user, _, ok := strings.Cut(authority[:at], ":"); ok {
				authority = user + ":***" + authority[at:]
			}
		}
		base = base[:scheme+3] + authority + rest[end:]
	}
	if !hasQuery {
		return base
	}
	params := strings.Split(query, "&")
	for i, p := range params {
		if key, _, ok := strings.Cut(p, "="); ok && strings.Contains(strings.ToLower(key), "password") {
			params[i] = key + "=***"
		}
	}
	return base + "?" + strings.Join(params, "&")
}

type roles []string

func (r *roles) String() string     { return strings.Join(*r, ",") }
func (r *roles) Set(v string) error { *r = append(*r, v); return nil }

func token(ctx context.Context, cfg config.Config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sub := fs.String("sub", "", "the user (required)")
	country := fs.String("country", "US", "the user's market, ISO 3166-1 alpha-2")
	kyc := fs.String("kyc", "", "verification state (verified)")
	ttl := fs.Duration("ttl", 24*time.Hour, "lifetime")
	var rs roles
	fs.Var(&rs, "role", "a role (ops); repeatable")
	databaseFlag(fs, &cfg)
	if err := parseFlags(fs, args, &cfg.DatabaseURL, false); err != nil {
		return err
	}
	if *sub == "" {
		return errors.New("token: --sub is required")
	}
	if *ttl <= 0 {
		return errors.New("token: --ttl must be positive")
	}
	// Any value is minted, as a token from elsewhere could carry it; one
	// the server gives no meaning is likely a typo, so say what it means.
	if *kyc != "" && *kyc != cardrail.KYCVerified {
		fmt.Fprintf(stderr, "token: --kyc %q is not %q, so the holder counts as unverified\n", *kyc, cardrail.KYCVerified)
	}
	for _, r := range rs {
		if r != cardrail.RoleOps {
			fmt.Fprintf(stderr, "token: --role %q grants nothing; the one role is %q\n", r, cardrail.RoleOps)
		}
	}
	store, err := app.OpenStore(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer store.Close()
	fresh := false
	if cfg.SandboxJWTSecret == "" {
		had, err := app.HasSandboxSecret(ctx, store)
		if err != nil {
			return err
		}
		fresh = !had
	}
	secret, err := app.SandboxSecret(ctx, store, cfg)
	if err != nil {
		return err
	}
	if fresh {
		// The usual cause is running token away from the server's
		// directory: the token is fine, and every server will refuse it.
		fmt.Fprintf(stderr, "token: %s held no sandbox secret, so one was generated now; a server on another database will refuse this token (run token where serve runs, or pass its --database-url)\n",
			redact(cfg.DatabaseURL))
	}
	tok, err := auth.MintSandbox(secret, auth.TokenRequest{Subject: *sub, Country: strings.ToUpper(*country), KYC: *kyc,
		Roles: rs, TTL: *ttl, Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience}, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// tokenHint tells a new user how to get a token this server accepts: the
// token command must open the same database, so a server started on any
// other than the default names it (with its password, if any, redacted).
func tokenHint(dbURL string) string {
	cmd := "cardrail token --sub alice"
	if dbURL != config.Default().DatabaseURL {
		cmd += " --database-url '" + redact(dbURL) + "'"
	}
	return "mint a sandbox token with: " + cmd + " (from the source tree: go run ./cmd/" + cmd + ")"
}
