package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/auth"
)

var (
	now           = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)
	sandboxSecret = []byte("sandbox-secret-for-tests-0123456789abcdef")
)

func clock() time.Time { return now }

// claims returns a valid claim set; tests delete or override entries.
func claims(overrides map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{
		"sub":     "user_123",
		"country": "FR",
		"kyc":     "verified",
		"roles":   []string{"ops"},
		"iat":     now.Add(-time.Minute).Unix(),
		"nbf":     now.Add(-time.Minute).Unix(),
		"exp":     now.Add(time.Hour).Unix(),
	}
	for k, v := range overrides {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// sign signs c with method and key, adding a kid header when kid is set.
func sign(t *testing.T, method jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

// unsignedToken builds a token with alg none by hand, since the JWT library
// refuses to sign one without a special key.
func unsignedToken(c jwt.MapClaims) string {
	head, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	body, _ := json.Marshal(c)
	return b64(head) + "." + b64(body) + "."
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func newRSA(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newEC(t *testing.T, curve elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// pemPublic encodes public keys as PKIX "PUBLIC KEY" blocks.
func pemPublic(t *testing.T, keys ...any) []byte {
	t.Helper()
	var out []byte
	for _, k := range keys {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})...)
	}
	return out
}

func writeFile(t *testing.T, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys.pem")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// jwk is one entry of a hand-built JWKS document.
type jwk map[string]string

func rsaJWK(kid string, k *rsa.PublicKey) jwk {
	return jwk{"kty": "RSA", "kid": kid, "use": "sig", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

func ecJWK(t *testing.T, kid string, k *ecdsa.PublicKey) jwk {
	t.Helper()
	raw, err := k.Bytes() // 0x04 || X || Y, each 32 bytes for P-256
	if err != nil {
		t.Fatal(err)
	}
	return jwk{"kty": "EC", "kid": kid, "crv": "P-256", "x": b64(raw[1:33]), "y": b64(raw[33:65])}
}

func encryptionJWK(t *testing.T, kid string, k *ecdsa.PublicKey) jwk {
	j := ecJWK(t, kid, k)
	j["use"] = "enc"
	return j
}

// jwksServer serves a JWKS document that the test can replace, to model
// key rotation.
type jwksServer struct {
	*httptest.Server
	mu   sync.Mutex
	keys []jwk
	down bool // answer 503, as a key server in trouble would
}

func serveJWKS(t *testing.T, keys ...jwk) *jwksServer {
	t.Helper()
	s := &jwksServer{keys: keys}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.down {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": s.keys})
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) setDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

func (s *jwksServer) set(keys ...jwk) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = keys
}

func newVerifier(t *testing.T, cfg auth.Config) *auth.Verifier {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = clock
	}
	v, err := auth.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(v.Close)
	return v
}

// check asserts the outcome of Verify: the wanted caller, or an
// unauthenticated error with the wanted message that does not contain the
// token.
func check(t *testing.T, v *auth.Verifier, token string, want *cardrail.Caller, wantMsg string) {
	t.Helper()
	got, err := v.Verify(token)
	if want != nil {
		if err != nil {
			t.Fatalf("Verify: unexpected error %v", err)
		}
		if !reflect.DeepEqual(got, *want) {
			t.Fatalf("Verify = %+v, want %+v", got, *want)
		}
		return
	}
	if err == nil {
		t.Fatalf("Verify accepted the token as %+v; want %q", got, wantMsg)
	}
	var e *cardrail.Error
	if !errors.As(err, &e) {
		t.Fatalf("Verify error is %T (%v), want *cardrail.Error", err, err)
	}
	if e.Code != cardrail.CodeUnauthenticated {
		t.Errorf("code = %q, want %q", e.Code, cardrail.CodeUnauthenticated)
	}
	if wantMsg != "" && e.Message != wantMsg {
		t.Errorf("message = %q, want %q (cause: %v)", e.Message, wantMsg, e.Err)
	}
	if e.Err == nil {
		t.Error("error carries no internal cause")
	}
	if token != "" && strings.Contains(err.Error(), token) {
		t.Error("error text contains the token")
	}
}

var sandboxCaller = &cardrail.Caller{Subject: "user_123", Country: "FR", KYC: "verified", Roles: []string{"ops"}}

func TestVerifySandboxSecret(t *testing.T) {
	v := newVerifier(t, auth.Config{SandboxSecret: sandboxSecret})
	hs := func(c jwt.MapClaims) func(t *testing.T) string {
		return func(t *testing.T) string { return sign(t, jwt.SigningMethodHS256, sandboxSecret, "", c) }
	}

	tests := []struct {
		name    string
		token   func(t *testing.T) string
		want    *cardrail.Caller
		wantMsg string
	}{
		{name: "valid HS256 token gives a sandbox caller", token: hs(claims(nil)), want: sandboxCaller},
		{
			name:  "livemode claim does not make a sandbox token live",
			token: hs(claims(map[string]any{"livemode": true})),
			want:  sandboxCaller,
		},
		{
			name:  "token minted by MintSandbox verifies",
			token: mint(auth.TokenRequest{Subject: "user_9", Country: "DE", KYC: "pending", Roles: []string{"a", "b"}}),
			want:  &cardrail.Caller{Subject: "user_9", Country: "DE", KYC: "pending", Roles: []string{"a", "b"}},
		},
		{
			name:  "absent optional claims give an empty caller apart from sub",
			token: hs(claims(map[string]any{"country": nil, "kyc": nil, "roles": nil})),
			want:  &cardrail.Caller{Subject: "user_123"},
		},
		{name: "expired token is rejected", token: hs(claims(map[string]any{"exp": now.Add(-time.Hour).Unix()})), wantMsg: "The token has expired."},
		{name: "token without exp is rejected", token: hs(claims(map[string]any{"exp": nil})), wantMsg: "The token has no expiry time."},
		{name: "nbf beyond the leeway is rejected", token: hs(claims(map[string]any{"nbf": now.Add(31 * time.Second).Unix()})), wantMsg: "The token is not valid yet."},
		{name: "nbf within the leeway is accepted", token: hs(claims(map[string]any{"nbf": now.Add(29 * time.Second).Unix()})), want: sandboxCaller},
		{name: "exp within the leeway is accepted", token: hs(claims(map[string]any{"exp": now.Add(-29 * time.Second).Unix()})), want: sandboxCaller},
		{name: "iat in the future beyond the leeway is rejected", token: hs(claims(map[string]any{"iat": now.Add(2 * time.Minute).Unix()})), wantMsg: "The token was issued in the future."},
		{name: "alg none is rejected", token: func(*testing.T) string { return unsignedToken(claims(nil)) }, wantMsg: "The token's signing algorithm is not accepted."},
		{
			name: "wrong secret is rejected",
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodHS256, []byte("not-the-sandbox-secret"), "", claims(nil))
			},
			wantMsg: "The token signature is invalid.",
		},
		{
			name:    "HS512 with the right secret is rejected",
			token:   func(t *testing.T) string { return sign(t, jwt.SigningMethodHS512, sandboxSecret, "", claims(nil)) },
			wantMsg: "The token's signing algorithm is not accepted.",
		},
		{
			name:    "tampered payload is rejected",
			token:   func(t *testing.T) string { return tamper(t, hs(claims(nil))(t), map[string]any{"sub": "someone_else"}) },
			wantMsg: "The token signature is invalid.",
		},
		{name: "missing sub is rejected", token: hs(claims(map[string]any{"sub": nil})), wantMsg: "The token has no valid subject."},
		{name: "empty sub is rejected", token: hs(claims(map[string]any{"sub": ""})), wantMsg: "The token has no valid subject."},
		{name: "sub of 255 characters is accepted", token: hs(claims(map[string]any{"sub": strings.Repeat("é", 255), "country": nil, "kyc": nil, "roles": nil})), want: &cardrail.Caller{Subject: strings.Repeat("é", 255)}},
		{name: "sub over 255 characters is rejected", token: hs(claims(map[string]any{"sub": strings.Repeat("a", 256)})), wantMsg: "The token has no valid subject."},
		{name: "lower-case country is rejected", token: hs(claims(map[string]any{"country": "fr"})), wantMsg: "The token's country must be a two-letter ISO 3166-1 code in upper case."},
		{name: "three-letter country is rejected", token: hs(claims(map[string]any{"country": "FRA"})), wantMsg: "The token's country must be a two-letter ISO 3166-1 code in upper case."},
		{name: "empty country is rejected", token: hs(claims(map[string]any{"country": ""})), wantMsg: "The token's country must be a two-letter ISO 3166-1 code in upper case."},
		{name: "non-ASCII country is rejected", token: hs(claims(map[string]any{"country": "É"})), wantMsg: "The token's country must be a two-letter ISO 3166-1 code in upper case."},
		{name: "numeric country is rejected", token: hs(claims(map[string]any{"country": 33})), wantMsg: "The token's country must be a two-letter ISO 3166-1 code in upper case."},
		{name: "roles as a string is rejected", token: hs(claims(map[string]any{"roles": "ops"})), wantMsg: "The token's roles must be an array of strings."},
		{name: "roles with a number is rejected", token: hs(claims(map[string]any{"roles": []any{"ops", 7}})), wantMsg: "The token's roles must be an array of strings."},
		{name: "roles with a null is rejected", token: hs(claims(map[string]any{"roles": []any{"ops", nil}})), wantMsg: "The token's roles must be an array of strings."},
		{name: "non-string kid is rejected as malformed", token: hsHeader(map[string]any{"kid": 7}), wantMsg: "The token is malformed."},
		{name: "sub with a NUL is rejected", token: hs(claims(map[string]any{"sub": "eve\x00"})), wantMsg: "The token has no valid subject."},
		{name: "sub with a newline is rejected", token: hs(claims(map[string]any{"sub": "eve\nadmin"})), wantMsg: "The token has no valid subject."},
		{name: "exp as a string of digits is rejected", token: hs(claims(map[string]any{"exp": strconv.FormatInt(now.Add(time.Hour).Unix(), 10)})), wantMsg: "The token's claims are invalid."},
		{name: "iat as a string of digits is rejected", token: hs(claims(map[string]any{"iat": strconv.FormatInt(now.Unix(), 10)})), wantMsg: "The token's claims are invalid."},
		{name: "exp past year 9999 is out of range, not expired", token: hs(claims(map[string]any{"exp": int64(9223372036854775807)})), wantMsg: "The token's exp, nbf or iat is out of range: a NumericDate is seconds since 1970, at most 253402300799 (the end of year 9999)."},
		{name: "exp at the end of year 9999 is accepted", token: hs(claims(map[string]any{"exp": int64(253402300799)})), want: sandboxCaller},
		{name: "a negative iat is out of range", token: hs(claims(map[string]any{"iat": -1})), wantMsg: "The token's exp, nbf or iat is out of range: a NumericDate is seconds since 1970, at most 253402300799 (the end of year 9999)."},
		{name: "nbf as an exponent past the range", token: hs(claims(map[string]any{"nbf": 1e300})), wantMsg: "The token's exp, nbf or iat is out of range: a NumericDate is seconds since 1970, at most 253402300799 (the end of year 9999)."},
		{name: "exp as a fraction is accepted", token: hs(claims(map[string]any{"exp": float64(now.Add(time.Hour).Unix()) + 0.5})), want: sandboxCaller},
		{name: "a crit header is rejected as malformed", token: hsHeader(map[string]any{"crit": []string{"foo"}, "foo": 1}), wantMsg: "The token is malformed."},
		{name: "kyc as a boolean is rejected", token: hs(claims(map[string]any{"kyc": true})), wantMsg: "The token's kyc claim must be a string."},
		{name: "garbage is rejected as malformed", token: func(*testing.T) string { return "not-a-jwt" }, wantMsg: "The token is malformed."},
		{name: "empty token is rejected", token: func(*testing.T) string { return "" }, wantMsg: "The token is malformed."},
		{name: "oversized token is rejected", token: hs(claims(map[string]any{"pad": strings.Repeat("x", 10_000)})), wantMsg: "The token is malformed."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check(t, v, tt.token(t), tt.want, tt.wantMsg)
		})
	}
}

// hsHeader signs the default claims with the sandbox secret, adding
// header to the token's header.
func hsHeader(header map[string]any) func(t *testing.T) string {
	return func(t *testing.T) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil))
		for k, v := range header {
			tok.Header[k] = v
		}
		s, err := tok.SignedString(sandboxSecret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

func mint(req auth.TokenRequest) func(t *testing.T) string {
	return func(t *testing.T) string {
		t.Helper()
		tok, err := auth.MintSandbox(sandboxSecret, req, now)
		if err != nil {
			t.Fatalf("MintSandbox: %v", err)
		}
		return tok
	}
}

// tamper replaces claims in a signed token while keeping its signature.
func tamper(t *testing.T, token string, overrides map[string]any) string {
	t.Helper()
	parts := strings.Split(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	for k, val := range overrides {
		c[k] = val
	}
	body, _ := json.Marshal(c)
	parts[1] = b64(body)
	return strings.Join(parts, ".")
}

func TestLeeway(t *testing.T) {
	expiredAgo := func(d time.Duration) jwt.MapClaims {
		return claims(map[string]any{"exp": now.Add(-d).Unix()})
	}
	tests := []struct {
		name    string
		leeway  time.Duration
		expired time.Duration
		accept  bool
	}{
		{name: "default leeway accepts a token expired 20s ago", leeway: 0, expired: 20 * time.Second, accept: true},
		{name: "default leeway rejects a token expired 40s ago", leeway: 0, expired: 40 * time.Second},
		{name: "five-minute leeway is clamped and rejects a token expired 90s ago", leeway: 5 * time.Minute, expired: 90 * time.Second},
		{name: "five-minute leeway still allows the 60s maximum", leeway: 5 * time.Minute, expired: 50 * time.Second, accept: true},
		{name: "negative leeway allows no skew", leeway: -time.Minute, expired: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVerifier(t, auth.Config{SandboxSecret: sandboxSecret, Leeway: tt.leeway})
			token := sign(t, jwt.SigningMethodHS256, sandboxSecret, "", expiredAgo(tt.expired))
			if tt.accept {
				check(t, v, token, sandboxCaller, "")
			} else {
				check(t, v, token, nil, "The token has expired.")
			}
		})
	}
}

func TestProductionPublicKeyFile(t *testing.T) {
	rsaKey := newRSA(t)
	ecKey := newEC(t, elliptic.P256())
	otherRSA := newRSA(t)
	rsaPEM := pemPublic(t, &rsaKey.PublicKey)
	pemFile := append(append([]byte(nil), rsaPEM...), pemPublic(t, &ecKey.PublicKey)...)
	v := newVerifier(t, auth.Config{SandboxSecret: sandboxSecret, ProductionPublicKeyFile: writeFile(t, pemFile)})
	if !v.ProductionEnabled() {
		t.Fatal("ProductionEnabled() = false with a PEM file configured")
	}
	live := *sandboxCaller
	live.Livemode = true

	tests := []struct {
		name    string
		token   string
		want    *cardrail.Caller
		wantMsg string
	}{
		{name: "RS256 token from the PEM file is live", token: sign(t, jwt.SigningMethodRS256, rsaKey, "", claims(nil)), want: &live},
		{name: "ES256 token from the second PEM key is live", token: sign(t, jwt.SigningMethodES256, ecKey, "", claims(nil)), want: &live},
		{name: "RS256 token with a kid no JWKS knows falls back to the PEM keys", token: sign(t, jwt.SigningMethodRS256, rsaKey, "rotated-2026", claims(nil)), want: &live},
		{name: "RS256 token from another key is rejected", token: sign(t, jwt.SigningMethodRS256, otherRSA, "", claims(nil)), wantMsg: "The token signature is invalid."},
		{
			name:    "HS256 signed with the RSA public key PEM as secret is rejected",
			token:   sign(t, jwt.SigningMethodHS256, rsaPEM, "", claims(nil)),
			wantMsg: "The token signature is invalid.",
		},
		{
			name:    "HS256 signed with the whole PEM file as secret is rejected",
			token:   sign(t, jwt.SigningMethodHS256, pemFile, "", claims(nil)),
			wantMsg: "The token signature is invalid.",
		},
		{name: "RS384 from the PEM key is rejected", token: sign(t, jwt.SigningMethodRS384, rsaKey, "", claims(nil)), wantMsg: "The token's signing algorithm is not accepted."},
		{name: "PS256 from the PEM key is rejected", token: sign(t, jwt.SigningMethodPS256, rsaKey, "", claims(nil)), wantMsg: "The token's signing algorithm is not accepted."},
		{name: "expired production token is rejected", token: sign(t, jwt.SigningMethodRS256, rsaKey, "", claims(map[string]any{"exp": now.Add(-time.Hour).Unix()})), wantMsg: "The token has expired."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check(t, v, tt.token, tt.want, tt.wantMsg)
		})
	}

	t.Run("an RSA key under 2048 bits is refused at start", func(t *testing.T) {
		small, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			t.Fatal(err)
		}
		v, err := auth.New(t.Context(), auth.Config{SandboxSecret: sandboxSecret, ProductionPublicKeyFile: writeFile(t, pemPublic(t, &small.PublicKey))})
		if err == nil {
			v.Close()
			t.Fatal("accepted an RSA-1024 production key")
		}
	})

	t.Run("RS256 token is rejected when the file holds only an EC key", func(t *testing.T) {
		v := newVerifier(t, auth.Config{SandboxSecret: sandboxSecret, ProductionPublicKeyFile: writeFile(t, pemPublic(t, &ecKey.PublicKey))})
		check(t, v, sign(t, jwt.SigningMethodRS256, rsaKey, "", claims(nil)), nil, "The token's signing key is not known.")
	})
}

func TestJWKSModes(t *testing.T) {
	sandboxEC := newEC(t, elliptic.P256())
	prodEC := newEC(t, elliptic.P256())
	sandboxRSA := newRSA(t)
	hmacKey := []byte("symmetric-key-published-in-a-jwks-0123")
	sandboxJWKS := serveJWKS(t,
		ecJWK(t, "sbx-ec", &sandboxEC.PublicKey),
		rsaJWK("sbx-rsa", &sandboxRSA.PublicKey),
		jwk{"kty": "oct", "kid": "sbx-oct", "k": b64(hmacKey)},
		encryptionJWK(t, "sbx-enc", &sandboxEC.PublicKey),
	)
	prodJWKS := serveJWKS(t, ecJWK(t, "prod-ec", &prodEC.PublicKey))
	v := newVerifier(t, auth.Config{SandboxSecret: sandboxSecret, SandboxJWKSURL: sandboxJWKS.URL, ProductionJWKSURL: prodJWKS.URL})
	live := *sandboxCaller
	live.Livemode = true

	tests := []struct {
		name    string
		token   string
		want    *cardrail.Caller
		wantMsg string
	}{
		{name: "ES256 with a sandbox kid is a sandbox caller", token: sign(t, jwt.SigningMethodES256, sandboxEC, "sbx-ec", claims(nil)), want: sandboxCaller},
		{name: "RS256 with a sandbox kid is a sandbox caller", token: sign(t, jwt.SigningMethodRS256, sandboxRSA, "sbx-rsa", claims(nil)), want: sandboxCaller},
		{name: "ES256 with a production kid is live", token: sign(t, jwt.SigningMethodES256, prodEC, "prod-ec", claims(nil)), want: &live},
		{name: "unknown kid is rejected", token: sign(t, jwt.SigningMethodES256, prodEC, "nobody", claims(nil)), wantMsg: "The token's signing key is not known."},
		{name: "ES256 without a kid is rejected when no PEM is configured", token: sign(t, jwt.SigningMethodES256, prodEC, "", claims(nil)), wantMsg: "The token's signing key is not known."},
		{name: "production key claiming a sandbox kid is rejected", token: sign(t, jwt.SigningMethodES256, prodEC, "sbx-ec", claims(nil)), wantMsg: "The token signature is invalid."},
		{name: "sandbox key claiming a production kid is rejected", token: sign(t, jwt.SigningMethodES256, sandboxEC, "prod-ec", claims(nil)), wantMsg: "The token signature is invalid."},
		{name: "ES256 header naming an RSA key is rejected", token: sign(t, jwt.SigningMethodES256, sandboxEC, "sbx-rsa", claims(nil)), wantMsg: "The token's signing algorithm is not accepted."},
		{name: "key published for encryption is not used to verify", token: sign(t, jwt.SigningMethodES256, sandboxEC, "sbx-enc", claims(nil)), wantMsg: "The token's signing algorithm is not accepted."},
		{name: "HS256 with the kid of a symmetric JWK is rejected", token: sign(t, jwt.SigningMethodHS256, hmacKey, "sbx-oct", claims(nil)), wantMsg: "The token signature is invalid."},
		{name: "HS256 with the sandbox secret still works beside a JWKS", token: sign(t, jwt.SigningMethodHS256, sandboxSecret, "prod-ec", claims(nil)), want: sandboxCaller},
		{name: "livemode claim does not make a sandbox JWKS token live", token: sign(t, jwt.SigningMethodES256, sandboxEC, "sbx-ec", claims(map[string]any{"livemode": true})), want: sandboxCaller},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check(t, v, tt.token, tt.want, tt.wantMsg)
		})
	}

	t.Run("a key that would verify both modes is refused at start", func(t *testing.T) {
		for name, cfg := range map[string]auth.Config{
			"in the production PEM file": {SandboxSecret: sandboxSecret, SandboxJWKSURL: sandboxJWKS.URL,
				ProductionPublicKeyFile: writeFile(t, pemPublic(t, &prodEC.PublicKey, &sandboxRSA.PublicKey))},
			"in the production JWKS": {SandboxSecret: sandboxSecret, SandboxJWKSURL: sandboxJWKS.URL,
				ProductionJWKSURL: serveJWKS(t, ecJWK(t, "prod-copy", &sandboxEC.PublicKey)).URL},
		} {
			v, err := auth.New(t.Context(), cfg)
			if err == nil {
				v.Close()
				t.Errorf("%s: accepted a sandbox key for production", name)
			}
		}
	})

	t.Run("rotated production key is picked up without a restart", func(t *testing.T) {
		// A fresh verifier, because an unknown kid may trigger only one
		// refetch every five minutes and the cases above spent it.
		srv := serveJWKS(t, ecJWK(t, "prod-ec", &prodEC.PublicKey))
		v := newVerifier(t, auth.Config{SandboxSecret: sandboxSecret, ProductionJWKSURL: srv.URL})
		rotated := newEC(t, elliptic.P256())
		srv.set(ecJWK(t, "prod-ec-2", &rotated.PublicKey))
		check(t, v, sign(t, jwt.SigningMethodES256, rotated, "prod-ec-2", claims(nil)), &live, "")
		check(t, v, sign(t, jwt.SigningMethodES256, prodEC, "prod-ec", claims(nil)), nil, "The token's signing key is not known.")
	})
}

func TestJWKSRefreshFailureIsReportedAndKeepsTheKeys(t *testing.T) {
	prodEC := newEC(t, elliptic.P256())
	srv := serveJWKS(t, ecJWK(t, "prod-ec", &prodEC.PublicKey))
	var mu sync.Mutex
	var reported []string
	v := newVerifier(t, auth.Config{SandboxSecret: sandboxSecret, ProductionJWKSURL: srv.URL,
		OnRefreshError: func(url string, err error) {
			mu.Lock()
			defer mu.Unlock()
			reported = append(reported, url+": "+err.Error())
		}})
	srv.setDown(true)
	// A token naming a kid the document lacks makes the verifier refetch it.
	rotated := newEC(t, elliptic.P256())
	check(t, v, sign(t, jwt.SigningMethodES256, rotated, "prod-ec-2", claims(nil)), nil, "The token's signing key is not known.")
	mu.Lock()
	got := slices.Clone(reported)
	mu.Unlock()
	if len(got) != 1 || !strings.HasPrefix(got[0], srv.URL+": ") {
		t.Fatalf("reported %q, want one failure of %s", got, srv.URL)
	}
	live := *sandboxCaller
	live.Livemode = true
	check(t, v, sign(t, jwt.SigningMethodES256, prodEC, "prod-ec", claims(nil)), &live, "")
}

func TestProductionNotConfigured(t *testing.T) {
	prodKey := newRSA(t)
	prodEC := newEC(t, elliptic.P256())
	sandboxEC := newEC(t, elliptic.P256())
	sandboxJWKS := serveJWKS(t, ecJWK(t, "sbx-ec", &sandboxEC.PublicKey))

	tests := []struct {
		name string
		cfg  auth.Config
	}{
		{name: "sandbox secret only", cfg: auth.Config{SandboxSecret: sandboxSecret}},
		{name: "sandbox JWKS only", cfg: auth.Config{SandboxJWKSURL: sandboxJWKS.URL}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVerifier(t, tt.cfg)
			if v.ProductionEnabled() {
				t.Fatal("ProductionEnabled() = true with no production key source")
			}
			for _, token := range []string{
				sign(t, jwt.SigningMethodRS256, prodKey, "", claims(nil)),
				sign(t, jwt.SigningMethodRS256, prodKey, "prod-1", claims(nil)),
				sign(t, jwt.SigningMethodES256, prodEC, "prod-ec", claims(nil)),
			} {
				check(t, v, token, nil, "")
			}
		})
	}

	t.Run("HS256 is rejected when only a sandbox JWKS is configured", func(t *testing.T) {
		v := newVerifier(t, auth.Config{SandboxJWKSURL: sandboxJWKS.URL})
		check(t, v, sign(t, jwt.SigningMethodHS256, sandboxSecret, "", claims(nil)), nil, "The token's signing algorithm is not accepted.")
		check(t, v, sign(t, jwt.SigningMethodES256, sandboxEC, "sbx-ec", claims(nil)), sandboxCaller, "")
	})
}

func TestIssuerAndAudience(t *testing.T) {
	v := newVerifier(t, auth.Config{SandboxSecret: sandboxSecret, Issuer: "https://id.cardrail.test", Audience: "cardrail-api"})
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, sandboxSecret, "", c) }
	good := map[string]any{"iss": "https://id.cardrail.test", "aud": "cardrail-api"}
	with := func(k string, val any) map[string]any {
		m := map[string]any{"iss": good["iss"], "aud": good["aud"]}
		m[k] = val
		return m
	}

	tests := []struct {
		name    string
		token   string
		want    *cardrail.Caller
		wantMsg string
	}{
		{name: "matching iss and aud are accepted", token: hs(claims(good)), want: sandboxCaller},
		{name: "aud array containing the audience is accepted", token: hs(claims(with("aud", []string{"other", "cardrail-api"}))), want: sandboxCaller},
		{name: "wrong iss is rejected", token: hs(claims(with("iss", "https://evil.test"))), wantMsg: "The token issuer is not accepted."},
		{name: "missing iss is rejected", token: hs(claims(with("iss", nil))), wantMsg: "The token issuer is not accepted."},
		{name: "wrong aud is rejected", token: hs(claims(with("aud", "someone-else"))), wantMsg: "The token audience is not accepted."},
		{name: "missing aud is rejected", token: hs(claims(with("aud", nil))), wantMsg: "The token audience is not accepted."},
		{
			name: "minted token with iss and aud is accepted",
			token: mint(auth.TokenRequest{Subject: "user_123", Country: "FR", KYC: "verified", Roles: []string{"ops"},
				Issuer: "https://id.cardrail.test", Audience: "cardrail-api"})(t),
			want: sandboxCaller,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check(t, v, tt.token, tt.want, tt.wantMsg)
		})
	}
}

func TestNew(t *testing.T) {
	ecKey := newEC(t, elliptic.P256())
	good := serveJWKS(t, ecJWK(t, "k1", &ecKey.PublicKey))
	empty := serveJWKS(t)
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	t.Cleanup(broken.Close)
	privateDER, err := x509.MarshalPKCS8PrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	p384 := newEC(t, elliptic.P384())

	tests := []struct {
		name           string
		cfg            auth.Config
		wantErr        bool
		wantProduction bool
	}{
		{name: "no sandbox key is an error", cfg: auth.Config{ProductionJWKSURL: good.URL}, wantErr: true},
		{name: "sandbox JWKS without a secret is enough", cfg: auth.Config{SandboxJWKSURL: good.URL}},
		{name: "production JWKS enables production", cfg: auth.Config{SandboxSecret: sandboxSecret, ProductionJWKSURL: good.URL}, wantProduction: true},
		{name: "unreachable JWKS is an error", cfg: auth.Config{SandboxSecret: sandboxSecret, ProductionJWKSURL: broken.URL}, wantErr: true},
		{name: "JWKS without usable keys is an error", cfg: auth.Config{SandboxSecret: sandboxSecret, SandboxJWKSURL: empty.URL}, wantErr: true},
		{name: "invalid JWKS URL is an error", cfg: auth.Config{SandboxSecret: sandboxSecret, ProductionJWKSURL: "::not a url"}, wantErr: true},
		{name: "missing PEM file is an error", cfg: auth.Config{SandboxSecret: sandboxSecret, ProductionPublicKeyFile: filepath.Join(t.TempDir(), "absent.pem")}, wantErr: true},
		{name: "PEM file without keys is an error", cfg: auth.Config{SandboxSecret: sandboxSecret, ProductionPublicKeyFile: writeFile(t, []byte("hello"))}, wantErr: true},
		{
			name:    "PEM file with a private key is an error",
			cfg:     auth.Config{SandboxSecret: sandboxSecret, ProductionPublicKeyFile: writeFile(t, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privateDER}))},
			wantErr: true,
		},
		{name: "PEM file with a P-384 key is an error", cfg: auth.Config{SandboxSecret: sandboxSecret, ProductionPublicKeyFile: writeFile(t, pemPublic(t, &p384.PublicKey))}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := auth.New(context.Background(), tt.cfg)
			if tt.wantErr {
				if err == nil {
					v.Close()
					t.Fatal("New succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer v.Close()
			if got := v.ProductionEnabled(); got != tt.wantProduction {
				t.Errorf("ProductionEnabled() = %v, want %v", got, tt.wantProduction)
			}
		})
	}

	t.Run("cancelled context is an error", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := auth.New(ctx, auth.Config{SandboxSecret: sandboxSecret, ProductionJWKSURL: good.URL}); err == nil {
			t.Fatal("New succeeded with a cancelled context")
		}
	})

	t.Run("Verify keeps the fetched keys after Close", func(t *testing.T) {
		v, err := auth.New(context.Background(), auth.Config{SandboxSecret: sandboxSecret, ProductionJWKSURL: good.URL, Now: clock})
		if err != nil {
			t.Fatal(err)
		}
		v.Close()
		v.Close() // Close is idempotent.
		live := *sandboxCaller
		live.Livemode = true
		check(t, v, sign(t, jwt.SigningMethodES256, ecKey, "k1", claims(nil)), &live, "")
	})

	t.Run("later changes to the secret slice do not change the verifier", func(t *testing.T) {
		secret := append([]byte(nil), sandboxSecret...)
		v := newVerifier(t, auth.Config{SandboxSecret: secret})
		secret[0] ^= 0xff
		check(t, v, sign(t, jwt.SigningMethodHS256, sandboxSecret, "", claims(nil)), sandboxCaller, "")
	})
}

func TestMintSandbox(t *testing.T) {
	tests := []struct {
		name      string
		secret    []byte
		req       auth.TokenRequest
		wantField string // the invalid field, or "" for a non-validation error
	}{
		{name: "empty subject is refused", secret: sandboxSecret, req: auth.TokenRequest{Country: "FR"}, wantField: "subject"},
		{name: "overlong subject is refused", secret: sandboxSecret, req: auth.TokenRequest{Subject: strings.Repeat("a", 256)}, wantField: "subject"},
		{name: "lower-case country is refused", secret: sandboxSecret, req: auth.TokenRequest{Subject: "u", Country: "fr"}, wantField: "country"},
		{name: "three-letter country is refused", secret: sandboxSecret, req: auth.TokenRequest{Subject: "u", Country: "FRA"}, wantField: "country"},
		{name: "negative TTL is refused", secret: sandboxSecret, req: auth.TokenRequest{Subject: "u", TTL: -time.Minute}, wantField: "ttl"},
		{name: "empty secret is refused", secret: nil, req: auth.TokenRequest{Subject: "u"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := auth.MintSandbox(tt.secret, tt.req, now)
			if err == nil {
				t.Fatalf("MintSandbox returned a token, want an error")
			}
			if tok != "" {
				t.Error("MintSandbox returned a token alongside an error")
			}
			if tt.wantField == "" {
				return
			}
			var e *cardrail.Error
			if !errors.As(err, &e) || e.Code != cardrail.CodeValidation || len(e.Fields) != 1 || e.Fields[0].Field != tt.wantField {
				t.Fatalf("error = %#v, want a validation error on %q", err, tt.wantField)
			}
		})
	}

	t.Run("token lives for the default TTL of one hour", func(t *testing.T) {
		tok := mint(auth.TokenRequest{Subject: "u"})(t)
		for _, tc := range []struct {
			at     time.Time
			accept bool
		}{
			{at: now, accept: true},
			{at: now.Add(59 * time.Minute), accept: true},
			{at: now.Add(time.Hour + time.Minute), accept: false},
		} {
			v := newVerifier(t, auth.Config{SandboxSecret: sandboxSecret, Now: func() time.Time { return tc.at }})
			_, err := v.Verify(tok)
			if (err == nil) != tc.accept {
				t.Errorf("at %v: Verify error = %v, want accept=%v", tc.at.Sub(now), err, tc.accept)
			}
		}
	})

	t.Run("token uses HS256 and carries the requested claims", func(t *testing.T) {
		tok := mint(auth.TokenRequest{Subject: "u", Country: "GB", KYC: "verified", Roles: []string{"ops"}, TTL: 10 * time.Minute})(t)
		parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
		if err != nil {
			t.Fatal(err)
		}
		if alg := parsed.Header["alg"]; alg != "HS256" {
			t.Errorf("alg = %v, want HS256", alg)
		}
		c := parsed.Claims.(jwt.MapClaims)
		want := map[string]any{"sub": "u", "country": "GB", "kyc": "verified", "roles": []any{"ops"},
			"iat": float64(now.Unix()), "nbf": float64(now.Unix()), "exp": float64(now.Add(10 * time.Minute).Unix())}
		for k, w := range want {
			if !reflect.DeepEqual(c[k], w) {
				t.Errorf("claim %s = %#v, want %#v", k, c[k], w)
			}
		}
	})
}

func TestVerifyIsSafeForConcurrentUse(t *testing.T) {
	ecKey := newEC(t, elliptic.P256())
	srv := serveJWKS(t, ecJWK(t, "k1", &ecKey.PublicKey))
	v := newVerifier(t, auth.Config{SandboxSecret: sandboxSecret, ProductionJWKSURL: srv.URL})
	tokens := []string{
		sign(t, jwt.SigningMethodHS256, sandboxSecret, "", claims(nil)),
		sign(t, jwt.SigningMethodES256, ecKey, "k1", claims(nil)),
	}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			if _, err := v.Verify(tokens[i%len(tokens)]); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
	wg.Wait()
}

// TestVerifiedTokensAreRemembered checks the verified-token cache: a
// remembered token still stops working at its expiry (plus leeway), and a
// caller that alters the roles it was given cannot alter what the next
// request with the same token sees.
func TestVerifiedTokensAreRemembered(t *testing.T) {
	var mu sync.Mutex
	at := now
	v := newVerifier(t, auth.Config{SandboxSecret: sandboxSecret, Leeway: 10 * time.Second, Now: func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return at
	}})
	advance := func(d time.Duration) {
		mu.Lock()
		at = at.Add(d)
		mu.Unlock()
	}
	token := sign(t, jwt.SigningMethodHS256, sandboxSecret, "", claims(map[string]any{"exp": now.Add(20 * time.Second).Unix()}))

	first, err := v.Verify(token)
	if err != nil {
		t.Fatal(err)
	}
	first.Roles[0] = "tampered"
	check(t, v, token, sandboxCaller, "")

	advance(29 * time.Second) // exp + leeway is 30 s away from the start
	check(t, v, token, sandboxCaller, "")
	advance(2 * time.Second)
	check(t, v, token, nil, "The token has expired.")

	// A token that verified once and has since expired stays refused
	// after the clock has moved past the cache's own lifetime too.
	advance(time.Minute)
	check(t, v, token, nil, "The token has expired.")

	// A token that never verified is never remembered.
	bad := sign(t, jwt.SigningMethodHS256, []byte("another-secret-0123456789abcdef0123"), "", claims(nil))
	check(t, v, bad, nil, "The token signature is invalid.")
	check(t, v, bad, nil, "The token signature is invalid.")
}
