package apptest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cardrail/cardrail/config"
)

// NewProduction starts the application with production switched on:
// production tokens verified by a fresh RSA key's PEM file, and a
// production encryption key. mint signs a production token with the given
// claims (exp is added).
func NewProduction(t testing.TB, url string, opts ...func(*config.Config)) (*Env, func(claims jwt.MapClaims) string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemFile := filepath.Join(t.TempDir(), "prod.pem")
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	encKey := make([]byte, 32)
	if _, err := rand.Read(encKey); err != nil {
		t.Fatal(err)
	}
	production := func(c *config.Config) {
		c.ProductionPublicKeyFile = pemFile
		c.EncryptionKey = base64.StdEncoding.EncodeToString(encKey)
	}
	env := New(t, url, append([]func(*config.Config){production}, opts...)...)
	mint := func(claims jwt.MapClaims) string {
		t.Helper()
		claims["exp"] = time.Now().Add(time.Hour).Unix()
		tok, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	return env, mint
}
