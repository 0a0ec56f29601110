package api

import (
	"bytes"
	"errors"

	"github.com/cardrail/cardrail/seal"
)

// A response that shows a secret once (a webhook endpoint's signing
// secret) is kept for idempotent replay like any other, but sealed with the
// keyring that seals PANs and endpoint secrets: a copy of the database must
// not hand out what the endpoint's own row keeps sealed. The stored form is
// the keyring's text form (seal.TextPrefix), with the caller's scope and
// key bound in, so a sealed body copied onto another key does not open.
// Every other stored body is JSON and starts with "{". shownOnce wraps a
// handler's result whose rendering holds such a secret.
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
	text, err := s.cfg.Keys.SealText(body, storedBodyAAD(scope, key))
	return []byte(text), err
}

// openBody returns a stored body as it was sent.
func (s *Server) openBody(scope, key string, stored []byte) ([]byte, error) {
	if !bytes.HasPrefix(stored, []byte(seal.TextPrefix)) {
		return stored, nil
	}
	if s.cfg.Keys == nil {
		return nil, errNoKeyring
	}
	return s.cfg.Keys.OpenText(string(stored), storedBodyAAD(scope, key))
}
