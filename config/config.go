// Package config reads Cardrail's configuration once, at start-up, from the
// environment into a typed struct. No other package reads the environment.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is every setting, with its environment variable beside it.
type Config struct {
	Addr                    string          // CARDRAIL_ADDR
	DatabaseURL             string          // CARDRAIL_DATABASE_URL: sqlite:PATH or postgres://…
	SandboxJWTSecret        string          // CARDRAIL_SANDBOX_JWT_SECRET (raw bytes of the string)
	SandboxJWKSURL          string          // CARDRAIL_SANDBOX_JWKS_URL
	ProductionJWKSURL       string          // CARDRAIL_PRODUCTION_JWKS_URL
	ProductionPublicKeyFile string          // CARDRAIL_PRODUCTION_JWT_PUBLIC_KEY_FILE
	JWTIssuer               string          // CARDRAIL_JWT_ISSUER
	JWTAudience             string          // CARDRAIL_JWT_AUDIENCE
	EncryptionKey           string          // CARDRAIL_ENCRYPTION_KEY (base64 of 32 bytes)
	PreviousEncryptionKeys  []string        // CARDRAIL_PREVIOUS_ENCRYPTION_KEYS (comma-separated; open what they sealed, seal nothing)
	RedisURL                string          // CARDRAIL_REDIS_URL
	RateLimit               float64         // CARDRAIL_RATE_LIMIT (requests/s per caller; 0 = off)
	HoldWindow              time.Duration   // CARDRAIL_HOLD_WINDOW
	WebhookAllowPrivate     bool            // CARDRAIL_WEBHOOK_ALLOW_PRIVATE
	LogLevel                string          // CARDRAIL_LOG_LEVEL (debug, info, warn, error)
	WebhookRetrySchedule    []time.Duration // CARDRAIL_WEBHOOK_RETRY_SCHEDULE (waits after each failed attempt; nil = webhook.DefaultSchedule)
	AuthExecutors           int             // CARDRAIL_AUTH_EXECUTORS: authorization batches in flight at once
	AuthBatch               int             // CARDRAIL_AUTH_BATCH: most authorizations decided in one transaction
	RequestTimeout          time.Duration   // CARDRAIL_REQUEST_TIMEOUT: how long one API request may run before it is rolled back
}

// MaxRequestTimeout keeps a request's deadline well below the HTTP
// server's write timeout (30 s): after the deadline a commit already sent
// may take up to 5 s more, and recording the answer under its
// Idempotency-Key up to 3 s, and the client must still get the answer.
const MaxRequestTimeout = 20 * time.Second

// Default is the configuration with nothing set: sandbox on an embedded
// SQLite file.
func Default() Config {
	return Config{
		Addr:        "127.0.0.1:8080",
		DatabaseURL: "sqlite:cardrail.db",
		RateLimit:   50,
		HoldWindow:  168 * time.Hour,
		LogLevel:    "info",
		AuthBatch:   256,

		RequestTimeout: 20 * time.Second,
	}
}

// FromEnv reads the configuration through getenv (os.Getenv in main, a map
// in tests).
func FromEnv(getenv func(string) string) (Config, error) {
	c := Default()
	str := func(name string, dst *string) {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			*dst = v
		}
	}
	str("CARDRAIL_ADDR", &c.Addr)
	str("CARDRAIL_DATABASE_URL", &c.DatabaseURL)
	if v := getenv("CARDRAIL_SANDBOX_JWT_SECRET"); v != "" {
		c.SandboxJWTSecret = v // raw bytes: not trimmed
	}
	str("CARDRAIL_SANDBOX_JWKS_URL", &c.SandboxJWKSURL)
	str("CARDRAIL_PRODUCTION_JWKS_URL", &c.ProductionJWKSURL)
	str("CARDRAIL_PRODUCTION_JWT_PUBLIC_KEY_FILE", &c.ProductionPublicKeyFile)
	str("CARDRAIL_JWT_ISSUER", &c.JWTIssuer)
	str("CARDRAIL_JWT_AUDIENCE", &c.JWTAudience)
	str("CARDRAIL_ENCRYPTION_KEY", &c.EncryptionKey)
	for _, k := range strings.Split(getenv("CARDRAIL_PREVIOUS_ENCRYPTION_KEYS"), ",") {
		if k = strings.TrimSpace(k); k != "" {
			c.PreviousEncryptionKeys = append(c.PreviousEncryptionKeys, k)
		}
	}
	str("CARDRAIL_REDIS_URL", &c.RedisURL)
	str("CARDRAIL_LOG_LEVEL", &c.LogLevel)
	if v := strings.TrimSpace(getenv("CARDRAIL_RATE_LIMIT")); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
			return c, fmt.Errorf("CARDRAIL_RATE_LIMIT: %q is not a non-negative number", v)
		}
		c.RateLimit = f
	}
	for name, dst := range map[string]*int{"CARDRAIL_AUTH_EXECUTORS": &c.AuthExecutors, "CARDRAIL_AUTH_BATCH": &c.AuthBatch} {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 4096 {
				return c, fmt.Errorf("%s: %q is not a whole number from 1 to 4096", name, v)
			}
			*dst = n
		}
	}
	if v := strings.TrimSpace(getenv("CARDRAIL_HOLD_WINDOW")); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("CARDRAIL_HOLD_WINDOW: %q is not a positive duration like 168h", v)
		}
		c.HoldWindow = d
	}
	if v := strings.TrimSpace(getenv("CARDRAIL_REQUEST_TIMEOUT")); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 100*time.Millisecond || d > MaxRequestTimeout {
			return c, fmt.Errorf("CARDRAIL_REQUEST_TIMEOUT: %q is not a duration from 100ms to %s, like 20s", v, MaxRequestTimeout)
		}
		c.RequestTimeout = d
	}
	if v := strings.TrimSpace(getenv("CARDRAIL_WEBHOOK_RETRY_SCHEDULE")); v != "" {
		for _, part := range strings.Split(v, ",") {
			d, err := time.ParseDuration(strings.TrimSpace(part))
			if err != nil || d <= 0 {
				return c, fmt.Errorf("CARDRAIL_WEBHOOK_RETRY_SCHEDULE: %q is not a comma-separated list of positive durations like 5s,30s,2m", v)
			}
			c.WebhookRetrySchedule = append(c.WebhookRetrySchedule, d)
		}
	}
	if v := strings.TrimSpace(getenv("CARDRAIL_WEBHOOK_ALLOW_PRIVATE")); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return c, fmt.Errorf("CARDRAIL_WEBHOOK_ALLOW_PRIVATE: %q is not true or false", v)
		}
		c.WebhookAllowPrivate = b
	}
	if n := len(c.SandboxJWTSecret); n > 0 && n < 32 {
		return c, fmt.Errorf("CARDRAIL_SANDBOX_JWT_SECRET: %d bytes is too short; an HS256 key is at least 32 bytes (RFC 7518 §3.2)", n)
	}
	for name, raw := range map[string]string{"CARDRAIL_SANDBOX_JWKS_URL": c.SandboxJWKSURL, "CARDRAIL_PRODUCTION_JWKS_URL": c.ProductionJWKSURL} {
		if err := checkJWKSURL(raw); err != nil {
			return c, fmt.Errorf("%s: %w", name, err)
		}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return c, fmt.Errorf("CARDRAIL_LOG_LEVEL: %q is not debug, info, warn or error", c.LogLevel)
	}
	if err := CheckDatabaseURL(c.DatabaseURL); err != nil {
		return c, fmt.Errorf("CARDRAIL_DATABASE_URL: %w", err)
	}
	return c, nil
}

// checkJWKSURL requires https for a key set fetched over the network: over
// plain http anyone on the path could substitute keys. Loopback may use
// http (a key server on the same host, and tests).
func checkJWKSURL(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return errors.New("is not an absolute URL")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip, err := netip.ParseAddr(host); host == "localhost" || err == nil && ip.IsLoopback() {
			return nil
		}
		return errors.New("must be https (plain http only on loopback)")
	}
	return errors.New("must be an https URL")
}

// PostgresURL reports whether url names a PostgreSQL database.
func PostgresURL(url string) bool {
	return strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://")
}

// CheckDatabaseURL says what is wrong with a database URL's form. It never
// repeats the URL, which may hold a password.
func CheckDatabaseURL(url string) error {
	if path, ok := strings.CutPrefix(url, "sqlite:"); ok {
		if strings.TrimSpace(path) == "" {
			return errors.New("sqlite: needs a file path, as in sqlite:cardrail.db")
		}
		return nil
	}
	if PostgresURL(url) {
		return nil
	}
	return errors.New("must be sqlite:PATH or postgres://… (the value given is neither; not shown, as it may hold a password)")
}

// ProductionEnabled reports whether production tokens can be verified.
func (c Config) ProductionEnabled() bool {
	return c.ProductionJWKSURL != "" || c.ProductionPublicKeyFile != ""
}

// settings are the variables FromEnv reads.
var settings = []string{
	"CARDRAIL_ADDR", "CARDRAIL_DATABASE_URL", "CARDRAIL_SANDBOX_JWT_SECRET", "CARDRAIL_SANDBOX_JWKS_URL",
	"CARDRAIL_PRODUCTION_JWKS_URL", "CARDRAIL_PRODUCTION_JWT_PUBLIC_KEY_FILE", "CARDRAIL_JWT_ISSUER", "CARDRAIL_JWT_AUDIENCE",
	"CARDRAIL_ENCRYPTION_KEY", "CARDRAIL_PREVIOUS_ENCRYPTION_KEYS", "CARDRAIL_REDIS_URL", "CARDRAIL_RATE_LIMIT",
	"CARDRAIL_HOLD_WINDOW", "CARDRAIL_WEBHOOK_ALLOW_PRIVATE", "CARDRAIL_LOG_LEVEL", "CARDRAIL_WEBHOOK_RETRY_SCHEDULE",
	"CARDRAIL_AUTH_EXECUTORS", "CARDRAIL_AUTH_BATCH", "CARDRAIL_REQUEST_TIMEOUT",
}

// testKnobs are read by the test suite, not the service (README, Tests).
var testKnobs = []string{"CARDRAIL_PROPERTY_RUNS", "CARDRAIL_CRASH_ROUNDS", "CARDRAIL_HEAD_RACE_ROUNDS", "CARDRAIL_BENCH_BACKLOG"}

// Unknown names the CARDRAIL_ variables in environ (os.Environ's
// NAME=value form) that nothing reads, each with the setting it most
// likely misspells, so that a typo is reported instead of silently
// leaving the default in force.
func Unknown(environ []string) []string {
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "CARDRAIL_") || strings.HasPrefix(name, "CARDRAIL_TEST_") ||
			slices.Contains(settings, name) || slices.Contains(testKnobs, name) {
			continue
		}
		msg := name + " is not a setting and is ignored"
		if near, d := nearest(name); d <= 3 {
			msg += "; did you mean " + near + "?"
		}
		out = append(out, msg)
	}
	slices.Sort(out)
	return out
}

// nearest is the setting closest to name by edit distance, and the
// distance.
func nearest(name string) (string, int) {
	best, bestD := "", math.MaxInt
	for _, s := range settings {
		if d := editDistance(name, s); d < bestD {
			best, bestD = s, d
		}
	}
	return best, bestD
}

// editDistance is the Levenshtein distance between two ASCII names.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
