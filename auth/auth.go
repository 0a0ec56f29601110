// Package auth verifies the bearer tokens that callers present and decides the
// mode (sandbox or production) of every request.
//
// The mode is never read from a claim. It follows from which key verified the
// signature: the sandbox HMAC secret and the sandbox JWKS give sandbox callers,
// the production JWKS and PEM keys give live callers. Each key source accepts
// only the algorithms that fit its keys (HS256 for the secret, RS256 and ES256
// for public keys), so a token cannot borrow one kind of key for another kind
// of signature.
//
// Nothing in this package logs and nothing reads the environment: the caller
// reads configuration once at start-up and reports errors as it sees fit.
package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cardrail/cardrail"
)

// The clock-skew allowance. SPEC §2 caps it at 60 seconds so that a
// misconfiguration cannot quietly keep expired tokens alive.
const (
	DefaultLeeway = 30 * time.Second
	MaxLeeway     = 60 * time.Second
)

// fetchTimeout bounds one JWKS fetch, both the first one in New and the
// refreshes that an unknown kid triggers during Verify.
const fetchTimeout = 10 * time.Second

// maxTokenBytes bounds the work an unauthenticated request can cause; real
// tokens are a few hundred bytes.
const maxTokenBytes = 8 << 10

// Config is the verifier's configuration, read once at start-up by the
// caller. At least one sandbox key (secret or JWKS) is required so that the
// development flow always works; production is optional and stays off until
// a production JWKS or PEM file is configured.
type Config struct {
	// SandboxSecret is the HS256 secret for sandbox tokens, as raw bytes. It
	// may be empty only when SandboxJWKSURL is set.
	SandboxSecret []byte
	// SandboxJWKSURL is a JWKS of RS256/ES256 keys, each with a kid, whose
	// tokens are sandbox tokens.
	SandboxJWKSURL string
	// ProductionJWKSURL is a JWKS of RS256/ES256 keys, each with a kid, whose
	// tokens are live tokens.
	ProductionJWKSURL string
	// ProductionPublicKeyFile is a PEM file of one or more RSA or P-256 ECDSA
	// public keys ("PUBLIC KEY" or "RSA PUBLIC KEY" blocks) whose tokens are
	// live tokens.
	ProductionPublicKeyFile string
	// Issuer and Audience, when non-empty, must match the iss and aud claims
	// of every token, whichever key verified it.
	Issuer, Audience string
	// Leeway is the clock-skew allowance for exp, nbf and iat. Zero means
	// DefaultLeeway; anything above MaxLeeway is clamped to MaxLeeway.
	Leeway time.Duration
	// HTTPClient fetches the JWKS documents. Nil means a client with a 10 s
	// timeout, so that a hung key server cannot hang start-up.
	HTTPClient *http.Client
	// OnRefreshError, when set, is told of each failed refresh of a JWKS
	// document after start-up (hourly, or for a token naming an unknown
	// kid, at most every five minutes); the last good keys stay in use.
	// This package does not log, so the caller decides how to report it.
	OnRefreshError func(url string, err error)
	// Now is the clock, replaceable in tests. Nil means time.Now.
	Now func() time.Time
}

// Verifier checks bearer tokens against the configured keys. It is safe for
// concurrent use; Close it to stop refreshing the JWKS documents.
type Verifier struct {
	secret     *secretSource // HS256 with the sandbox secret; nil if not configured
	sandbox    *jwksSource
	production *jwksSource
	pem        *pemSource
	issuer     string
	cancel     context.CancelFunc
	lifetime   context.Context

	// Verified tokens are remembered briefly, so that a client presenting
	// the same token on every request pays for its signature once per
	// verifiedTTL rather than on each request (see verified.go).
	now    func() time.Time
	leeway time.Duration
	cache  *verifiedCache
}

// keySource is one place keys come from. It owns a parser whose accepted
// algorithms are pinned to what its keys can verify, and it alone decides
// the mode of the tokens its keys verify.
type keySource struct {
	livemode bool
	parser   *jwt.Parser
}

// Algorithms accepted by each kind of key.
const (
	algHS256 = "HS256"
	algRS256 = "RS256"
	algES256 = "ES256"
)

var (
	secretMethods    = []string{algHS256}
	publicKeyMethods = []string{algRS256, algES256}
)

// New builds a Verifier and loads every configured key source: it fetches
// the JWKS documents (refreshed hourly, and at most every five minutes when
// a token names an unknown kid) and reads the PEM file. It returns an error
// if no sandbox key is configured or if any configured source cannot be
// loaded, so that a bad deployment fails at start-up rather than on the first
// request.
//
// ctx bounds only the initial fetches; the refreshes run until Close.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	if len(cfg.SandboxSecret) == 0 && cfg.SandboxJWKSURL == "" {
		return nil, errors.New("auth: no sandbox key: set a sandbox secret or a sandbox JWKS URL")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: fetchTimeout}
	}

	// The refresh goroutines outlive New, so they get their own lifetime
	// that only Close ends; ctx may still abort the initial fetches.
	lifetime, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	opts, leeway, now := parserOptions(cfg)
	v := &Verifier{issuer: cfg.Issuer, cancel: cancel, lifetime: lifetime, now: now, leeway: leeway, cache: newVerifiedCache()}

	var err error
	if len(cfg.SandboxSecret) > 0 {
		// Copy the secret so that later changes to the caller's slice
		// cannot change which tokens verify.
		v.secret = &secretSource{
			keySource: &keySource{livemode: false, parser: newParser(secretMethods, opts)},
			key:       append([]byte(nil), cfg.SandboxSecret...),
		}
	}
	if cfg.SandboxJWKSURL != "" {
		src := &keySource{livemode: false, parser: newParser(publicKeyMethods, opts)}
		if v.sandbox, err = loadJWKS(lifetime, cfg.SandboxJWKSURL, client, src, cfg.OnRefreshError); err != nil {
			cancel()
			return nil, fmt.Errorf("auth: sandbox JWKS: %w", err)
		}
	}
	if cfg.ProductionJWKSURL != "" {
		src := &keySource{livemode: true, parser: newParser(publicKeyMethods, opts)}
		if v.production, err = loadJWKS(lifetime, cfg.ProductionJWKSURL, client, src, cfg.OnRefreshError); err != nil {
			cancel()
			return nil, fmt.Errorf("auth: production JWKS: %w", err)
		}
	}
	if cfg.ProductionPublicKeyFile != "" {
		src := &keySource{livemode: true, parser: newParser(publicKeyMethods, opts)}
		if v.pem, err = loadPEM(cfg.ProductionPublicKeyFile, src); err != nil {
			cancel()
			return nil, fmt.Errorf("auth: production public keys: %w", err)
		}
	}
	if v.sandbox != nil && v.ProductionEnabled() {
		// Whoever signs sandbox tokens must not be able to sign production
		// ones: a key in both would make the mode depend on a header.
		production := []any{}
		if v.production != nil {
			production = v.production.publicKeys(lifetime)
		}
		if v.pem != nil {
			production = append(production, v.pem.keys...)
		}
		if sharedKey(v.sandbox.publicKeys(lifetime), production) {
			cancel()
			return nil, errors.New("auth: a public key in CARDRAIL_SANDBOX_JWKS_URL also verifies production tokens; production needs keys of its own")
		}
	}
	if !stop() {
		// ctx ended while the sources were loading and took the refresh
		// lifetime with it.
		cancel()
		return nil, fmt.Errorf("auth: %w", context.Cause(ctx))
	}
	return v, nil
}

// ProductionEnabled reports whether live tokens can be verified at all, that
// is whether a production JWKS or PEM file is configured. Without one every
// caller is a sandbox caller.
func (v *Verifier) ProductionEnabled() bool {
	return v.production != nil || v.pem != nil
}

// Close stops the JWKS refresh goroutines. Verify keeps working with the keys
// already fetched, but no longer picks up rotated keys.
func (v *Verifier) Close() { v.cancel() }

// Verify checks the signature and claims of a bearer token and returns the
// caller it describes. The caller's Livemode is set by the key source that
// verified the signature. Every failure is a *cardrail.Error with code
// unauthenticated, a message safe to show the client and the cause in Err;
// neither ever contains the token.
func (v *Verifier) Verify(token string) (cardrail.Caller, error) {
	if len(token) > maxTokenBytes {
		return cardrail.Caller{}, unauthenticated(msgMalformed, fmt.Errorf("token is %d bytes, limit %d", len(token), maxTokenBytes))
	}
	if c, ok := v.cache.get(token, v.now()); ok {
		return c, nil
	}
	alg, kid, err := readHeader(token)
	if err != nil {
		return cardrail.Caller{}, unauthenticated(msgMalformed, err)
	}
	candidates, err := v.candidates(alg, kid)
	if err != nil {
		return cardrail.Caller{}, err
	}

	// More than one candidate only arises when two key sets share a kid;
	// the first key whose signature matches decides the mode.
	var sigErr error
	for _, c := range candidates {
		var claims tokenClaims
		_, err := c.source.parser.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return c.key, nil })
		if errors.Is(err, jwt.ErrTokenSignatureInvalid) {
			sigErr = err
			continue
		}
		if err != nil {
			return cardrail.Caller{}, parseFailure(err, &claims, v.issuer != "")
		}
		caller, err := claims.caller(c.source.livemode)
		if err == nil {
			v.cache.put(token, caller, claims.ExpiresAt.Time.Add(v.leeway), v.now())
		}
		return caller, err
	}
	return cardrail.Caller{}, unauthenticated(msgBadSignature, sigErr)
}

// candidate is a key that may have signed the token, with the source that
// vouches for it.
type candidate struct {
	source *keySource
	key    any
}

// candidates picks the keys to try for a token from its header. The header
// only routes: whatever it claims, each source's parser still pins the
// algorithm and each key is only offered for algorithms its type can verify.
func (v *Verifier) candidates(alg, kid string) ([]candidate, error) {
	switch alg {
	case algHS256:
		// Only the sandbox secret ever verifies HS256: a public key (or a
		// symmetric key published in a JWKS) is never used as an HMAC
		// secret.
		if v.secret == nil {
			return nil, unauthenticated(msgAlgorithm, errors.New("HS256 token but no sandbox secret is configured"))
		}
		return []candidate{{source: v.secret.keySource, key: v.secret.key}}, nil
	case algRS256, algES256:
	default:
		return nil, unauthenticated(msgAlgorithm, fmt.Errorf("algorithm %.20q is not accepted", alg))
	}

	var out []candidate
	var mismatch error
	if kid != "" {
		sets := []*jwksSource{v.sandbox, v.production}
		for _, fetch := range []bool{false, true} {
			// Look in the cached sets first so that a kid known to one
			// set does not make the other refetch its document.
			for _, set := range sets {
				if set == nil {
					continue
				}
				key, err := set.key(v.lifetime, kid, alg, fetch)
				switch {
				case err == nil:
					out = append(out, candidate{source: set.source, key: key})
				case errors.Is(err, errKeyMismatch):
					mismatch = err
				}
			}
			if len(out) > 0 || mismatch != nil {
				break
			}
		}
	}
	if len(out) == 0 && mismatch == nil && v.pem != nil {
		if keys := v.pem.keysFor(alg); len(keys) > 0 {
			out = append(out, candidate{source: v.pem.source, key: jwt.VerificationKeySet{Keys: keys}})
		}
	}
	if len(out) == 0 {
		if mismatch != nil {
			return nil, unauthenticated(msgAlgorithm, mismatch)
		}
		return nil, unauthenticated(msgUnknownKey, fmt.Errorf("no %s key for kid %.64q", alg, kid))
	}
	return out, nil
}

// secretSource pairs the sandbox secret with its parser.
type secretSource struct {
	*keySource
	key []byte
}

// parserOptions are the claim rules shared by every key source.
func parserOptions(cfg Config) ([]jwt.ParserOption, time.Duration, func() time.Time) {
	leeway := cfg.Leeway
	switch {
	case leeway == 0:
		leeway = DefaultLeeway
	case leeway < 0:
		leeway = 0
	case leeway > MaxLeeway:
		leeway = MaxLeeway
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	opts := []jwt.ParserOption{
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(now),
		jwt.WithStrictDecoding(),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	return opts, leeway, now
}

func newParser(methods []string, opts []jwt.ParserOption) *jwt.Parser {
	return jwt.NewParser(append([]jwt.ParserOption{jwt.WithValidMethods(methods)}, opts...)...)
}
