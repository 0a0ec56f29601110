package app_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/cardrail/cardrail/config"
	"github.com/cardrail/cardrail/internal/apptest"
	"github.com/cardrail/cardrail/internal/testdb"
	"github.com/cardrail/cardrail/seal"
)

func newKey(t *testing.T) (b64, id string) {
	t.Helper()
	k := make([]byte, seal.KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(k), seal.KeyID(k)
}

func withKeys(current string, previous ...string) func(*config.Config) {
	return func(c *config.Config) {
		c.EncryptionKey = current
		c.PreviousEncryptionKeys = previous
		c.SandboxJWTSecret = "rotation-test-secret"
	}
}

// TestEncryptionKeyRotation: with the old key among the previous keys, a
// server under a new key still opens what the old one sealed, and seals it
// all anew, card numbers and webhook secrets, so the old key can go.
func TestEncryptionKeyRotation(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		k1, id1 := newKey(t)
		k2, id2 := newKey(t)
		k3, _ := newKey(t)
		ctx := context.Background()
		// stored reads one column of one row, as the database holds it.
		stored := func(env *apptest.Env, query, ref string) string {
			t.Helper()
			var v string
			if err := env.App.Store.Conn().QueryRow(ctx, query, ref).Scan(&v); err != nil {
				t.Fatal(err)
			}
			return v
		}
		cardKey := func(env *apptest.Env, card string) string {
			return stored(env, `SELECT key_id FROM cards WHERE reference = $1`, card)
		}
		endpointSecret := func(env *apptest.Env, ref string) string {
			return stored(env, `SELECT secret FROM webhook_endpoints WHERE reference = $1`, ref)
		}

		first := apptest.New(t, url, withKeys(k1))
		alice := first.Client("alice", "US")
		card := alice.NewCard("usd_visa_virtual")
		pan := alice.Must(200, "GET", "/managed-cards/"+card+"/details/", nil).Str("number")
		endpoint := first.Client("op", "US", "ops").Must(201, "POST", "/ops/webhook-endpoints/",
			map[string]any{"url": "http://127.0.0.1:9/hooks", "events": []string{"*"}}).Str("reference")
		if got := cardKey(first, card); got != id1 || len(pan) < 12 {
			t.Fatalf("card sealed under %q, want %q; number %q", got, id1, pan)
		}

		second := apptest.New(t, url, withKeys(k2, k1))
		if s := endpointSecret(second, endpoint); !strings.HasPrefix(s, "sealed:"+id2+":") {
			t.Fatalf("after a start under the new key the endpoint secret is %.20q…", s)
		}
		if got := second.Client("alice", "US").Must(200, "GET", "/managed-cards/"+card+"/details/", nil).Str("number"); got != pan {
			t.Fatalf("before resealing, revealed %q, want %q", got, pan)
		}
		second.App.Reseal(ctx)
		if got := cardKey(second, card); got != id2 {
			t.Fatalf("after the reseal pass the card is sealed under %q, want %q", got, id2)
		}

		third := apptest.New(t, url, withKeys(k2))
		if got := third.Client("alice", "US").Must(200, "GET", "/managed-cards/"+card+"/details/", nil).Str("number"); got != pan {
			t.Fatalf("with the old key gone, revealed %q, want %q", got, pan)
		}

		// A key lost rather than rotated: nothing opens, and the pass says
		// which key it needs without touching the card.
		lost := apptest.New(t, url, withKeys(k3))
		if r := lost.Client("alice", "US").Do("GET", "/managed-cards/"+card+"/details/", nil); r.Status != 503 || r.Code() != "service_unavailable" || strings.Contains(string(r.Body), pan) {
			t.Fatalf("reveal under an unknown key: %d %s", r.Status, r.Body)
		}
		lost.App.Reseal(ctx)
		if got := cardKey(lost, card); got != id2 || !strings.Contains(lost.Logs.String(), `"key_id":"`+id2+`"`) {
			t.Fatalf("card under %q after a pass that cannot open it; logs:\n%s", got, lost.Logs.String())
		}
	})
}
