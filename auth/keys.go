package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// errKeyMismatch marks a key found by kid whose type or declared algorithm
// does not fit the token's alg: the key-confusion case, refused outright.
var errKeyMismatch = errors.New("key does not fit the token's algorithm")

// readHeader decodes the protected header just far enough to route the
// token to candidate keys. It decides nothing about validity.
func readHeader(token string) (alg, kid string, err error) {
	head, _, ok := strings.Cut(token, ".")
	if !ok {
		return "", "", errors.New("token has no header segment")
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(head)
	if err != nil {
		return "", "", fmt.Errorf("decode header: %w", err)
	}
	var h struct {
		Alg  string          `json:"alg"`
		Kid  string          `json:"kid"`
		Crit json.RawMessage `json:"crit"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return "", "", fmt.Errorf("decode header: %w", err)
	}
	if h.Crit != nil {
		// RFC 7515 §4.1.11: a recipient must refuse a token whose crit
		// names extensions it does not understand, and we understand none.
		return "", "", errors.New("header names critical extensions (crit)")
	}
	return h.Alg, h.Kid, nil
}

// keyFits reports whether key can verify a signature made with alg. The
// check is ours rather than the JWT library's so that a key of the wrong
// kind is never even offered to a signature method.
// minRSABits is the smallest RSA key accepted.
const minRSABits = 2048

func keyFits(alg string, key any) bool {
	switch alg {
	case algRS256:
		// RFC 7518 §3.3: RS256 keys are 2048 bits or larger.
		k, ok := key.(*rsa.PublicKey)
		return ok && k.N.BitLen() >= minRSABits
	case algES256:
		k, ok := key.(*ecdsa.PublicKey)
		return ok && k.Curve == elliptic.P256()
	}
	return false
}

// jwksSource is a JWKS document fetched over HTTP and kept fresh by keyfunc.
type jwksSource struct {
	source  *keySource
	storage jwkset.Storage
}

// loadJWKS fetches the document at url once, failing if it cannot be
// fetched or holds no usable key, and keeps refreshing it until lifetime
// ends. A refresh that fails keeps the last good keys and is passed to
// onError, if set.
func loadJWKS(lifetime context.Context, url string, client *http.Client, src *keySource, onError func(string, error)) (*jwksSource, error) {
	noErrorOnFirstFailure := false
	kf, err := keyfunc.NewDefaultOverrideCtx(lifetime, []string{url}, keyfunc.Override{
		Client:                    client,
		HTTPTimeout:               fetchTimeout,
		NoErrorReturnFirstHTTPReq: &noErrorOnFirstFailure,
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(_ context.Context, err error) {
				if onError != nil {
					onError(u, err)
				}
			}
		},
		// A token with an unknown kid may trigger one refetch every five
		// minutes (keyfunc's default); other such tokens must not queue
		// behind the rate limiter, so they wait at most this long.
		RateLimitWaitMax: 100 * time.Millisecond,
	})
	if err != nil {
		return nil, err
	}
	s := &jwksSource{source: src, storage: kf.Storage()}
	keys, err := s.storage.KeyReadAll(lifetime)
	if err != nil {
		return nil, err
	}
	usable := 0
	for _, jwk := range keys {
		if _, err := usableKey(jwk, algRS256); err == nil {
			usable++
		} else if _, err := usableKey(jwk, algES256); err == nil {
			usable++
		}
	}
	if usable == 0 {
		return nil, fmt.Errorf("%s holds no RS256 or ES256 signing key with a kid", url)
	}
	return s, nil
}

// publicKeys is every signing key the cached document holds.
func (s *jwksSource) publicKeys(ctx context.Context) []any {
	keys, err := s.storage.KeyReadAll(ctx)
	if err != nil {
		return nil
	}
	var out []any
	for _, jwk := range keys {
		for _, alg := range []string{algRS256, algES256} {
			if k, err := usableKey(jwk, alg); err == nil {
				out = append(out, k)
			}
		}
	}
	return out
}

// sharedKey reports whether a key of one set is also in the other.
func sharedKey(a, b []any) bool {
	for _, x := range a {
		eq, ok := x.(interface{ Equal(crypto.PublicKey) bool })
		if !ok {
			continue
		}
		for _, y := range b {
			if eq.Equal(y) {
				return true
			}
		}
	}
	return false
}

// key returns the key with the given kid if it can verify alg. With fetch
// false it looks only at the cached document; with fetch true an unknown kid
// may refetch it, so that rotated keys are picked up without a restart.
func (s *jwksSource) key(lifetime context.Context, kid, alg string, fetch bool) (any, error) {
	var jwk jwkset.JWK
	if fetch {
		ctx, cancel := context.WithTimeout(lifetime, fetchTimeout)
		defer cancel()
		var err error
		if jwk, err = s.storage.KeyRead(ctx, kid); err != nil {
			return nil, err
		}
	} else {
		keys, err := s.storage.KeyReadAll(lifetime)
		if err != nil {
			return nil, err
		}
		found := false
		for _, k := range keys {
			if k.Marshal().KID == kid {
				jwk, found = k, true
				break
			}
		}
		if !found {
			return nil, jwkset.ErrKeyNotFound
		}
	}
	return usableKey(jwk, alg)
}

// usableKey returns the public key of jwk if it is a signing key with a kid
// that can verify alg, honouring the key's own alg and use if it states them.
func usableKey(jwk jwkset.JWK, alg string) (any, error) {
	m := jwk.Marshal()
	if m.KID == "" {
		return nil, jwkset.ErrKeyNotFound
	}
	if m.USE != "" && m.USE != jwkset.UseSig {
		return nil, fmt.Errorf("%w: kid %.64q has use %q", errKeyMismatch, m.KID, m.USE)
	}
	if m.ALG != "" && string(m.ALG) != alg {
		return nil, fmt.Errorf("%w: kid %.64q is for %s, token says %s", errKeyMismatch, m.KID, m.ALG, alg)
	}
	key := jwk.Key()
	if k, ok := key.(interface{ Public() crypto.PublicKey }); ok {
		key = k.Public()
	}
	if !keyFits(alg, key) {
		return nil, fmt.Errorf("%w: kid %.64q is a %s key, token says %s", errKeyMismatch, m.KID, m.KTY, alg)
	}
	return key, nil
}

// pemSource is the production public keys read from a PEM file, in file
// order. They have no kid, so tokens that no JWKS claims are tried against
// each key of the right type.
type pemSource struct {
	source *keySource
	keys   []any
}

// loadPEM reads every public key in the file. Anything else in it (a
// private key, a certificate, a curve other than P-256) is an error, because
// a verifier that silently skipped it would reject tokens its operator
// expects to work.
func loadPEM(path string, src *keySource) (*pemSource, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := &pemSource{source: src}
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		var key any
		switch block.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(block.Bytes)
		default:
			return nil, fmt.Errorf("%s: block %d is %q; want PUBLIC KEY or RSA PUBLIC KEY", path, n, block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: block %d: %w", path, n, err)
		}
		if !keyFits(algRS256, key) && !keyFits(algES256, key) {
			return nil, fmt.Errorf("%s: block %d: %T is neither an RSA key of %d bits or more nor a P-256 ECDSA key", path, n, key, minRSABits)
		}
		s.keys = append(s.keys, key)
	}
	if len(s.keys) == 0 {
		return nil, fmt.Errorf("%s: no PEM public keys", path)
	}
	return s, nil
}

// keysFor returns the keys that can verify alg, in file order.
func (s *pemSource) keysFor(alg string) []jwt.VerificationKey {
	var out []jwt.VerificationKey
	for _, k := range s.keys {
		if keyFits(alg, k) {
			out = append(out, k)
		}
	}
	return out
}
