package api

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
)

// A response that shows a secret once (a webhook endpoint's signing
// secret) is kept for idempotent replay like any other, but sealed with the
// keyring that seals PANs and endpoint secrets: a copy of the database must
// not hand out what the endpoint's own row keeps sealed. The stored form is
// "sealed:<key id>:<base64 of nonce, ciphertext and tag>", with the
// caller's scope and key bound in, so a sealed body copied onto another
// key does not open. Every other stored body is JSON and starts with "{".
const sealedBodyPrefix = "sealed:"

// shownOnce wraps a handler's result whose rendering holds a secret.
type shownOnce struct{ v any }

func storedBodyAAD(scope, key string) []byte {
	return []byte("idempotent-response:" + scope + "\x00" + key)
}

var errNoKeyring = errors.New("api: no keyring to seal a response that holds a secret")

// sealBody returns the stored form of a response body that holds a secret.
func (s *Server) sealBody(scope, key string, body []byte) ([]byte, error) {
	if s.cfg.Keys == nil {
		return nil, errNoKeyring
	}
	id, box, err := s.cfg.Keys.Seal(body, storedBodyAAD(scope, key))
	if err != nil {
		return nil, err
	}
	return []byte(sealedBodyPrefix + id + ":" + base64.RawStdEncoding.EncodeToString(box)), nil
}

// openBody returns a stored body as it was sent.
func (s *Server) openBody(scope, key string, stored []byte) ([]byte, error) {
	rest, sealed := bytes.CutPrefix(stored, []byte(sealedBodyPrefix))
	if !sealed {
		return stored, nil
	}
	id, enc, ok := bytes.Cut(rest, []byte(":"))
	if !ok || s.cfg.Keys == nil {
		return nil, errors.New("api: a sealed stored response cannot be opened")
	}
	box, err := base64.RawStdEncoding.DecodeString(string(enc))
	if err != nil {
		return nil, fmt.Errorf("api: sealed stored response: %w", err)
	}
	return s.cfg.Keys.Open(string(id), box, storedBodyAAD(scope, key))
}
