package api_test

import (
	"encoding/json"
	"os"
	"slices"
	"testing"

	"github.com/cardrail/cardrail/internal/apptest"
	"github.com/cardrail/cardrail/internal/testdb"
)

// Every event type the reference names is produced here and read back
// through /ops/events/, whose answers the test client checks against the
// reference: each event's data.object must be the wallet, card,
// authorization or dispute its schema describes, whole.
func TestEveryEventTypeMatchesTheReference(t *testing.T) {
	raw, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Components struct {
			Schemas struct {
				Event struct {
					Properties struct {
						Type struct {
							Enum []string `json:"enum"`
						} `json:"type"`
					} `json:"properties"`
				} `json:"Event"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	want := doc.Components.Schemas.Event.Properties.Type.Enum
	if len(want) == 0 {
		t.Fatal("the reference names no event types")
	}
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		ops := env.Client("op-jane", "US", "ops")
		alice := env.Client("alice", "US")

		card := alice.FundedCard(10000) // wallet.credited, card.created, wallet.debited, card.funded
		alice.Must(200, "POST", "/managed-cards/"+card+"/withdraw/", map[string]any{"amount": 1000})
		alice.Must(200, "POST", "/managed-cards/"+card+"/freeze/", nil)
		alice.Must(200, "POST", "/managed-cards/"+card+"/unfreeze/", nil)
		alice.Must(200, "PATCH", "/managed-cards/"+card+"/", map[string]any{"nickname": "groceries"})
		auth := alice.Must(201, "POST", "/managed-cards/"+card+"/authorize/", apptest.Purchase(3000)).Str("reference")
		alice.Must(200, "POST", "/authorizations/"+auth+"/settle/", nil)
		dsp := alice.Must(201, "POST", "/disputes/", map[string]any{"authorization": auth, "reason": "fraudulent"}).Str("reference")
		ops.Must(200, "POST", "/ops/disputes/"+dsp+"/submit/", nil)
		alice.Must(200, "POST", "/managed-cards/"+card+"/terminate/", nil)

		seen := map[string]int{}
		for path := "/ops/events/?limit=100"; ; {
			r := ops.Must(200, "GET", path, nil)
			var page struct {
				Data []struct {
					Type string `json:"type"`
				} `json:"data"`
				HasMore    bool   `json:"has_more"`
				NextCursor string `json:"next_cursor"`
			}
			if err := r.Decode(&page); err != nil {
				t.Fatal(err)
			}
			for _, e := range page.Data {
				seen[e.Type]++
			}
			if !page.HasMore {
				break
			}
			path = "/ops/events/?limit=100&cursor=" + page.NextCursor
		}
		for _, typ := range want {
			if seen[typ] == 0 {
				t.Errorf("no %s event among %v", typ, seen)
			}
		}
		for typ := range seen {
			if !slices.Contains(want, typ) {
				t.Errorf("event type %s is not in the reference", typ)
			}
		}
	})
}

// The reference says an optional field sent as null is the same as one
// left out (amounts and metadata values aside). These are the optional
// fields whose schemas did not say so until the reference check met one;
// each is sent as null here, and the answer must be the one the field's
// absence gives.
func TestNullOptionalFieldsAreLeftOut(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		ops := env.Client("op-jane", "US", "ops")
		alice := env.Client("alice", "US")
		card := alice.FundedCard(1000)
		if r := alice.Must(200, "POST", "/managed-cards/"+card+"/withdraw/", `{"amount":100,"currency":null}`); r.JSON()["balance"].(map[string]any)["available"] != 900.0 {
			t.Fatalf("withdraw: %s", r.Body)
		}
		if r := alice.Must(200, "POST", "/managed-cards/"+card+"/fund/", `{"amount":100,"currency":null}`); r.JSON()["balance"].(map[string]any)["available"] != 1000.0 {
			t.Fatalf("fund: %s", r.Body)
		}
		auth := alice.Must(201, "POST", "/managed-cards/"+card+"/authorize/",
			`{"amount":10,"currency":"USD","merchant":{"name":"Corner Shop","mcc":"5411","country":"US","city":null}}`)
		if m := auth.JSON()["merchant"].(map[string]any); auth.Str("status") != "pending" || m["city"] != nil {
			t.Fatalf("authorize: %s", auth.Body)
		}
		sim := ops.Must(200, "POST", "/ops/providers/sandbox_alpha/simulate/", `{"outcome":"normal","delay_ms":null}`)
		if sim.Int("delay_ms") != 0 {
			t.Fatalf("simulate: %s", sim.Body)
		}
		before := ops.Must(200, "GET", "/ops/programs/usd_visa_virtual/", nil).JSON()["markets"]
		after := ops.Must(200, "POST", "/ops/programs/usd_visa_virtual/countries/", `{"activate":null,"deactivate":["GH"]}`).JSON()["markets"]
		if slices.Contains(toStrings(after), "GH") || len(toStrings(after)) != len(toStrings(before))-1 {
			t.Fatalf("countries: %v, then %v", before, after)
		}
	})
}

func toStrings(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}
