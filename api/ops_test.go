package api_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cardrail/cardrail/internal/apptest"
	"github.com/cardrail/cardrail/internal/testdb"
	"github.com/cardrail/cardrail/provider/sandbox"
)

// lastAudit returns the newest audit record.
func lastAudit(t *testing.T, ops *apptest.Client) map[string]any {
	t.Helper()
	data := ops.Must(200, "GET", "/ops/audit-log/?limit=1", nil).JSON()["data"].([]any)
	if len(data) == 0 {
		t.Fatalf("no audit records")
	}
	return data[0].(map[string]any)
}

func TestOperatorActionsAreAudited(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		ops := env.Client("op-jane", "US", "ops")
		alice := env.Client("alice", "US")
		card := alice.FundedCard(5000)
		auth := alice.Must(201, "POST", "/managed-cards/"+card+"/authorize/", apptest.Purchase(1000)).Str("reference")

		actions := []struct {
			name   string
			path   string
			body   any
			action string
			target string
			check  func(t *testing.T, r *apptest.Response)
		}{
			{"block a card", "/ops/managed-cards/" + card + "/block/", nil, "card.block", card, func(t *testing.T, r *apptest.Response) {
				if r.Str("status") != "blocked" || r.Str("owner") != "alice" {
					t.Fatalf("%s", r.Body)
				}
				if d := alice.Must(201, "POST", "/managed-cards/"+card+"/authorize/", apptest.Purchase(10)); d.Str("decline_reason") != "card_not_active" {
					t.Fatalf("blocked card approved: %s", d.Body)
				}
				if f := alice.Do("POST", "/managed-cards/"+card+"/unfreeze/", nil); f.Code() != "invalid_card_state" {
					t.Fatalf("owner unblocked: %s", f.Body)
				}
			}},
			{"unblock it", "/ops/managed-cards/" + card + "/unblock/", nil, "card.unblock", card, func(t *testing.T, r *apptest.Response) {
				if r.Str("status") != "active" {
					t.Fatalf("%s", r.Body)
				}
			}},
			{"settle as the network", "/ops/authorizations/" + auth + "/settle/", map[string]any{"amount": 800}, "authorization.settle", auth, func(t *testing.T, r *apptest.Response) {
				if r.Str("status") != "settled" || r.Int("settled_amount") != 800 {
					t.Fatalf("%s", r.Body)
				}
			}},
			{"refund as the network", "/ops/authorizations/" + auth + "/refund/", map[string]any{"amount": 300}, "authorization.refund", auth, func(t *testing.T, r *apptest.Response) {
				if r.Int("refunded_amount") != 300 {
					t.Fatalf("%s", r.Body)
				}
			}},
			{"verify a cardholder", "/ops/cardholders/bob/verification/", map[string]any{"kyc": "verified"}, "cardholder.verification", "bob", func(t *testing.T, r *apptest.Response) {
				if r.Str("kyc") != "verified" {
					t.Fatalf("%s", r.Body)
				}
			}},
			{"credit a wallet", "/ops/wallets/credit/", map[string]any{"sub": "bob", "amount": 2500, "currency": "USD"}, "wallet.credited", "", func(t *testing.T, r *apptest.Response) {
				if r.Str("owner") != "bob" || r.JSON()["balance"].(map[string]any)["available"].(float64) != 2500 {
					t.Fatalf("%s", r.Body)
				}
				// Nothing an operator reads maps a wallet back to its user,
				// so the record names whose wallet the money went to.
				rec := lastAudit(t, ops)
				before, _ := rec["before"].(map[string]any)
				after, _ := rec["after"].(map[string]any)
				if rec["target"] != r.Str("reference") || before["owner"] != "bob" || after["owner"] != "bob" {
					t.Fatalf("audit record %v", rec)
				}
			}},
			{"disable a provider", "/ops/providers/sandbox_alpha/disable/", nil, "provider.disabled", "sandbox_alpha", func(t *testing.T, r *apptest.Response) {
				if p := alice.Must(201, "POST", "/managed-cards/", map[string]any{"program": "usd_visa_virtual"}).Str("provider"); p != "sandbox_beta" {
					t.Fatalf("routed to %q", p)
				}
			}},
			{"enable it again", "/ops/providers/sandbox_alpha/enable/", nil, "provider.enabled", "sandbox_alpha", nil},
			{"reroute a program", "/ops/programs/usd_visa_virtual/providers/", map[string]any{"providers": []string{"sandbox_beta", "sandbox_alpha"}}, "program.providers", "usd_visa_virtual", func(t *testing.T, r *apptest.Response) {
				if got := fmt.Sprint(r.JSON()["providers"]); got != "[sandbox_beta sandbox_alpha]" {
					t.Fatalf("providers %s", got)
				}
				if p := alice.Must(201, "POST", "/managed-cards/", map[string]any{"program": "usd_visa_virtual"}).Str("provider"); p != "sandbox_beta" {
					t.Fatalf("routed to %q after the reroute", p)
				}
				rec := lastAudit(t, ops)
				before, _ := rec["before"].(map[string]any)
				if fmt.Sprint(before["providers"]) != "[sandbox_alpha sandbox_beta]" {
					t.Fatalf("audit record before %v", before)
				}
			}},
			{"route it back", "/ops/programs/usd_visa_virtual/providers/", map[string]any{"providers": []string{"sandbox_alpha", "sandbox_beta"}}, "program.providers", "usd_visa_virtual", nil},
			{"close a market", "/ops/programs/usd_visa_virtual/countries/", map[string]any{"deactivate": []string{"US"}}, "program.countries", "usd_visa_virtual", func(t *testing.T, r *apptest.Response) {
				if n := len(alice.Must(200, "GET", "/programs/", nil).JSON()["data"].([]any)); n != 0 {
					t.Fatalf("US still sees %d programs", n)
				}
			}},
			{"reopen it", "/ops/programs/usd_visa_virtual/countries/", map[string]any{"activate": []string{"US"}}, "program.countries", "usd_visa_virtual", nil},
			{"disable the program", "/ops/programs/usd_visa_virtual/disable/", nil, "program.disabled", "usd_visa_virtual", func(t *testing.T, r *apptest.Response) {
				if d := alice.Must(201, "POST", "/managed-cards/"+card+"/authorize/", apptest.Purchase(10)); d.Str("decline_reason") != "program_disabled" {
					t.Fatalf("disabled program approved: %s", d.Body)
				}
			}},
			{"enable the program", "/ops/programs/usd_visa_virtual/enable/", nil, "program.enabled", "usd_visa_virtual", nil},
			{"terminate the card", "/ops/managed-cards/" + card + "/terminate/", nil, "card.terminate", card, func(t *testing.T, r *apptest.Response) {
				if r.Str("status") != "terminated" {
					t.Fatalf("%s", r.Body)
				}
			}},
		}
		for _, a := range actions {
			t.Run(a.name, func(t *testing.T) {
				r := ops.Must(200, "POST", a.path, a.body)
				if a.check != nil {
					a.check(t, r)
				}
				rec := lastAudit(t, ops)
				if rec["actor"] != "op-jane" || rec["action"] != a.action || rec["after"] == nil || rec["request_id"] == "" || rec["created_at"] == nil {
					t.Fatalf("audit record %v", rec)
				}
				if a.target != "" && rec["target"] != a.target {
					t.Fatalf("audit target %v, want %s", rec["target"], a.target)
				}
			})
		}
		t.Run("the audit record keeps before and after", func(t *testing.T) {
			data := ops.Must(200, "GET", "/ops/audit-log/?limit=100", nil).JSON()["data"].([]any)
			for _, d := range data {
				rec := d.(map[string]any)
				if rec["action"] == "card.block" {
					before, _ := json.Marshal(rec["before"])
					after, _ := json.Marshal(rec["after"])
					var b, a map[string]any
					_ = json.Unmarshal(before, &b)
					_ = json.Unmarshal(after, &a)
					if b["status"] != "active" || a["status"] != "blocked" {
						t.Fatalf("before %v after %v", b["status"], a["status"])
					}
					return
				}
			}
			t.Fatalf("no card.block record")
		})
		conflicts := []struct {
			name, path, code string
			status           int
		}{
			{"unblock an active card", "/ops/managed-cards/%s/unblock/", "invalid_card_state", 409},
			{"approve a card not under review", "/ops/managed-cards/%s/approve/", "invalid_card_state", 409},
			{"block a terminated card", "/ops/managed-cards/%s/block/", "invalid_card_state", 409},
			{"an unknown card", "/ops/managed-cards/card_01m85pzhch41z3xs03np47j63w/block/%.0s", "not_found", 404},
			{"an unknown program", "/ops/programs/nope/enable/%.0s", "not_found", 404},
			{"an unknown provider", "/ops/providers/nope/enable/%.0s", "not_found", 404},
			{"a route to a program that does not exist", "/ops/programs/nope/providers/%.0s", "not_found", 404},
		}
		active := alice.NewCard("usd_visa_virtual")
		for _, c := range conflicts {
			t.Run("refuses "+c.name, func(t *testing.T) {
				target := active
				if c.name == "block a terminated card" {
					target = card
				}
				before := lastAudit(t, ops)["reference"]
				var body any
				if strings.HasSuffix(c.path, "/providers/%.0s") {
					body = map[string]any{"providers": []string{"sandbox_alpha"}}
				}
				r := ops.Do("POST", fmt.Sprintf(c.path, target), body)
				if r.Status != c.status || r.Code() != c.code {
					t.Fatalf("%d %s", r.Status, r.Body)
				}
				if after := lastAudit(t, ops)["reference"]; after != before {
					t.Fatalf("a refused action was audited")
				}
			})
		}
		t.Run("refuses a route it cannot use, and changes nothing", func(t *testing.T) {
			for _, tc := range []struct {
				name, body, field string
			}{
				{"no partner", `{"providers": []}`, "providers"},
				{"no list", `{}`, "providers"},
				{"an unknown partner", `{"providers": ["sandbox_alpha", "acme"]}`, "providers[1]"},
				{"a partner named twice", `{"providers": ["sandbox_beta", "sandbox_beta"]}`, "providers[1]"},
				{"nine partners", `{"providers": ["a","b","c","d","e","f","g","h","i"]}`, "providers"},
				{"a partner that issues no USD", `{"providers": ["sandbox_alpha", "sandbox_naija"]}`, "providers[1]"},
			} {
				before := lastAudit(t, ops)["reference"]
				r := ops.Do("POST", "/ops/programs/usd_visa_virtual/providers/", tc.body)
				if r.Status != 422 || r.Code() != "validation_failed" || !strings.Contains(string(r.Body), `"field":"`+tc.field+`"`) {
					t.Fatalf("%s: %d %s", tc.name, r.Status, r.Body)
				}
				if lastAudit(t, ops)["reference"] != before {
					t.Fatalf("%s: a refused route was audited", tc.name)
				}
			}
			if got := fmt.Sprint(ops.Must(200, "GET", "/programs/usd_visa_virtual/", nil).JSON()["providers"]); got != "[sandbox_alpha sandbox_beta]" {
				t.Fatalf("route after refusals %s", got)
			}
			if r := alice.Do("POST", "/ops/programs/usd_visa_virtual/providers/", map[string]any{"providers": []string{"sandbox_beta"}}); r.Status != 403 {
				t.Fatalf("a cardholder rerouted a program: %d %s", r.Status, r.Body)
			}
		})
		t.Run("review: approve and reject", func(t *testing.T) {
			alpha := env.App.Sandbox["sandbox_alpha"]
			alpha.SetFailure(sandbox.FailReview, 0)
			defer alpha.SetFailure(sandbox.FailNone, 0)
			r1 := alice.Must(201, "POST", "/managed-cards/", map[string]any{"program": "usd_visa_virtual"}).Str("reference")
			r2 := alice.Must(201, "POST", "/managed-cards/", map[string]any{"program": "usd_visa_virtual"}).Str("reference")
			if s := ops.Must(200, "POST", "/ops/managed-cards/"+r1+"/approve/", nil).Str("status"); s != "active" {
				t.Fatalf("approved → %s", s)
			}
			if r := ops.Must(200, "POST", "/ops/managed-cards/"+r2+"/reject/", nil); r.Str("status") != "failed" || r.Str("status_reason") == "" {
				t.Fatalf("rejected → %s", r.Body)
			}
		})
		t.Run("operators act in their own mode and see the ledger total zero", func(t *testing.T) {
			bal := ops.Must(200, "GET", "/ops/ledger/balances/", nil).JSON()
			for _, c := range bal["currencies"].([]any) {
				if c.(map[string]any)["total"].(float64) != 0 {
					t.Fatalf("ledger %v", bal)
				}
			}
			events := ops.Must(200, "GET", "/ops/events/?type=card.authorization.created&limit=100", nil).JSON()["data"].([]any)
			if len(events) < 2 {
				t.Fatalf("%d authorization events", len(events))
			}
			if r := ops.Do("GET", "/ops/events/?type=nope", nil); r.Status != 422 {
				t.Fatalf("%d", r.Status)
			}
			env.CheckLedger()
		})
	})
}

func TestDisputes(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		ops := env.Client("op", "US", "ops")
		alice, mallory := env.Client("alice", "US"), env.Client("mallory", "US")
		card := alice.FundedCard(10_000)
		auth := alice.Must(201, "POST", "/managed-cards/"+card+"/authorize/", apptest.Purchase(4000)).Str("reference")
		pending := alice.Must(201, "POST", "/managed-cards/"+card+"/authorize/", apptest.Purchase(500)).Str("reference")
		alice.Must(200, "POST", "/authorizations/"+auth+"/settle/", nil)
		alice.Must(200, "POST", "/authorizations/"+auth+"/refund/", map[string]any{"amount": 1000})

		bad := []struct {
			name   string
			client *apptest.Client
			body   any
			status int
			code   string
		}{
			{"a pending authorization", alice, map[string]any{"authorization": pending, "reason": "fraudulent"}, 409, "invalid_authorization_state"},
			{"an unknown reason", alice, map[string]any{"authorization": auth, "reason": "bored"}, 422, "validation_failed"},
			{"more than settled minus refunded", alice, map[string]any{"authorization": auth, "reason": "duplicate", "amount": 3001}, 422, "amount_exceeds_disputable"},
			{"another user's authorization", mallory, map[string]any{"authorization": auth, "reason": "fraudulent"}, 404, "not_found"},
			{"a fractional amount", alice, `{"authorization": "` + auth + `", "reason": "other", "amount": 1.5}`, 422, "validation_failed"},
		}
		for _, tc := range bad {
			t.Run("refuses "+tc.name, func(t *testing.T) {
				r := tc.client.Do("POST", "/disputes/", tc.body)
				if r.Status != tc.status || r.Code() != tc.code {
					t.Fatalf("%d %s", r.Status, r.Body)
				}
			})
		}
		d1 := alice.Must(201, "POST", "/disputes/", map[string]any{"authorization": auth, "reason": "not_received", "amount": 1000})
		t.Run("a dispute opens on what is disputable", func(t *testing.T) {
			if d1.Str("status") != "open" || d1.Int("amount") != 1000 || d1.Str("card") != card {
				t.Fatalf("%s", d1.Body)
			}
		})
		t.Run("one open case per authorization", func(t *testing.T) {
			r := alice.Do("POST", "/disputes/", map[string]any{"authorization": auth, "reason": "duplicate", "amount": 10})
			if r.Status != 409 || r.Code() != "dispute_already_open" {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
		})
		t.Run("a refund cannot eat into a disputed amount", func(t *testing.T) {
			r := alice.Do("POST", "/authorizations/"+auth+"/refund/", map[string]any{"amount": 2001})
			if r.Status != 422 || r.Code() != "amount_exceeds_refundable" {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
		})
		t.Run("won credits the card from dispute recovery", func(t *testing.T) {
			ref := d1.Str("reference")
			if r := alice.Do("POST", "/disputes/"+ref+"/cancel/", map[string]any{}); r.Status != 200 {
				// cancel is allowed while open; use a second case for the win path
				t.Fatalf("cancel: %d %s", r.Status, r.Body)
			}
			if r := ops.Do("POST", "/ops/disputes/"+ref+"/submit/", nil); r.Code() != "invalid_dispute_state" {
				t.Fatalf("submit a canceled case: %s", r.Body)
			}
			d2 := alice.Must(201, "POST", "/disputes/", map[string]any{"authorization": auth, "reason": "fraudulent"})
			if d2.Int("amount") != 3000 {
				t.Fatalf("default amount %d", d2.Int("amount"))
			}
			before, _, _ := balances(t, alice, card)
			if r := ops.Do("POST", "/ops/disputes/"+d2.Str("reference")+"/win/", nil); r.Code() != "invalid_dispute_state" ||
				!strings.Contains(r.Str("detail"), "submitted to the network first") {
				t.Fatalf("won before submitted: %s", r.Body)
			}
			if r := alice.Do("POST", "/ops/disputes/"+d2.Str("reference")+"/submit/", nil); r.Status != 403 {
				t.Fatalf("cardholder used ops: %d", r.Status)
			}
			ops.Must(200, "POST", "/ops/disputes/"+d2.Str("reference")+"/submit/", nil)
			if r := alice.Do("POST", "/disputes/"+d2.Str("reference")+"/cancel/", nil); r.Code() != "invalid_dispute_state" {
				t.Fatalf("canceled a submitted case: %s", r.Body)
			}
			won := ops.Must(200, "POST", "/ops/disputes/"+d2.Str("reference")+"/win/", nil)
			if won.Str("status") != "won" {
				t.Fatalf("%s", won.Body)
			}
			after, _, _ := balances(t, alice, card)
			if after != before+3000 {
				t.Fatalf("available %d → %d", before, after)
			}
			if r := alice.Do("POST", "/disputes/", map[string]any{"authorization": auth, "reason": "other"}); r.Code() != "amount_exceeds_disputable" {
				t.Fatalf("disputed again after a win: %s", r.Body)
			}
			env.CheckLedger()
		})
		t.Run("sandbox helpers advance the owner's dispute only", func(t *testing.T) {
			a2 := alice.Must(201, "POST", "/managed-cards/"+card+"/authorize/", apptest.Purchase(700)).Str("reference")
			alice.Must(200, "POST", "/authorizations/"+a2+"/settle/", nil)
			d := alice.Must(201, "POST", "/disputes/", map[string]any{"authorization": a2, "reason": "canceled"}).Str("reference")
			mallory.Must(404, "POST", "/sandbox/disputes/"+d+"/submit/", nil)
			alice.Must(200, "POST", "/sandbox/disputes/"+d+"/submit/", nil)
			if s := alice.Must(200, "POST", "/sandbox/disputes/"+d+"/lose/", nil).Str("status"); s != "lost" {
				t.Fatalf("status %s", s)
			}
			list := alice.Must(200, "GET", "/disputes/?authorization="+a2, nil).JSON()["data"].([]any)
			if len(list) != 1 {
				t.Fatalf("%d disputes", len(list))
			}
			if n := len(mallory.Must(200, "GET", "/disputes/", nil).JSON()["data"].([]any)); n != 0 {
				t.Fatalf("mallory sees %d disputes", n)
			}
			mallory.Must(404, "GET", "/disputes/"+d+"/", nil)
			env.CheckLedger()
		})
		t.Run("dispute events are recorded", func(t *testing.T) {
			created := ops.Must(200, "GET", "/ops/events/?type=card.dispute.created", nil).JSON()["data"].([]any)
			updated := ops.Must(200, "GET", "/ops/events/?type=card.dispute.updated&limit=100", nil).JSON()["data"].([]any)
			if len(created) != 3 || len(updated) != 5 {
				t.Fatalf("%d created, %d updated", len(created), len(updated))
			}
		})
	})
}

// TestOperatorReads: operators read what they act on. The whole catalogue,
// disabled programs and programs in no market included; the partners with
// their switch and breaker; any cardholder's authorization and dispute,
// with its owner. A verdict on a cardholder is one of a closed set.
func TestOperatorReads(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		ops := env.Client("op", "US", "ops")
		alice, mallory := env.Client("alice", "US"), env.Client("mallory", "US")

		ops.Must(200, "POST", "/ops/programs/kes_mastercard_virtual/disable/", nil)
		codes := func(r *apptest.Response) []string {
			var out []string
			for _, p := range r.JSON()["data"].([]any) {
				out = append(out, p.(map[string]any)["code"].(string))
			}
			slices.Sort(out)
			return out
		}
		if got := codes(ops.Must(200, "GET", "/ops/programs/", nil)); !slices.Equal(got, []string{"kes_mastercard_virtual", "ngn_verve_virtual", "usd_visa_virtual"}) {
			t.Fatalf("operators' catalogue %v", got)
		}
		if got := codes(alice.Must(200, "GET", "/programs/", nil)); slices.Contains(got, "kes_mastercard_virtual") {
			t.Fatalf("a cardholder sees the disabled program: %v", got)
		}
		if p := ops.Must(200, "GET", "/ops/programs/kes_mastercard_virtual/", nil); p.Str("status") != "disabled" {
			t.Fatalf("disabled program reads %s", p.Body)
		}
		ops.Must(404, "GET", "/ops/programs/nope/", nil)
		if r := ops.Must(200, "GET", "/ops/programs/?limit=1", nil); len(r.JSON()["data"].([]any)) != 1 || r.JSON()["has_more"] != true {
			t.Fatalf("paged catalogue %s", r.Body)
		}

		ops.Must(200, "POST", "/ops/providers/sandbox_beta/disable/", nil)
		providers := map[string]map[string]any{}
		for _, p := range ops.Must(200, "GET", "/ops/providers/", nil).JSON()["data"].([]any) {
			p := p.(map[string]any)
			providers[p["name"].(string)] = p
		}
		if len(providers) != 4 || providers["sandbox_alpha"]["enabled"] != true || providers["sandbox_beta"]["enabled"] != false ||
			providers["sandbox_alpha"]["circuit"] != "closed" || providers["sandbox_alpha"]["livemode"] != false {
			t.Fatalf("providers %v", providers)
		}
		if r := ops.Do("GET", "/ops/providers/?limit=2", nil); r.Status != 422 {
			t.Fatalf("a paged provider list: %d %s", r.Status, r.Body)
		}

		card := alice.FundedCard(10_000)
		auth := alice.Must(201, "POST", "/managed-cards/"+card+"/authorize/", apptest.Purchase(4000)).Str("reference")
		if a := ops.Must(200, "GET", "/ops/authorizations/"+auth+"/", nil); a.Str("owner") != "alice" || a.Str("status") != "pending" || a.Str("reference") != auth {
			t.Fatalf("operator's authorization %s", a.Body)
		}
		alice.Must(200, "POST", "/authorizations/"+auth+"/settle/", nil)
		dsp := alice.Must(201, "POST", "/disputes/", map[string]any{"authorization": auth, "reason": "fraudulent"}).Str("reference")
		if d := ops.Must(200, "GET", "/ops/disputes/"+dsp+"/", nil); d.Str("owner") != "alice" || d.Str("status") != "open" || d.Str("authorization") != auth {
			t.Fatalf("operator's dispute %s", d.Body)
		}
		for _, path := range []string{"/ops/authorizations/" + auth + "/", "/ops/disputes/" + dsp + "/", "/ops/programs/", "/ops/providers/"} {
			if r := mallory.Do("GET", path, nil); r.Status != 403 {
				t.Fatalf("a cardholder reads %s: %d", path, r.Status)
			}
		}
		ops.Must(404, "GET", "/ops/authorizations/auth_01m85pzhch41z3xs03np47j63w/", nil)

		for _, kyc := range []string{"VERIFIED", "verifed", "Verified", "ok"} {
			if r := ops.Do("POST", "/ops/cardholders/alice/verification/", map[string]string{"kyc": kyc}); r.Status != 422 {
				t.Fatalf("verdict %q: %d %s", kyc, r.Status, r.Body)
			}
		}
		if r := ops.Must(200, "POST", "/ops/cardholders/alice/verification/", map[string]string{"kyc": "rejected"}); r.Str("kyc") != "rejected" {
			t.Fatalf("%s", r.Body)
		}
	})
}

// TestSimulatedPartners: an operator scripts the sandbox partners through
// the API, and routing's every outcome shows: failover past a refusing
// partner, a card held for review and approved, a card no partner issued.
func TestSimulatedPartners(t *testing.T) {
	env := apptest.New(t, testdb.URL(t, "sqlite"))
	ops := env.Client("op", "US", "ops")
	alice := env.Client("alice", "US")
	simulate := func(name, outcome string) {
		t.Helper()
		r := ops.Must(200, "POST", "/ops/providers/"+name+"/simulate/", map[string]any{"outcome": outcome})
		if r.Str("outcome") != outcome || r.Str("name") != name || r.Str("object") != "provider_simulation" {
			t.Fatalf("simulate %s %s: %s", name, outcome, r.Body)
		}
	}
	t.Cleanup(func() { simulate("sandbox_alpha", "normal"); simulate("sandbox_beta", "normal") })
	card := func() *apptest.Response {
		t.Helper()
		return alice.Must(201, "POST", "/managed-cards/", map[string]any{"program": "usd_visa_virtual"})
	}

	simulate("sandbox_alpha", "error")
	if c := card(); c.Str("status") != "active" || c.Str("provider") != "sandbox_beta" {
		t.Fatalf("with the first partner refusing: %s", c.Body)
	}
	simulate("sandbox_beta", "review")
	held := card()
	if held.Str("status") != "under_review" || held.Str("provider") != "sandbox_beta" {
		t.Fatalf("with the second partner reviewing: %s", held.Body)
	}
	if a := ops.Must(200, "POST", "/ops/managed-cards/"+held.Str("reference")+"/approve/", nil); a.Str("status") != "active" {
		t.Fatalf("approved: %s", a.Body)
	}
	simulate("sandbox_beta", "error")
	if c := card(); c.Str("status") != "failed" {
		t.Fatalf("with every partner refusing: %s", c.Body)
	}

	audit := ops.Must(200, "GET", "/ops/audit-log/?limit=100", nil).JSON()["data"].([]any)
	n := 0
	for _, rec := range audit {
		if rec.(map[string]any)["action"] == "provider.simulated" {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("%d provider.simulated audit records, want 3", n)
	}
	for _, tc := range []struct {
		path, body string
		status     int
	}{
		{"/ops/providers/sandbox_alpha/simulate/", `{"outcome":"explode"}`, 422},
		{"/ops/providers/sandbox_alpha/simulate/", `{"outcome":"error","delay_ms":10001}`, 422},
		{"/ops/providers/sandbox_alpha/simulate/", `{}`, 422},
		{"/ops/providers/acme_bank/simulate/", `{"outcome":"error"}`, 404},
	} {
		if r := ops.Do("POST", tc.path, tc.body); r.Status != tc.status {
			t.Errorf("%s %s: %d %s, want %d", tc.path, tc.body, r.Status, r.Body, tc.status)
		}
	}
	// The delay is milliseconds, not an amount, whatever is wrong with it.
	for _, body := range []string{`{"outcome":"normal","delay_ms":1.5}`, `{"outcome":"normal","delay_ms":99999999999999999999}`,
		`{"outcome":"normal","delay_ms":10001}`} {
		r := ops.Do("POST", "/ops/providers/sandbox_alpha/simulate/", body)
		if r.Status != 422 || !strings.Contains(string(r.Body), "milliseconds") || strings.Contains(string(r.Body), "minor units") {
			t.Errorf("%s: %d %s", body, r.Status, r.Body)
		}
	}
	if r := alice.Do("POST", "/ops/providers/sandbox_alpha/simulate/", `{"outcome":"error"}`); r.Status != 403 {
		t.Fatalf("a cardholder scripted a partner: %d", r.Status)
	}
}
