package api_test

import (
	"context"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/internal/apptest"
	"github.com/cardrail/cardrail/internal/testdb"
	"github.com/cardrail/cardrail/provider/sandbox"
)

// samples is one scrape of /metrics: each series, written as in the
// exposition (name{label="value",…}, labels sorted by name), to its value.
type samples map[string]float64

func scrape(t *testing.T, c *apptest.Client) samples {
	t.Helper()
	r := c.Must(200, "GET", "//metrics", nil)
	out := samples{}
	for _, line := range strings.Split(string(r.Body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// series names a series: series("m", "b", "2", "a", "1") is m{a="1",b="2"}.
func series(name string, labels ...string) string {
	var pairs []string
	for i := 0; i+1 < len(labels); i += 2 {
		pairs = append(pairs, labels[i]+`="`+labels[i+1]+`"`)
	}
	if len(pairs) == 0 {
		return name
	}
	slices.Sort(pairs)
	return name + "{" + strings.Join(pairs, ",") + "}"
}

// get returns a series' value and fails the test when the scrape lacks it.
func (s samples) get(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	k := series(name, labels...)
	v, ok := s[k]
	if !ok {
		t.Fatalf("the scrape has no %s", k)
	}
	return v
}

// reference matches any object's reference (a prefix, then a ULID).
var reference = regexp.MustCompile(`\b[a-z]+_[0-9a-hjkmnp-tv-z]{26}\b`)

// TestOperationsMetrics: /metrics shows operators the money path and the
// machinery behind it (the authorization engine, the issuing partners,
// webhook delivery, the database pool), and never an unbounded label.
func TestOperationsMetrics(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		alice := env.Client("alice", "US")
		ops := env.Client("op", "US", "ops")
		card := alice.FundedCard(1000)

		t.Run("the authorization engine counts batches and decisions by outcome", func(t *testing.T) {
			before := scrape(t, alice)
			if r := alice.Must(201, "POST", "/managed-cards/"+card+"/authorize/", apptest.Purchase(400)); r.Str("status") != "pending" {
				t.Fatalf("first authorization: %s", r.Body)
			}
			if r := alice.Must(201, "POST", "/managed-cards/"+card+"/authorize/", apptest.Purchase(5000)); r.Str("decline_reason") != "insufficient_funds" {
				t.Fatalf("second authorization: %s", r.Body)
			}
			after := scrape(t, alice)
			rose := func(name string, want float64, labels ...string) {
				t.Helper()
				if d := after.get(t, name, labels...) - before.get(t, name, labels...); d != want {
					t.Errorf("%s rose by %v, want %v", series(name, labels...), d, want)
				}
			}
			// Sequential requests: each is a batch of its own.
			rose("cardrail_authorization_batches_total", 2)
			rose("cardrail_authorizations_decided_total", 2)
			rose("cardrail_authorization_batch_fallbacks_total", 0)
			rose("cardrail_authorizations_approved_total", 1)
			for _, reason := range cardrail.DeclineReasons {
				want := 0.0
				if reason == cardrail.DeclineInsufficientFunds {
					want = 1
				}
				rose("cardrail_authorizations_declined_total", want, "reason", string(reason))
			}
			if after.get(t, "cardrail_authorization_engine_busy_seconds_total") <= before.get(t, "cardrail_authorization_engine_busy_seconds_total") {
				t.Error("the engine's busy time did not grow over two batches")
			}
		})

		t.Run("a failing partner's attempts and its open breaker are visible", func(t *testing.T) {
			alpha := env.App.Sandbox["sandbox_alpha"]
			alpha.SetFailure(sandbox.FailError, 0)
			defer alpha.SetFailure(sandbox.FailNone, 0)
			attempts := func(s samples, p, outcome string) float64 {
				return s.get(t, "cardrail_provider_issue_attempts_total", "provider", p, "outcome", outcome)
			}
			before := scrape(t, alice)
			if got := before.get(t, "cardrail_provider_breaker_state", "provider", "sandbox_alpha", "state", "closed"); got != 1 {
				t.Fatalf("sandbox_alpha closed = %v before it failed", got)
			}
			// The router's breaker opens at the third failure in a row;
			// each card fails over to sandbox_beta.
			for range 3 {
				if p := alice.Must(201, "POST", "/managed-cards/", map[string]any{"program": "usd_visa_virtual"}).Str("provider"); p != "sandbox_beta" {
					t.Fatalf("issued by %q", p)
				}
			}
			after := scrape(t, alice)
			if d := attempts(after, "sandbox_alpha", "failed") - attempts(before, "sandbox_alpha", "failed"); d != 3 {
				t.Errorf("sandbox_alpha failed attempts rose by %v, want 3", d)
			}
			if d := attempts(after, "sandbox_beta", "issued") - attempts(before, "sandbox_beta", "issued"); d != 3 {
				t.Errorf("sandbox_beta issued attempts rose by %v, want 3", d)
			}
			for p, want := range map[string]string{"sandbox_alpha": "open", "sandbox_beta": "closed", "sandbox_naija": "closed"} {
				for _, state := range []string{"closed", "open", "half_open"} {
					v := after.get(t, "cardrail_provider_breaker_state", "provider", p, "state", state)
					if (state == want) != (v == 1) {
						t.Errorf("%s breaker %s = %v, want it %s", p, state, v, want)
					}
				}
			}
		})

		t.Run("a delivery to a closed port is pending and its attempt scheduled a retry", func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			closed := "http://" + l.Addr().String() + "/hooks"
			l.Close()
			before := scrape(t, alice)
			pending := func(s samples, mode string) float64 {
				return s.get(t, "cardrail_webhook_pending_deliveries", "mode", mode)
			}
			if pending(before, "sandbox") != 0 || pending(before, "production") != 0 {
				t.Fatalf("pending before any endpoint: %v, %v", pending(before, "sandbox"), pending(before, "production"))
			}
			ops.Must(201, "POST", "/ops/webhook-endpoints/", map[string]any{"url": closed, "events": []string{cardrail.EventCardCreated}})
			alice.NewCard("usd_visa_virtual")
			if err := env.App.Webhooks.RunOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
			after := scrape(t, alice)
			if pending(after, "sandbox") != 1 || pending(after, "production") != 0 {
				t.Errorf("pending: sandbox %v, production %v; want 1 and 0", pending(after, "sandbox"), pending(after, "production"))
			}
			for _, o := range []string{"delivered", "retry_scheduled", "failed", "unrecorded"} {
				want := 0.0
				if o == "retry_scheduled" {
					want = 1
				}
				if d := after.get(t, "cardrail_webhook_attempts_total", "outcome", o) - before.get(t, "cardrail_webhook_attempts_total", "outcome", o); d != want {
					t.Errorf("webhook attempts %s rose by %v, want %v", o, d, want)
				}
			}
			if after.get(t, "cardrail_webhook_pending_count_errors_total") != 0 {
				t.Error("a count error was recorded while the database answered")
			}
		})

		t.Run("a count that fails leaves the backlog out of the scrape and counts the error", func(t *testing.T) {
			ctx := context.Background()
			rename := func(from, to string) {
				t.Helper()
				if _, err := env.App.Store.Conn().Exec(ctx, "ALTER TABLE "+from+" RENAME TO "+to); err != nil {
					t.Fatal(err)
				}
			}
			rename("webhook_deliveries", "webhook_deliveries_away")
			s := scrape(t, alice)
			rename("webhook_deliveries_away", "webhook_deliveries")
			for _, mode := range []string{"sandbox", "production"} {
				if v, ok := s[series("cardrail_webhook_pending_deliveries", "mode", mode)]; ok {
					t.Errorf("the scrape reports %v pending %s deliveries it could not count", v, mode)
				}
			}
			if got := s.get(t, "cardrail_webhook_pending_count_errors_total"); got != 2 {
				t.Errorf("count errors = %v, want 2 (one per mode)", got)
			}
			s.get(t, "cardrail_authorizations_approved_total") // the rest of the scrape is intact
			if got := scrape(t, alice).get(t, "cardrail_webhook_pending_deliveries", "mode", "sandbox"); got != 1 {
				t.Errorf("pending once the table is back: %v, want 1", got)
			}
		})

		t.Run("the database pool", func(t *testing.T) {
			before := scrape(t, alice)
			alice.Must(200, "GET", "/managed-cards/"+card+"/", nil)
			after := scrape(t, alice)
			switch env.App.Store.Dialect() {
			case "sqlite":
				// One writer connection, a pool of four readers.
				if w, r := after.get(t, "go_sql_max_open_connections", "db_name", "writer"), after.get(t, "go_sql_max_open_connections", "db_name", "reader"); w != 1 || r != 4 {
					t.Errorf("max open connections: writer %v, reader %v; want 1 and 4", w, r)
				}
				after.get(t, "go_sql_in_use_connections", "db_name", "writer")
				after.get(t, "go_sql_wait_duration_seconds_total", "db_name", "reader")
			default:
				if got := after.get(t, "cardrail_db_pool_max_connections"); got < 16 {
					t.Errorf("max connections %v, want at least 16", got)
				}
				if total, idle := after.get(t, "cardrail_db_pool_total_connections"), after.get(t, "cardrail_db_pool_idle_connections"); total < 1 || idle > total {
					t.Errorf("total %v, idle %v", total, idle)
				}
				if after.get(t, "cardrail_db_pool_acquires_total") <= before.get(t, "cardrail_db_pool_acquires_total") {
					t.Error("a request's reads took no connection from the pool")
				}
				after.get(t, "cardrail_db_pool_acquire_wait_seconds_total")
			}
		})

		t.Run("no label carries a reference, an owner or an address", func(t *testing.T) {
			body := string(alice.Must(200, "GET", "//metrics", nil).Body)
			for _, s := range []string{card, "alice", `"op"`, "127.0.0.1", "/hooks"} {
				if strings.Contains(body, s) {
					t.Errorf("the metrics name %q:\n%s", s, grepLines(body, s))
				}
			}
			if ref := reference.FindString(body); ref != "" {
				t.Errorf("the metrics name the reference %s:\n%s", ref, grepLines(body, ref))
			}
		})
	})
}
