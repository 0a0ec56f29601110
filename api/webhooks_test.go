package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/config"
	"github.com/cardrail/cardrail/internal/apptest"
	"github.com/cardrail/cardrail/internal/testdb"
	"github.com/cardrail/cardrail/provider/sandbox"
	"github.com/cardrail/cardrail/webhook"
)

var secretFormat = regexp.MustCompile(`^whsec_[A-Za-z0-9+/]{43}=$`)

func TestWebhookEndpoints(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		ops := env.Client("op", "US", "ops")
		created := ops.Do("POST", "/ops/webhook-endpoints/", map[string]any{
			"url": "http://127.0.0.1:9/hooks", "events": []string{"card.created", "card.frozen", "card.created"}})
		ref := created.Str("reference")

		t.Run("create answers 201 with the endpoint and its secret", func(t *testing.T) {
			m := created.JSON()
			if created.Status != 201 || !cardrail.HasPrefix(ref, cardrail.PrefixWebhook) || m["object"] != "webhook_endpoint" ||
				m["url"] != "http://127.0.0.1:9/hooks" || m["livemode"] != false || m["created_at"] == nil {
				t.Fatalf("%d %s", created.Status, created.Body)
			}
			if ev := m["events"].([]any); len(ev) != 2 || ev[0] != "card.created" || ev[1] != "card.frozen" {
				t.Fatalf("events %v", ev)
			}
			s := created.Str("secret")
			if key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_")); !secretFormat.MatchString(s) || err != nil || len(key) != 32 {
				t.Fatalf("secret %q", s)
			}
		})
		t.Run("the secret is never shown again", func(t *testing.T) {
			list := ops.Must(200, "GET", "/ops/webhook-endpoints/", nil)
			data := list.JSON()["data"].([]any)
			if len(data) != 1 || data[0].(map[string]any)["reference"] != ref {
				t.Fatalf("list %s", list.Body)
			}
			if strings.Contains(string(list.Body), "secret") || strings.Contains(string(list.Body), "whsec_") {
				t.Fatalf("list shows the secret: %s", list.Body)
			}
		})
		t.Run("creating is audited with the request id and without the secret", func(t *testing.T) {
			a := auditOf(t, env, ref, "webhook_endpoint.created")
			if a.actor != "op" || a.requestID != created.Header.Get("X-Request-Id") || !strings.Contains(a.after, ref) ||
				strings.Contains(a.after, "whsec_") || strings.Contains(a.after, "secret") {
				t.Fatalf("audit %+v", a)
			}
		})
		t.Run("delete answers the deleted endpoint, then 404", func(t *testing.T) {
			r := ops.Must(200, "DELETE", "/ops/webhook-endpoints/"+ref+"/", nil)
			if r.Str("reference") != ref || strings.Contains(string(r.Body), "whsec_") {
				t.Fatalf("delete %s", r.Body)
			}
			if r := ops.Do("DELETE", "/ops/webhook-endpoints/"+ref+"/", nil); r.Status != 404 || r.Code() != "not_found" {
				t.Fatalf("second delete: %d %s", r.Status, r.Body)
			}
			if data := ops.Must(200, "GET", "/ops/webhook-endpoints/", nil).JSON()["data"].([]any); len(data) != 0 {
				t.Fatalf("still listed: %v", data)
			}
			if a := auditOf(t, env, ref, "webhook_endpoint.deleted"); a.actor != "op" || strings.Contains(a.before, "whsec_") {
				t.Fatalf("audit %+v", a)
			}
			ops.Must(404, "DELETE", "/ops/webhook-endpoints/card_x/", nil)
		})
		t.Run("a replayable creation keeps its secret sealed at rest", func(t *testing.T) {
			body := map[string]any{"url": "http://127.0.0.1:9/sealed", "events": []string{"*"}}
			first := ops.Must(201, "POST", "/ops/webhook-endpoints/", body, "Idempotency-Key", "we-sealed")
			secret := first.Str("secret")
			var stored []byte
			if err := env.App.Store.Conn().QueryRow(context.Background(),
				`SELECT response_body FROM idempotency_keys WHERE key = $1`, "we-sealed").Scan(&stored); err != nil {
				t.Fatal(err)
			}
			if !secretFormat.MatchString(secret) || bytes.Contains(stored, []byte(secret)) || !bytes.HasPrefix(stored, []byte("sealed:")) {
				t.Fatalf("stored response %q for secret %q", stored, secret)
			}
			again := ops.Must(201, "POST", "/ops/webhook-endpoints/", body, "Idempotency-Key", "we-sealed")
			if !bytes.Equal(again.Body, first.Body) || again.Header.Get("Idempotent-Replayed") != "true" {
				t.Fatalf("replay %s, want %s", again.Body, first.Body)
			}
			// The sealed copy is bound to its key: moved onto another, it
			// does not open, and the replay fails rather than show it.
			if _, err := env.App.Store.Conn().Exec(context.Background(),
				`UPDATE idempotency_keys SET key = $1 WHERE key = $2`, "we-moved", "we-sealed"); err != nil {
				t.Fatal(err)
			}
			if r := ops.Do("POST", "/ops/webhook-endpoints/", body, "Idempotency-Key", "we-moved"); r.Status != 500 || strings.Contains(string(r.Body), secret) {
				t.Fatalf("moved key: %d %s", r.Status, r.Body)
			}
			ops.Must(200, "DELETE", "/ops/webhook-endpoints/"+first.Str("reference")+"/", nil)
		})

		bad := []struct {
			name string
			body any
			code string
		}{
			{"an unknown event type", map[string]any{"url": "http://127.0.0.1/h", "events": []string{"card.created", "card.exploded"}}, "unknown_event_type"},
			{"no events", map[string]any{"url": "http://127.0.0.1/h", "events": []string{}}, "validation_failed"},
			{"a wildcard among types", map[string]any{"url": "http://127.0.0.1/h", "events": []string{"*", "card.created"}}, "validation_failed"},
			{"no url", map[string]any{"events": []string{"*"}}, "validation_failed"},
			{"an unknown field", map[string]any{"url": "http://127.0.0.1/h", "events": []string{"*"}, "secret": "whsec_x"}, "validation_failed"},
			{"an ftp URL", map[string]any{"url": "ftp://example.com/hooks", "events": []string{"*"}}, "webhook_url_refused"},
			{"a javascript URL", map[string]any{"url": "javascript:alert(1)", "events": []string{"*"}}, "webhook_url_refused"},
			{"a relative URL", map[string]any{"url": "/hooks", "events": []string{"*"}}, "webhook_url_refused"},
			{"a URL with credentials", map[string]any{"url": "http://user:pw@127.0.0.1/hooks", "events": []string{"*"}}, "webhook_url_refused"},
			{"a zoned loopback address", map[string]any{"url": "http://[::1%25lo]:9/hooks", "events": []string{"*"}}, "webhook_url_refused"},
			{"a zoned private address", map[string]any{"url": "https://[fd00::2%25eth0]/hooks", "events": []string{"*"}}, "webhook_url_refused"},
			{"the metadata address inside IPv6", map[string]any{"url": "https://[::a9fe:a9fe]/hooks", "events": []string{"*"}}, "webhook_url_refused"},
			{"a port past 65535", map[string]any{"url": "http://[::1]:99999/hooks", "events": []string{"*"}}, "webhook_url_refused"},
			{"port 0", map[string]any{"url": "http://127.0.0.1:0/hooks", "events": []string{"*"}}, "webhook_url_refused"},
			{"the metadata address", map[string]any{"url": "http://169.254.169.254/latest/meta-data/", "events": []string{"*"}}, "webhook_url_refused"},
			{"a link-local IPv6 address", map[string]any{"url": "http://[fe80::1]/hooks", "events": []string{"*"}}, "webhook_url_refused"},
		}
		for _, tc := range bad {
			t.Run("refuses "+tc.name, func(t *testing.T) {
				r := ops.Do("POST", "/ops/webhook-endpoints/", tc.body)
				if r.Status != 422 || r.Code() != tc.code {
					t.Fatalf("%d %s, want 422 %s", r.Status, r.Body, tc.code)
				}
			})
		}
		t.Run("sandbox endpoints may be plain http on loopback only", func(t *testing.T) {
			for _, u := range []string{"http://localhost:8081/hooks", "http://[::1]:9/hooks", "http://127.0.0.2/hooks", "https://93.184.216.34/hooks"} {
				ops.Must(201, "POST", "/ops/webhook-endpoints/", map[string]any{"url": u, "events": []string{"*"}})
			}
			for _, u := range []string{"http://10.1.2.3/hooks", "https://192.168.1.20/hooks", "http://93.184.216.34/hooks", "http://169.254.169.254/"} {
				if r := ops.Do("POST", "/ops/webhook-endpoints/", map[string]any{"url": u, "events": []string{"*"}}); r.Status != 422 || r.Code() != "webhook_url_refused" {
					t.Errorf("%s: %d %s, want webhook_url_refused", u, r.Status, r.Body)
				}
			}
		})
		t.Run("cardholder tokens are refused", func(t *testing.T) {
			alice := env.Client("alice", "US")
			for _, rq := range [][2]string{{"POST", "/ops/webhook-endpoints/"}, {"GET", "/ops/webhook-endpoints/"},
				{"DELETE", "/ops/webhook-endpoints/" + ref + "/"}, {"GET", "/ops/webhook-deliveries/"},
				{"POST", "/ops/webhook-deliveries/" + cardrail.NewReference(cardrail.PrefixDelivery) + "/replay/"}} {
				r := alice.Do(rq[0], rq[1], map[string]any{"url": "http://127.0.0.1/h", "events": []string{"*"}})
				if r.Status != 403 || r.Code() != "forbidden" {
					t.Fatalf("%s %s: %d %s", rq[0], rq[1], r.Status, r.Body)
				}
			}
		})
		t.Run("delivery filters are checked", func(t *testing.T) {
			for _, q := range []string{"?status=lost", "?endpoint=card_x", "?limit=0", "?cursor=we_x"} {
				if r := ops.Do("GET", "/ops/webhook-deliveries/"+q, nil); r.Status != 422 {
					t.Fatalf("%s: %d %s", q, r.Status, r.Body)
				}
			}
			ops.Must(404, "POST", "/ops/webhook-deliveries/"+cardrail.NewReference(cardrail.PrefixDelivery)+"/replay/", nil)
			ops.Must(404, "POST", "/ops/webhook-deliveries/nope/replay/", nil)
		})
	})
}

type auditRow struct{ actor, before, after, requestID string }

func auditOf(t *testing.T, env *apptest.Env, target, action string) auditRow {
	t.Helper()
	var a auditRow
	var before, after *string
	err := env.App.Store.Conn().QueryRow(context.Background(),
		`SELECT actor, before, after, request_id FROM audit_log WHERE target = $1 AND action = $2`, target, action).
		Scan(&a.actor, &before, &after, &a.requestID)
	if err != nil {
		t.Fatalf("audit %s %s: %v", action, target, err)
	}
	if before != nil {
		a.before = *before
	}
	if after != nil {
		a.after = *after
	}
	return a
}

// liveEnv starts an app with production tokens (RSA) and a production
// program in NG routed to a production partner, optionally letting
// production webhooks reach private addresses; mint signs production tokens.
func liveEnv(t *testing.T, url string, allowPrivate bool) (*apptest.Env, func(sub, kyc string, roles ...string) string) {
	env, sign := apptest.NewProduction(t, url, func(c *config.Config) { c.WebhookAllowPrivate = allowPrivate })
	env.App.Registry.Register(prodProvider{sandbox.New(sandbox.Config{Name: "partner_ng", Countries: []string{"NG"}, Currencies: []string{"NGN"}, Secret: []byte("x")})})
	ctx := context.Background()
	if err := env.App.Store.Tx(ctx, func(tx cardrail.Tx) error {
		return tx.SaveProgram(ctx, &cardrail.Program{Code: "ngn_live", Name: "NGN Live", Brand: "verve", CardType: "virtual",
			Currency: "NGN", Markets: []string{"NG"}, Status: cardrail.ProgramEnabled, Providers: []string{"partner_ng"}, Livemode: true})
	}); err != nil {
		t.Fatal(err)
	}
	mint := func(sub, kyc string, roles ...string) string {
		return sign(jwt.MapClaims{"sub": sub, "country": "NG", "kyc": kyc, "roles": roles})
	}
	return env, mint
}

func TestProductionWebhookEndpoints(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env, mint := liveEnv(t, url, false)
		liveOps := env.WithToken(mint("op", "", "ops"))
		for _, u := range []string{
			"http://example.com/hooks",
			"https://10.0.0.1/hooks",
			"https://127.0.0.1/hooks",
			"https://169.254.169.254/latest/meta-data/",
			"https://localhost/hooks",
			"https://[::1]/hooks",
			"https://100.64.0.1/hooks",
			"https://192.168.0.10/hooks",
			"https://172.16.0.1/hooks",
			"https://[fd00::1]/hooks",
			"https://0.0.0.0/hooks",
			"https://[::ffff:127.0.0.1]/hooks",
		} {
			t.Run("refuses "+u, func(t *testing.T) {
				r := liveOps.Do("POST", "/ops/webhook-endpoints/", map[string]any{"url": u, "events": []string{"*"}})
				if r.Status != 422 || r.Code() != "webhook_url_refused" || len(r.JSON()["errors"].([]any)) != 1 {
					t.Fatalf("%d %s", r.Status, r.Body)
				}
			})
		}
		t.Run("an operator's token is needed in production too", func(t *testing.T) {
			r := env.WithToken(mint("alice", "verified")).Do("POST", "/ops/webhook-endpoints/", map[string]any{"url": "https://93.184.216.34/", "events": []string{"*"}})
			if r.Status != 403 {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
		})
	})
}

// recorder is a receiver that checks signatures with webhook.Verify and
// records the livemode of each event it accepts.
type recorder struct {
	mu       sync.Mutex
	secret   string
	livemode []bool
	bad      int
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if webhook.Verify(rc.secret, r.Header, body, time.Now()) != nil {
		rc.bad++
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	rc.livemode = append(rc.livemode, strings.Contains(string(body), `"livemode":true`))
	w.WriteHeader(http.StatusOK)
}

func TestWebhooksArePerMode(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env, mint := liveEnv(t, url, true)
		live, test := &recorder{}, &recorder{}
		liveSrv, testSrv := httptest.NewTLSServer(live), httptest.NewServer(test)
		t.Cleanup(liveSrv.Close)
		t.Cleanup(testSrv.Close)
		liveOps, testOps := env.WithToken(mint("op", "", "ops")), env.Client("op", "US", "ops")

		r := liveOps.Must(201, "POST", "/ops/webhook-endpoints/", map[string]any{"url": liveSrv.URL + "/hooks", "events": []string{"*"}})
		live.secret = r.Str("secret")
		liveRef := r.Str("reference")
		t.Run("production may reach private addresses when allowed, over https", func(t *testing.T) {
			if r.JSON()["livemode"] != true {
				t.Fatalf("%s", r.Body)
			}
			if r := liveOps.Do("POST", "/ops/webhook-endpoints/", map[string]any{"url": testSrv.URL, "events": []string{"*"}}); r.Status != 422 {
				t.Fatalf("plain http in production: %d %s", r.Status, r.Body)
			}
		})
		test.secret = testOps.Must(201, "POST", "/ops/webhook-endpoints/", map[string]any{"url": testSrv.URL + "/hooks", "events": []string{"*"}}).Str("secret")

		t.Run("each mode lists only its endpoints", func(t *testing.T) {
			if l := liveOps.Must(200, "GET", "/ops/webhook-endpoints/", nil).JSON()["data"].([]any); len(l) != 1 || l[0].(map[string]any)["reference"] != liveRef {
				t.Fatalf("production list %v", l)
			}
			if l := testOps.Must(200, "GET", "/ops/webhook-endpoints/", nil).JSON()["data"].([]any); len(l) != 1 || l[0].(map[string]any)["reference"] == liveRef {
				t.Fatalf("sandbox list %v", l)
			}
			testOps.Must(404, "DELETE", "/ops/webhook-endpoints/"+liveRef+"/", nil)
		})

		env.WithToken(mint("alice", "verified")).Must(201, "POST", "/managed-cards/", map[string]any{"program": "ngn_live"})
		env.Client("bob", "US").NewCard("usd_visa_virtual")
		w := webhook.New(env.App.Store, webhook.Options{Client: liveSrv.Client(), AllowPrivate: true, Keys: env.App.Keys,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err := w.RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Run("each endpoint receives only its mode's events", func(t *testing.T) {
			live.mu.Lock()
			defer live.mu.Unlock()
			test.mu.Lock()
			defer test.mu.Unlock()
			if len(live.livemode) == 0 || len(test.livemode) == 0 || live.bad+test.bad != 0 {
				t.Fatalf("live %v, sandbox %v, bad signatures %d", live.livemode, test.livemode, live.bad+test.bad)
			}
			for _, l := range live.livemode {
				if !l {
					t.Fatal("a sandbox event reached the production endpoint")
				}
			}
			for _, l := range test.livemode {
				if l {
					t.Fatal("a production event reached the sandbox endpoint")
				}
			}
		})
		t.Run("each mode lists only its deliveries", func(t *testing.T) {
			for _, c := range []*apptest.Client{liveOps, testOps} {
				var l struct{ Data []webhook.Delivery }
				if err := c.Must(200, "GET", "/ops/webhook-deliveries/", nil).Decode(&l); err != nil {
					t.Fatal(err)
				}
				for _, d := range l.Data {
					if d.Livemode != (c == liveOps) || d.Status != webhook.DeliveryDelivered {
						t.Fatalf("delivery %+v listed to the wrong mode or not delivered", d)
					}
				}
			}
		})
	})
}
