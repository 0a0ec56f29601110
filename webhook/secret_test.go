package webhook_test

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/cardrail/cardrail/internal/apptest"
	"github.com/cardrail/cardrail/internal/testdb"
)

func storedSecret(t *testing.T, env *apptest.Env, endpoint string) string {
	t.Helper()
	var s string
	if err := env.App.Store.Conn().QueryRow(context.Background(),
		`SELECT secret FROM webhook_endpoints WHERE reference = $1`, endpoint).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func setStoredSecret(t *testing.T, env *apptest.Env, endpoint, secret string) {
	t.Helper()
	if _, err := env.App.Store.Conn().Exec(context.Background(),
		`UPDATE webhook_endpoints SET secret = $2 WHERE reference = $1`, endpoint, secret); err != nil {
		t.Fatal(err)
	}
}

func TestEndpointSecretsAreSealedAtRest(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		c := newClock()
		r, other := newReceiver(t, c), newReceiver(t, c)
		ref := register(t, env, r, "*")
		otherRef := register(t, env, other, "*")

		t.Run("the database holds the secret sealed, not as shown", func(t *testing.T) {
			shown := r.secret
			stored := storedSecret(t, env, ref)
			if !strings.HasPrefix(stored, "sealed:") {
				t.Fatalf("stored secret %.12q… is not sealed", stored)
			}
			key := strings.TrimPrefix(shown, "whsec_")
			if strings.Contains(stored, key) || strings.Contains(stored, shown) {
				t.Fatal("the stored form contains the secret")
			}
			raw, _ := base64.StdEncoding.DecodeString(key)
			if len(raw) == 0 || strings.Contains(stored, base64.RawStdEncoding.EncodeToString(raw)) {
				t.Fatal("the stored form contains the secret's bytes")
			}
		})
		t.Run("deliveries are signed with the secret that was shown", func(t *testing.T) {
			activity(t, env, "alice")
			runOnce(t, newWorker(env, c))
			if len(r.got()) == 0 || len(other.got()) == 0 {
				t.Fatalf("received %d and %d events", len(r.got()), len(other.got()))
			}
		})
		t.Run("a sealed secret copied onto another endpoint does not open", func(t *testing.T) {
			setStoredSecret(t, env, ref, storedSecret(t, env, otherRef))
			before, beforeOther := len(r.got()), len(other.got())
			activity(t, env, "bob")
			runOnce(t, newWorker(env, c))
			if len(r.got()) != before {
				t.Fatalf("the endpoint with a foreign secret received %d events", len(r.got())-before)
			}
			if len(other.got()) == beforeOther {
				t.Fatal("the other endpoint stopped receiving")
			}
			var failed int
			if err := env.App.Store.Conn().QueryRow(context.Background(), `SELECT COUNT(*) FROM webhook_attempts a
				JOIN webhook_deliveries d ON d.reference = a.delivery
				WHERE d.endpoint = $1 AND a.error LIKE '%endpoint secret%'`, ref).Scan(&failed); err != nil {
				t.Fatal(err)
			}
			if failed == 0 {
				t.Fatal("no failed attempt names the secret that did not open")
			}
		})
		t.Run("a secret stored before sealing is sealed at start and still signs", func(t *testing.T) {
			legacy := "whsec_" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))
			setStoredSecret(t, env, ref, legacy)
			r.setSecret(legacy)
			restarted := apptest.New(t, url)
			if stored := storedSecret(t, restarted, ref); !strings.HasPrefix(stored, "sealed:") || strings.Contains(stored, legacy) {
				t.Fatalf("after start the secret is stored as %.12q…", stored)
			}
			before := len(r.got())
			activity(t, restarted, "carol")
			runOnce(t, newWorker(restarted, c))
			if len(r.got()) == before {
				t.Fatal("no delivery after the secret was sealed")
			}
		})
	})
}
