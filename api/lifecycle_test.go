package api_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/cardrail/cardrail/internal/apptest"
	"github.com/cardrail/cardrail/internal/testdb"
	"github.com/cardrail/cardrail/provider/sandbox"
)

func TestCardLifecycle(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		alice := env.Client("alice", "US")
		ref := alice.NewCard("usd_visa_virtual")
		steps := []struct {
			action string
			status int
			want   string // card status after, or error code
		}{
			{"unfreeze", 409, "invalid_card_state"},
			{"freeze", 200, "frozen"},
			{"freeze", 409, "invalid_card_state"},
			{"unfreeze", 200, "active"},
			{"freeze", 200, "frozen"},
			{"terminate", 200, "terminated"},
			{"unfreeze", 409, "invalid_card_state"},
			{"freeze", 409, "invalid_card_state"},
			{"terminate", 409, "invalid_card_state"},
		}
		for i, st := range steps {
			r := alice.Do("POST", "/managed-cards/"+ref+"/"+st.action+"/", nil)
			got := r.Str("status")
			if r.Status != 200 {
				got = r.Code()
			}
			if r.Status != st.status || got != st.want {
				t.Fatalf("step %d %s: %d %q, want %d %q: %s", i, st.action, r.Status, got, st.status, st.want, r.Body)
			}
		}
		t.Run("a terminated card can no longer be patched", func(t *testing.T) {
			r := alice.Do("PATCH", "/managed-cards/"+ref+"/", map[string]any{"nickname": "x"})
			if r.Status != 409 {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
		})
	})
}

func TestAnotherUsersCardIsNotFound(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		alice, mallory := env.Client("alice", "US"), env.Client("mallory", "US")
		card := alice.FundedCard(5000)
		auth := alice.Must(201, "POST", "/managed-cards/"+card+"/authorize/", apptest.Purchase(100)).Str("reference")
		mallory.Must(200, "POST", "/sandbox/wallets/deposit/", map[string]any{"amount": 5000, "currency": "USD"})
		requests := []struct {
			method, path string
			body         any
		}{
			{"GET", "/managed-cards/" + card + "/", nil},
			{"PATCH", "/managed-cards/" + card + "/", map[string]any{"nickname": "mine"}},
			{"POST", "/managed-cards/" + card + "/freeze/", nil},
			{"POST", "/managed-cards/" + card + "/unfreeze/", nil},
			{"POST", "/managed-cards/" + card + "/terminate/", nil},
			{"GET", "/managed-cards/" + card + "/details/", nil},
			{"GET", "/managed-cards/" + card + "/transactions/", nil},
			{"POST", "/managed-cards/" + card + "/fund/", map[string]any{"amount": 100}},
			{"POST", "/managed-cards/" + card + "/withdraw/", map[string]any{"amount": 100}},
			{"POST", "/managed-cards/" + card + "/authorize/", apptest.Purchase(100)},
			{"GET", "/authorizations/" + auth + "/", nil},
			{"POST", "/authorizations/" + auth + "/settle/", nil},
			{"POST", "/authorizations/" + auth + "/reverse/", nil},
			{"POST", "/authorizations/" + auth + "/refund/", nil},
			{"POST", "/sandbox/authorizations/" + auth + "/expire/", nil},
		}
		for _, rq := range requests {
			t.Run(rq.method+" "+strings.Replace(strings.Replace(rq.path, card, "{card}", 1), auth, "{auth}", 1), func(t *testing.T) {
				r := mallory.Do(rq.method, rq.path, rq.body)
				if r.Status != 404 || r.Code() != "not_found" {
					t.Fatalf("%d %s", r.Status, r.Body)
				}
				if strings.Contains(string(r.Body), "alice") {
					t.Fatalf("the problem names the owner: %s", r.Body)
				}
			})
		}
		t.Run("lists never show another user's objects", func(t *testing.T) {
			for _, p := range []string{"/managed-cards/", "/authorizations/", "/authorizations/?card=" + card} {
				if n := len(mallory.Must(200, "GET", p, nil).JSON()["data"].([]any)); n != 0 {
					t.Fatalf("%s shows %d objects", p, n)
				}
			}
		})
		t.Run("alice's card is untouched", func(t *testing.T) {
			c := alice.Must(200, "GET", "/managed-cards/"+card+"/", nil).JSON()
			bal := c["balance"].(map[string]any)
			if c["status"] != "active" || c["nickname"] != nil || bal["available"].(float64) != 4900 || bal["held"].(float64) != 100 {
				t.Fatalf("card changed: %v", c)
			}
			env.CheckLedger()
		})
	})
}

func TestCardUpdateAndList(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		alice := env.Client("alice", "US")
		ref := alice.Must(201, "POST", "/managed-cards/", map[string]any{"program": "usd_visa_virtual", "nickname": "travel",
			"metadata": map[string]string{"team": "ops", "cost_center": "42"}}).Str("reference")
		t.Run("patch merges metadata and replaces controls", func(t *testing.T) {
			r := alice.Must(200, "PATCH", "/managed-cards/"+ref+"/", map[string]any{
				"nickname": "groceries", "metadata": map[string]string{"team": "", "owner": "alice"},
				"spending_controls": map[string]any{"per_authorization": 5000, "blocked_mccs": []string{"7995"}},
			}).JSON()
			md := r["metadata"].(map[string]any)
			sc := r["spending_controls"].(map[string]any)
			if r["nickname"] != "groceries" || md["team"] != nil || md["owner"] != "alice" || md["cost_center"] != "42" ||
				sc["per_authorization"].(float64) != 5000 || sc["blocked_mccs"].([]any)[0] != "7995" {
				t.Fatalf("card %v", r)
			}
		})
		bad := []struct {
			name string
			body any
		}{
			{"negative limit", map[string]any{"spending_controls": map[string]any{"daily": -1}}},
			{"looser than the program", map[string]any{"spending_controls": map[string]any{"per_authorization": 250001}}},
			{"allow and block together", map[string]any{"spending_controls": map[string]any{"allowed_mccs": []string{"5411"}, "blocked_mccs": []string{"7995"}}}},
			{"bad mcc", map[string]any{"spending_controls": map[string]any{"blocked_mccs": []string{"79"}}}},
			{"bad country", map[string]any{"spending_controls": map[string]any{"allowed_countries": []string{"XX"}}}},
			{"unknown control", map[string]any{"spending_controls": map[string]any{"weekly": 5}}},
			{"fractional limit", `{"spending_controls": {"daily": 10.5}}`},
			{"long nickname", map[string]any{"nickname": strings.Repeat("n", 101)}},
			{"server-owned field", map[string]any{"status": "active"}},
		}
		for _, tc := range bad {
			t.Run("refuses "+tc.name, func(t *testing.T) {
				r := alice.Do("PATCH", "/managed-cards/"+ref+"/", tc.body)
				if r.Status != 422 {
					t.Fatalf("%d %s", r.Status, r.Body)
				}
			})
		}
		t.Run("refused patches changed nothing", func(t *testing.T) {
			r := alice.Must(200, "GET", "/managed-cards/"+ref+"/", nil).JSON()
			if r["nickname"] != "groceries" {
				t.Fatalf("card %v", r)
			}
		})
		t.Run("cursor pagination is newest first and complete", func(t *testing.T) {
			made := []string{ref}
			for range 4 {
				made = append(made, alice.NewCard("usd_visa_virtual"))
			}
			alice.Must(200, "POST", "/managed-cards/"+made[2]+"/freeze/", nil)
			var seen []string
			cursor := ""
			for pages := 0; ; pages++ {
				r := alice.Must(200, "GET", "/managed-cards/?limit=2"+cursor, nil).JSON()
				for _, c := range r["data"].([]any) {
					seen = append(seen, c.(map[string]any)["reference"].(string))
				}
				if r["has_more"] != true {
					if r["next_cursor"] != nil {
						t.Fatalf("last page has a cursor")
					}
					break
				}
				cursor = "&cursor=" + r["next_cursor"].(string)
			}
			if len(seen) != 5 {
				t.Fatalf("seen %v", seen)
			}
			for i := range seen {
				if seen[i] != made[len(made)-1-i] {
					t.Fatalf("order %v, made %v", seen, made)
				}
			}
			frozen := alice.Must(200, "GET", "/managed-cards/?status=frozen", nil).JSON()["data"].([]any)
			if len(frozen) != 1 || frozen[0].(map[string]any)["reference"] != made[2] {
				t.Fatalf("frozen filter %v", frozen)
			}
		})
	})
}

func TestCardDetailsReveal(t *testing.T) {
	env := apptest.New(t, testdb.URL(t, "sqlite"))
	alice := env.Client("alice", "US")
	card := alice.Must(201, "POST", "/managed-cards/", map[string]any{"program": "usd_visa_virtual"})
	ref := card.Str("reference")
	d := alice.Must(200, "GET", "/managed-cards/"+ref+"/details/", nil)
	pan, cvc := d.Str("number"), d.Str("cvc")
	t.Run("reveals a Luhn-valid number matching last4 and a CVC", func(t *testing.T) {
		if !sandbox.LuhnValid(pan) || !strings.HasSuffix(pan, card.Str("last4")) || len(cvc) != 3 {
			t.Fatalf("details %s", d.Body)
		}
	})
	t.Run("the card object never carries the number", func(t *testing.T) {
		for _, r := range []*apptest.Response{card, alice.Must(200, "GET", "/managed-cards/"+ref+"/", nil), alice.Must(200, "GET", "/managed-cards/", nil)} {
			if strings.Contains(string(r.Body), pan) || strings.Contains(string(r.Body), `"cvc"`) {
				t.Fatalf("PAN in %s", r.Body)
			}
		}
	})
	t.Run("the PAN is sealed at rest", func(t *testing.T) {
		var sealed []byte
		if err := env.App.Store.Conn().QueryRow(context.Background(), `SELECT sealed_pan FROM cards WHERE reference = $1`, ref).Scan(&sealed); err != nil {
			t.Fatal(err)
		}
		if len(sealed) == 0 || strings.Contains(string(sealed), pan) || strings.Contains(string(sealed), pan[6:12]) {
			t.Fatalf("sealed PAN %x", sealed)
		}
	})
	t.Run("HEAD does not reveal", func(t *testing.T) {
		// ServeMux would answer HEAD as GET: an audited reveal and a spent
		// reveal that show nothing. The count below stays at one.
		r := alice.Do("HEAD", "/managed-cards/"+ref+"/details/", nil)
		if r.Status != 405 || r.Header.Get("Allow") != "GET" {
			t.Fatalf("HEAD: %d, Allow %q", r.Status, r.Header.Get("Allow"))
		}
		if r := alice.Do("PUT", "/managed-cards/"+ref+"/details/", nil); r.Status != 405 || r.Header.Get("Allow") != "GET" {
			t.Fatalf("PUT: %d, Allow %q: a 405 must not offer the HEAD the reveal refuses", r.Status, r.Header.Get("Allow"))
		}
	})
	t.Run("each reveal is audited", func(t *testing.T) {
		var n int
		if err := env.App.Store.Conn().QueryRow(context.Background(),
			`SELECT COUNT(*) FROM audit_log WHERE action = 'card.details.revealed' AND target = $1 AND actor = 'alice'`, ref).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("%d audit records", n)
		}
	})
	t.Run("only active or frozen cards reveal their number", func(t *testing.T) {
		bob := env.Client("bob", "US")
		ops := env.Client("root", "US", "ops")
		c := bob.NewCard("usd_visa_virtual")
		bob.Must(200, "POST", "/managed-cards/"+c+"/freeze/", nil)
		bob.Must(200, "GET", "/managed-cards/"+c+"/details/", nil)
		bob.Must(200, "POST", "/managed-cards/"+c+"/unfreeze/", nil)
		ops.Must(200, "POST", "/ops/managed-cards/"+c+"/block/", nil)
		if r := bob.Do("GET", "/managed-cards/"+c+"/details/", nil); r.Status != 409 || r.Code() != "invalid_card_state" {
			t.Fatalf("blocked card: %d %s", r.Status, r.Body)
		}
		ops.Must(200, "POST", "/ops/managed-cards/"+c+"/unblock/", nil)
		bob.Must(200, "POST", "/managed-cards/"+c+"/terminate/", nil)
		if r := bob.Do("GET", "/managed-cards/"+c+"/details/", nil); r.Status != 409 || r.Code() != "invalid_card_state" {
			t.Fatalf("terminated card: %d %s", r.Status, r.Body)
		}
	})
	t.Run("reveals have their own tight limit", func(t *testing.T) {
		var r *apptest.Response
		for range 10 {
			if r = alice.Do("GET", "/managed-cards/"+ref+"/details/", nil); r.Status == 429 {
				break
			}
		}
		if r.Status != 429 {
			t.Fatalf("ten reveals in a row were allowed")
		}
		// The refusal names the limit it hit, not the general one.
		if !strings.Contains(r.Str("detail"), "card-details reveals: 5 a minute") {
			t.Errorf("reveal refused with %q", r.Str("detail"))
		}
		if r := alice.Do("GET", "/managed-cards/"+ref+"/", nil); r.Status != 200 {
			t.Fatalf("ordinary reads limited too: %d", r.Status)
		}
	})
	t.Run("logs never hold a token, PAN or CVC", func(t *testing.T) {
		logs := env.Logs.String()
		if !strings.Contains(logs, `"route"`) {
			t.Fatalf("no request logs captured")
		}
		for name, secret := range map[string]string{"token": alice.Token, "PAN": pan, "CVC line": `"cvc"`} {
			if strings.Contains(logs, secret) {
				t.Fatalf("%s in logs", name)
			}
		}
	})
}

func TestOperations(t *testing.T) {
	env := apptest.New(t, testdb.URL(t, "sqlite"))
	alice := env.Client("alice", "US")
	ref := alice.NewCard("usd_visa_virtual")
	alice.Must(200, "GET", "/managed-cards/"+ref+"/", nil)
	get := func(path string) (int, string) {
		res, err := http.Get(env.Server.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	t.Run("healthz and readyz", func(t *testing.T) {
		if s, b := get("/healthz"); s != 200 || !strings.Contains(b, "ok") {
			t.Fatalf("healthz %d %s", s, b)
		}
		if s, b := get("/readyz"); s != 200 || !strings.Contains(b, `"database":"ok"`) {
			t.Fatalf("readyz %d %s", s, b)
		}
	})
	t.Run("metrics are labelled by route pattern, never the raw path", func(t *testing.T) {
		s, b := get("/metrics")
		if s != 200 || !strings.Contains(b, `route="GET /cards/api/v1/managed-cards/{ref}/"`) {
			t.Fatalf("metrics %d", s)
		}
		if strings.Contains(b, ref) {
			t.Fatalf("a card reference became a label")
		}
	})
	t.Run("the OpenAPI document is served", func(t *testing.T) {
		if s, b := get("/cards/api/v1/openapi.json"); s != 200 || !strings.Contains(b, `"openapi"`) {
			t.Fatalf("openapi %d", s)
		}
	})
}
