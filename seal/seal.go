// Package seal encrypts card numbers at rest with AES-256-GCM.
//
// Every sealed value is stored next to the id of the key that sealed it, so
// that an operator can rotate the encryption key: a new key becomes current
// for new cards while older keys stay in the keyring, read-only, until every
// value sealed with them has been re-sealed or has expired. Callers pass the
// card reference as additional authenticated data, which binds a ciphertext to
// its card: a sealed PAN copied onto another card's row fails to open.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the length in bytes of every key: AES-256 takes 32-byte keys and
// accepting anything shorter would silently weaken the seal.
const KeySize = 32

// ErrUnknownKey is returned (wrapped) by Open when the key id is not in the
// keyring, typically because a retired key was removed before every value
// sealed with it was re-sealed.
var ErrUnknownKey = errors.New("seal: unknown key id")

// ErrOpen is returned (wrapped) by Open when a sealed value fails
// authentication. Tampering, truncation, a wrong key and wrong additional data
// are deliberately indistinguishable, so an attacker learns nothing from which
// one it was.
var ErrOpen = errors.New("seal: message authentication failed")

// Keyring holds the keys that can open sealed values and names the one that
// seals new values. It is immutable once built and therefore safe for
// concurrent use; rotating keys means building a new Keyring.
type Keyring struct {
	current string
	aeads   map[string]cipher.AEAD
}

// NewKeyring builds a keyring from keys indexed by key id, with current naming
// the key used by Seal. Ids are opaque to the keyring, but KeyID gives a
// stable id derived from a key, which is what callers should normally use so
// that the same key always carries the same id across restarts. Every key must
// be exactly KeySize bytes and current must be one of the ids. The key bytes
// are not retained beyond the ciphers built from them.
func NewKeyring(current string, keys map[string][]byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("seal: keyring needs at least one key")
	}
	if _, ok := keys[current]; !ok {
		return nil, fmt.Errorf("seal: current key id %q is not in the keyring", current)
	}
	aeads := make(map[string]cipher.AEAD, len(keys))
	for id, key := range keys {
		if id == "" {
			return nil, errors.New("seal: empty key id")
		}
		if len(key) != KeySize {
			return nil, fmt.Errorf("seal: key %q is %d bytes, want %d", id, len(key), KeySize)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("seal: key %q: %w", id, err)
		}
		// A random 96-bit nonce per message, prefixed to the ciphertext, is
		// safe for far more PANs than a card issuer will ever seal under one
		// key, and needs no nonce counter kept across processes.
		aead, err := cipher.NewGCMWithRandomNonce(block)
		if err != nil {
			return nil, fmt.Errorf("seal: key %q: %w", id, err)
		}
		aeads[id] = aead
	}
	return &Keyring{current: current, aeads: aeads}, nil
}

// ParseKey decodes a key as configuration gives it (CARDRAIL_ENCRYPTION_KEY):
// standard or URL-safe base64, padded or not, of exactly KeySize bytes.
// Surrounding white space is ignored because keys are often pasted from files
// with a trailing newline. Errors never echo the input, which is a secret.
func ParseKey(b64 string) ([]byte, error) {
	s := strings.TrimSpace(b64)
	if s == "" {
		return nil, errors.New("seal: encryption key is empty")
	}
	for _, enc := range []*base64.Encoding{
		base64.StdEncoding, base64.RawStdEncoding,
		base64.URLEncoding, base64.RawURLEncoding,
	} {
		key, err := enc.DecodeString(s)
		if err != nil {
			continue
		}
		if len(key) != KeySize {
			return nil, fmt.Errorf("seal: encryption key decodes to %d bytes, want %d", len(key), KeySize)
		}
		return key, nil
	}
	return nil, fmt.Errorf("seal: encryption key is not valid base64 (want %d random bytes, base64-encoded)", KeySize)
}

// KeyID returns a short, stable identifier for key: the first eight hex digits
// of SHA-256 over a fixed label followed by the key. It lets stored rows name
// their key without revealing anything useful about it, and lets an operator
// check which key a deployment runs with by comparing ids, not keys.
func KeyID(key []byte) string {
	h := sha256.New()
	h.Write([]byte("cardrail-key-id"))
	h.Write(key)
	return hex.EncodeToString(h.Sum(nil))[:8]
}

// Current returns the id of the key that Seal uses.
func (k *Keyring) Current() string { return k.current }

// Seal encrypts plaintext under the current key, authenticating aad (the card
// reference) along with it, and returns the key id to store next to the
// sealed bytes. The sealed bytes are a random 12-byte nonce followed by the
// ciphertext and its 16-byte tag, so equal plaintexts never seal alike.
func (k *Keyring) Seal(plaintext, aad []byte) (keyID string, sealed []byte, err error) {
	aead, ok := k.aeads[k.current]
	if !ok {
		// Only a zero Keyring gets here; NewKeyring guarantees the key.
		return "", nil, fmt.Errorf("seal: %w %q", ErrUnknownKey, k.current)
	}
	return k.current, aead.Seal(nil, nil, plaintext, aad), nil
}

// Open decrypts sealed with the key named keyID and checks it against aad. It
// fails with ErrUnknownKey when the key is not in the keyring and with
// ErrOpen when the value was altered, truncated, or sealed for other aad.
func (k *Keyring) Open(keyID string, sealed, aad []byte) ([]byte, error) {
	aead, ok := k.aeads[keyID]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownKey, keyID)
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, fmt.Errorf("open with key %q: %w", keyID, ErrOpen)
	}
	plaintext, err := aead.Open(nil, nil, sealed, aad)
	if err != nil {
		return nil, fmt.Errorf("open with key %q: %w", keyID, ErrOpen)
	}
	return plaintext, nil
}

// TextPrefix starts the text form of a sealed value, for values kept in a
// text column: "sealed:<key id>:<base64 of nonce, ciphertext and tag>".
const TextPrefix = "sealed:"

// SealText seals plaintext under the current key, as Seal does, and returns
// the text form.
func (k *Keyring) SealText(plaintext, aad []byte) (string, error) {
	id, sealed, err := k.Seal(plaintext, aad)
	if err != nil {
		return "", err
	}
	return TextPrefix + id + ":" + base64.RawStdEncoding.EncodeToString(sealed), nil
}

// OpenText opens a value in text form, as Open does.
func (k *Keyring) OpenText(text string, aad []byte) ([]byte, error) {
	rest, ok := strings.CutPrefix(text, TextPrefix)
	id, enc, found := strings.Cut(rest, ":")
	if !ok || !found {
		return nil, errors.New("seal: not a sealed value's text form")
	}
	sealed, err := base64.RawStdEncoding.DecodeString(enc)
	if err != nil {
		return nil, fmt.Errorf("seal: text form: %w", err)
	}
	return k.Open(id, sealed, aad)
}

// TextKeyID returns the id of the key that sealed a value in text form, or
// "" if text is not one.
func TextKeyID(text string) string {
	rest, ok := strings.CutPrefix(text, TextPrefix)
	id, _, found := strings.Cut(rest, ":")
	if !ok || !found {
		return ""
	}
	return id
}
