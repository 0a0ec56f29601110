// Package app wires Cardrail together from its configuration: storage, the
// issuing partners, the sealing keys, token verification, the issuing
// service, the HTTP server and the background workers. cmd/cardrail calls it
// and so do the end-to-end tests, so both run the same program.
package app

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/api"
	"github.com/cardrail/cardrail/auth"
	"github.com/cardrail/cardrail/config"
	"github.com/cardrail/cardrail/issuing"
	"github.com/cardrail/cardrail/provider"
	"github.com/cardrail/cardrail/provider/sandbox"
	"github.com/cardrail/cardrail/ratelimit"
	"github.com/cardrail/cardrail/seal"
	"github.com/cardrail/cardrail/store/postgres"
	"github.com/cardrail/cardrail/store/sqlite"
	"github.com/cardrail/cardrail/store/sqlstore"
	"github.com/cardrail/cardrail/webhook"
)

// Settings keys for secrets generated once and kept in the database.
const (
	settingSandboxJWTSecret = "sandbox_jwt_secret"
	settingSandboxKey       = "sandbox_encryption_key"
	settingSandboxCVVSecret = "sandbox_cvv_secret"
)

// App is a wired Cardrail instance.
type App struct {
	Config   config.Config
	Store    *sqlstore.Store
	Service  *issuing.Service
	Server   *api.Server
	Registry *provider.Registry
	Router   *provider.Router
	// Sandbox gives tests the sandbox partners, to make them fail.
	Sandbox  map[string]*sandbox.Adapter
	Verifier *auth.Verifier
	// SandboxSecret verifies sandbox tokens (HS256).
	SandboxSecret []byte
	Log           *slog.Logger
	// Webhooks delivers events to operators' endpoints.
	Webhooks *webhook.Worker
	// Keys seal PANs and webhook endpoint secrets at rest.
	Keys  *seal.Keyring
	redis *redis.Client // nil without Redis
}

// OpenStore opens the database named by url and applies migrations.
// Its errors name the setting to look at.
func OpenStore(ctx context.Context, url string) (*sqlstore.Store, error) {
	var s *sqlstore.Store
	var err error
	if path, ok := strings.CutPrefix(url, "sqlite:"); ok {
		s, err = sqlite.Open(ctx, path)
	} else {
		s, err = postgres.Open(ctx, url)
	}
	if err != nil {
		return nil, fmt.Errorf("CARDRAIL_DATABASE_URL (--database-url): %w", err)
	}
	return s, nil
}

// New builds an App. The caller runs Workers and closes the App.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (*App, error) {
	// Every line logged with a request's context names the request.
	log = slog.New(cardrail.LogHandler(log.Handler()))
	store, err := OpenStore(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	a, err := build(ctx, cfg, store, log)
	if err != nil {
		store.Close()
		return nil, err
	}
	return a, nil
}

func build(ctx context.Context, cfg config.Config, store *sqlstore.Store, log *slog.Logger) (*App, error) {
	secret, err := SandboxSecret(ctx, store, cfg)
	if err != nil {
		return nil, err
	}
	keys, err := keyring(ctx, store, cfg)
	if err != nil {
		return nil, err
	}
	cvvSecret, err := storedSecret(ctx, store, settingSandboxCVVSecret)
	if err != nil {
		return nil, err
	}
	verifier, err := auth.New(ctx, auth.Config{
		SandboxSecret: secret, SandboxJWKSURL: cfg.SandboxJWKSURL, ProductionJWKSURL: cfg.ProductionJWKSURL,
		ProductionPublicKeyFile: cfg.ProductionPublicKeyFile, Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience,
		OnRefreshError: func(url string, err error) {
			log.Warn("JWKS refresh failed; the last keys fetched stay in use", "url", url, "error", err)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("token verification: %w", err)
	}
	if err := seedCatalogue(ctx, store, cfg.ProductionEnabled()); err != nil {
		verifier.Close()
		return nil, fmt.Errorf("seed catalogue: %w", err)
	}
	webhooks := webhook.New(store, webhook.Options{AllowPrivate: cfg.WebhookAllowPrivate, Log: log, Keys: keys, Schedule: cfg.WebhookRetrySchedule})
	if n, err := webhooks.SealStoredSecrets(ctx); err != nil {
		verifier.Close()
		return nil, fmt.Errorf("seal webhook secrets: %w", err)
	} else if n > 0 {
		log.Info("sealed webhook endpoint secrets anew under the current key", "count", n, "key_id", keys.Current())
	}
	reg := provider.NewRegistry()
	adapters := registerSandboxPartners(reg, cvvSecret)
	router := provider.NewRouter(reg, provider.RouterConfig{})
	executors := cfg.AuthExecutors
	if executors == 0 {
		// One batch in flight per core. On this project's 2-core
		// reference machine, two executors beat one by a fifth in a slow
		// hour (with one, a third of the CPU sat idle between round
		// trips) and by a tenth at a million cards (a batch waits on
		// pages outside PostgreSQL's buffers); one beat two by 7-8% at
		// 200 cards in a fast hour, its batches being twice as large,
		// and lost by as much ten minutes later; they were even at
		// 10,000 cards (docs/performance.md, Executors). Three split the batches
		// further and gave less. SQLite has a single writer, so a second
		// batch would only wait for it. The cap of 8 is not measured
		// (only 2 cores were): it keeps executors from holding most of
		// the pool's 16 connections and from splitting moderate traffic
		// into batches of one on a large machine.
		executors = min(runtime.NumCPU(), 8)
		if store.Dialect() == "sqlite" {
			executors = 1
		}
	}
	svc := issuing.New(store, reg, router, keys, issuing.Config{HoldWindow: cfg.HoldWindow, Batch: issuing.BatchConfig{MaxBatch: cfg.AuthBatch, Executors: executors}}, log)
	apiCfg := api.Config{RateLimit: cfg.RateLimit, RequestTimeout: cfg.RequestTimeout}
	var redisClient *redis.Client // the rate limits' shared buckets, when configured
	if cfg.RedisURL != "" {
		if redisClient, err = ratelimit.DialRedis(cfg.RedisURL, log); err != nil {
			verifier.Close()
			return nil, fmt.Errorf("CARDRAIL_REDIS_URL: %w", err)
		}
		// The reveal limit is shared through Redis whenever Redis is
		// configured, even with the general limit off: it guards card
		// numbers, and a caller must not get a budget per instance. One
		// limiter (the general one when limiting is on, else the reveal's)
		// probes Redis, logs its outages and reports them to /readyz.
		reveal := ratelimit.NewRedis(redisClient, float64(api.DefaultRevealLimit)/60, api.DefaultRevealLimit)
		var watch *ratelimit.Fallback
		if cfg.RateLimit > 0 {
			watch = ratelimit.NewFallback(ratelimit.NewRedis(redisClient, cfg.RateLimit, int(2*cfg.RateLimit)), log)
			apiCfg.Limiter, apiCfg.RevealLimiter = watch, ratelimit.NewFallback(reveal, nil)
		} else {
			watch = ratelimit.NewFallback(reveal, log)
			apiCfg.RevealLimiter = watch
		}
		_ = watch.Probe(ctx) // logs the warning and reports degraded if Redis is down; requests still served
		apiCfg.Ready = func(ctx context.Context) map[string]string {
			return map[string]string{"rate_limit": watch.Check(ctx)}
		}
	}
	apiCfg.Webhooks = webhooks
	apiCfg.Keys = keys
	srv := api.New(svc, verifier, store, apiCfg, log)
	if err := registerMetrics(srv.Registry(), store, svc, router, webhooks, log); err != nil {
		svc.Close()
		verifier.Close()
		if redisClient != nil {
			redisClient.Close()
		}
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return &App{Config: cfg, Store: store, Service: svc, Server: srv, Registry: reg, Router: router, Sandbox: adapters,
		Verifier: verifier, SandboxSecret: secret, Log: log, Webhooks: webhooks, Keys: keys, redis: redisClient}, nil
}

// Handler is the HTTP handler.
func (a *App) Handler() http.Handler { return a.Server }

// Close releases everything.
func (a *App) Close() {
	a.Service.Close()
	a.Verifier.Close()
	if a.redis != nil {
		a.redis.Close()
	}
	a.Store.Close()
}

// Workers runs the background jobs until ctx ends: expiry of stale holds
// and the purge of idempotency keys older than 24 hours every interval, and
// webhook delivery, which polls on its own (Workers returns once it stopped).
func (a *App) Workers(ctx context.Context, every time.Duration) {
	webhooks := make(chan struct{})
	go func() { defer close(webhooks); a.Webhooks.Run(ctx) }() // polls far more often than every
	defer func() { <-webhooks }()
	resealed := make(chan struct{})
	go func() { defer close(resealed); a.Reseal(ctx) }()
	defer func() { <-resealed }()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		a.Tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Reseal seals anew under the current key every card number sealed under
// another (after CARDRAIL_ENCRYPTION_KEY changed, with the old key in
// CARDRAIL_PREVIOUS_ENCRYPTION_KEYS), once, and logs what it did and what
// it could not open. Workers runs it at start.
func (a *App) Reseal(ctx context.Context) {
	r, err := a.Service.ResealCards(ctx, 500)
	if err != nil {
		if ctx.Err() == nil {
			a.Log.Error("reseal card numbers", "error", err.Error())
		}
		return
	}
	if r.Cards > 0 {
		a.Log.Info("sealed card numbers anew under the current key", "count", r.Cards, "key_id", a.Keys.Current())
	}
	for _, id := range r.UnopenedKeys() {
		a.Log.Warn("card numbers sealed under a key this server does not have; they cannot be revealed until it is configured in CARDRAIL_PREVIOUS_ENCRYPTION_KEYS",
			"key_id", id, "count", r.Unopened[id])
	}
}

// Tick runs each background job once.
func (a *App) Tick(ctx context.Context) {
	for {
		n, err := a.Service.ExpireStale(ctx, 200)
		if err != nil {
			if ctx.Err() == nil {
				a.Log.Error("expire stale authorizations", "error", err.Error())
			}
			break
		}
		if n > 0 {
			a.Log.Info("expired stale authorizations", "count", n)
		}
		if n < 200 {
			break
		}
	}
	if n, err := a.Service.ExpireCards(ctx, 500); err != nil && ctx.Err() == nil {
		a.Log.Error("expire cards", "error", err.Error())
	} else if n > 0 {
		a.Log.Info("expired cards", "count", n)
	}
	if _, err := a.Store.PurgeIdempotent(ctx, time.Now().Add(-24*time.Hour)); err != nil && ctx.Err() == nil {
		a.Log.Error("purge idempotency keys", "error", err.Error())
	}
	if err := a.Webhooks.RunOnce(ctx); err != nil && ctx.Err() == nil {
		a.Log.Error("webhooks", "error", err.Error())
	}
}

// SandboxSecret returns the HS256 secret for sandbox tokens: the configured
// one, or one generated on first start and kept in the database so that
// `cardrail token` and the server agree.
func SandboxSecret(ctx context.Context, store cardrail.Store, cfg config.Config) ([]byte, error) {
	if cfg.SandboxJWTSecret != "" {
		return []byte(cfg.SandboxJWTSecret), nil
	}
	return storedSecret(ctx, store, settingSandboxJWTSecret)
}

// HasSandboxSecret reports whether the database already holds the
// generated sandbox secret, as one a server has started on does.
func HasSandboxSecret(ctx context.Context, store cardrail.Store) (bool, error) {
	_, err := store.Setting(ctx, settingSandboxJWTSecret)
	if errors.Is(err, cardrail.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// storedSecret returns a random 32-byte secret kept under key, creating it
// on first use; concurrent first starts agree on one.
func storedSecret(ctx context.Context, store cardrail.Store, key string) ([]byte, error) {
	v, err := store.Setting(ctx, key)
	if errors.Is(err, cardrail.ErrNoRows) {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		if err := store.Tx(ctx, func(tx cardrail.Tx) error {
			return tx.SetSetting(ctx, key, base64.StdEncoding.EncodeToString(b))
		}); err != nil {
			return nil, fmt.Errorf("store %s: %w", key, err)
		}
		v, err = store.Setting(ctx, key)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	return base64.StdEncoding.DecodeString(v)
}

// keyring builds the PAN-sealing keys: the configured key is current when
// set (required once production is on); the generated sandbox key stays in
// the ring so cards sealed before a key was configured can still be opened.
func keyring(ctx context.Context, store cardrail.Store, cfg config.Config) (*seal.Keyring, error) {
	if cfg.EncryptionKey == "" && cfg.ProductionEnabled() {
		return nil, errors.New("CARDRAIL_ENCRYPTION_KEY is required when production tokens are configured")
	}
	generated, err := storedSecret(ctx, store, settingSandboxKey)
	if err != nil {
		return nil, err
	}
	keys := map[string][]byte{seal.KeyID(generated): generated}
	current := seal.KeyID(generated)
	if cfg.EncryptionKey != "" {
		k, err := seal.ParseKey(cfg.EncryptionKey)
		if err != nil {
			return nil, fmt.Errorf("CARDRAIL_ENCRYPTION_KEY: %w", err)
		}
		current = seal.KeyID(k)
		keys[current] = k
	}
	// Keys rotated out still open what they sealed; the reseal pass
	// (ResealCards, SealStoredSecrets) moves that under the current key.
	for i, b64 := range cfg.PreviousEncryptionKeys {
		k, err := seal.ParseKey(b64)
		if err != nil {
			return nil, fmt.Errorf("CARDRAIL_PREVIOUS_ENCRYPTION_KEYS, key %d: %w", i+1, err)
		}
		keys[seal.KeyID(k)] = k
	}
	return seal.NewKeyring(current, keys)
}
