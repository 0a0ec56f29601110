package webhook

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/seal"
)

// Endpoint secrets are stored sealed with the keyring that seals PANs:
// someone holding a copy of the database can read the endpoints but cannot
// sign deliveries that the operator's receivers would accept. The stored
// form is the keyring's text form (seal.TextPrefix), and the endpoint's
// reference is bound in as associated data, so a sealed secret copied onto
// another endpoint does not open.
func secretAAD(endpoint string) []byte { return []byte("webhook-endpoint:" + endpoint) }

var errNoKeys = errors.New("webhook: no keyring for endpoint secrets")

// sealSecret returns the stored form of endpoint's secret.
func (w *Worker) sealSecret(endpoint, secret string) (string, error) {
	if w.opts.Keys == nil {
		return "", errNoKeys
	}
	return w.opts.Keys.SealText([]byte(secret), secretAAD(endpoint))
}

// openSecret returns endpoint's secret from its stored form. A secret
// stored before sealing existed ("whsec_…") is returned as it is until
// SealStoredSecrets seals it.
func (w *Worker) openSecret(endpoint, stored string) (string, error) {
	if strings.HasPrefix(stored, SecretPrefix) {
		return stored, nil
	}
	if w.opts.Keys == nil {
		return "", errNoKeys
	}
	secret, err := w.opts.Keys.OpenText(stored, secretAAD(endpoint))
	if err != nil {
		return "", fmt.Errorf("endpoint secret: %w", err)
	}
	return string(secret), nil
}

// SealStoredSecrets seals under the current key every endpoint secret
// that is not: one stored as it was shown, as databases written before
// secrets were sealed hold them, or one sealed under a key since rotated
// out (still configured in CARDRAIL_PREVIOUS_ENCRYPTION_KEYS). It returns
// how many it sealed; one sealed under a key the keyring lacks is left as
// it is and logged. The app runs it at start; it is safe to run from
// several processes at once.
func (w *Worker) SealStoredSecrets(ctx context.Context) (int, error) {
	if w.opts.Keys == nil {
		return 0, errNoKeys
	}
	sealed := 0
	unopened := map[string]int{}
	err := w.store.WebhookTx(ctx, func(tx Tx) error {
		sealed = 0
		clear(unopened)
		stale, err := tx.WebhookSecretsOutside(ctx, seal.TextPrefix+w.opts.Keys.Current()+":")
		if err != nil {
			return err
		}
		for _, p := range stale {
			secret, err := w.openSecret(p.Endpoint, p.Secret)
			if errors.Is(err, seal.ErrUnknownKey) {
				unopened[seal.TextKeyID(p.Secret)]++
				continue
			}
			if err != nil {
				return err
			}
			next, err := w.sealSecret(p.Endpoint, secret)
			if err != nil {
				return err
			}
			done, err := tx.ReplaceWebhookSecret(ctx, p.Endpoint, p.Secret, next)
			if err != nil {
				return err
			}
			if done {
				sealed++
			}
		}
		return nil
	})
	for id, n := range unopened {
		w.opts.Log.Warn("webhook endpoint secrets sealed under a key this server does not have; their deliveries fail until it is configured in CARDRAIL_PREVIOUS_ENCRYPTION_KEYS",
			"key_id", id, "count", n)
	}
	return sealed, cardrail.WithOp("webhooks.SealStoredSecrets", err)
}
