package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/cardrail/cardrail/internal/apptest"
	"github.com/cardrail/cardrail/internal/testdb"
)

// Inputs PostgreSQL cannot store (NUL, invalid UTF-8) and paths net/http
// would redirect are refused the same way on both databases, before they
// reach either.
func TestRequestHygiene(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		alice := env.Client("alice", "US")
		ops := env.Client("root", "US", "ops")
		card := alice.FundedCard(1000)

		bodies := []struct {
			client       *apptest.Client
			method, path string
			body         string
			field        string
		}{
			{alice, "POST", "/managed-cards/", `{"program":"usd_visa_virtual","nickname":"a\u0000b"}`, "nickname"},
			{alice, "POST", "/managed-cards/", `{"program":"\u0000"}`, "program"},
			{alice, "POST", "/managed-cards/", `{"program":"usd_visa_virtual","metadata":{"k\u0000":"v"}}`, "metadata.k\u0000"},
			{alice, "PATCH", "/managed-cards/" + card + "/", `{"metadata":{"k":"v\u0000"}}`, "metadata.k"},
			{alice, "POST", "/managed-cards/" + card + "/authorize/", `{"amount":1,"currency":"USD","merchant":{"name":"x\u0000","mcc":"5411","country":"US"}}`, "merchant.name"},
			{ops, "POST", "/ops/wallets/credit/", `{"sub":"x\u0000","amount":1,"currency":"USD"}`, "sub"},
			{ops, "POST", "/ops/cardholders/alice/verification/", `{"kyc":"v\u0000"}`, "kyc"},
		}
		for _, b := range bodies {
			r := b.client.Do(b.method, b.path, b.body)
			var p struct {
				Code   string
				Errors []struct{ Field, Message string }
			}
			if err := r.Decode(&p); err != nil || r.Status != 422 || p.Code != "validation_failed" ||
				len(p.Errors) != 1 || p.Errors[0].Field != b.field || !strings.Contains(p.Errors[0].Message, "NUL") {
				t.Errorf("%s %s %s: %d %s, want 422 naming %q", b.method, b.path, b.body, r.Status, r.Body, b.field)
			}
		}

		// A merchant with no name but blanks is no merchant: the name is
		// what a statement shows.
		for _, name := range []string{"", "   ", "\t\n"} {
			body, _ := json.Marshal(map[string]any{"amount": 1, "currency": "USD", "merchant": map[string]string{"name": name, "mcc": "5411", "country": "US"}})
			r := alice.Do("POST", "/managed-cards/"+card+"/authorize/", string(body))
			errs, _ := r.JSON()["errors"].([]any)
			if r.Status != 422 || len(errs) != 1 || errs[0].(map[string]any)["field"] != "merchant.name" {
				t.Errorf("merchant name %q: %d %s, want 422 naming merchant.name", name, r.Status, r.Body)
			}
		}

		paths := []string{
			"/programs/%00/", "/programs/%ff/", "/managed-cards/card_%0a/",
			"/managed-cards//x/fund/", "/managed-cards/x/../" + card + "/", "/managed-cards/./",
		}
		for _, p := range paths {
			r := alice.Do("GET", p, nil)
			if r.Status != 404 || r.Code() != "not_found" || r.Header.Get("Location") != "" {
				t.Errorf("GET %s: %d %s (Location %q), want a 404 problem and no redirect", p, r.Status, r.Body, r.Header.Get("Location"))
			}
		}
		// A sub no token could carry names nobody: crediting it would
		// strand the money in a wallet no one can reach.
		for _, sub := range []string{`a\u0001b`, `\u007f`, `a\u0085`} {
			r := ops.Do("POST", "/ops/wallets/credit/", `{"sub":"`+sub+`","amount":1,"currency":"USD"}`)
			if r.Status != 422 || r.Code() != "validation_failed" || !strings.Contains(string(r.Body), `"field":"sub"`) {
				t.Errorf("credit to sub %s: %d %s, want 422 naming sub", sub, r.Status, r.Body)
			}
		}
		r := ops.Do("POST", "/ops/cardholders/a%00b/verification/", `{"kyc":"verified"}`)
		if r.Status != 404 {
			t.Errorf("cardholder sub with NUL: %d %s, want 404", r.Status, r.Body)
		}

		queries := map[string]string{
			"/managed-cards/?nope=1":                      "nope",
			"/authorizations/?status=settled":             "status",
			"/disputes/?card=" + card:                     "card",
			"/managed-cards/?status=active&status=frozen": "status",
			"/authorizations/?card=%00":                   "card",
			"/authorizations/?card=%ff":                   "card",
			"/managed-cards/" + card + "/?expand=x":       "expand",
		}
		for p, field := range queries {
			r := alice.Do("GET", p, nil)
			if r.Status != 422 || r.Code() != "validation_failed" || !strings.Contains(string(r.Body), `"field":"`+field+`"`) {
				t.Errorf("GET %s: %d %s, want 422 naming %q", p, r.Status, r.Body, field)
			}
		}
		if r := alice.Do("GET", "/authorizations/?card=%zz", nil); r.Status != 400 || r.Code() != "malformed_request" {
			t.Errorf("unparseable query: %d %s", r.Status, r.Body)
		}
		// Declared parameters still work, the disputes list's paging among them.
		alice.Must(200, "GET", "/disputes/?limit=1", nil)
		alice.Must(200, "GET", "/authorizations/?card="+card+"&limit=5", nil)

		// Idempotency keys: an empty, non-ASCII or repeated key is refused,
		// and the deposit does not happen.
		before := alice.Must(200, "GET", "/wallets/", nil).Body
		send := func(keys ...string) *http.Response {
			req, _ := http.NewRequest("POST", env.Server.URL+"/cards/api/v1/sandbox/wallets/deposit/", strings.NewReader(`{"amount":1,"currency":"USD"}`))
			req.Header.Set("Authorization", "Bearer "+alice.Token)
			req.Header.Set("Content-Type", "application/json")
			for _, k := range keys {
				req.Header.Add("Idempotency-Key", k)
			}
			res, err := env.Server.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			return res
		}
		for _, keys := range [][]string{{""}, {"k\xff"}, {"a\tb"}, {"a", "b"}, {strings.Repeat("k", 256)}} {
			if res := send(keys...); res.StatusCode != 422 {
				t.Errorf("Idempotency-Key %q: %d, want 422", keys, res.StatusCode)
			}
		}
		if after := alice.Must(200, "GET", "/wallets/", nil).Body; string(after) != string(before) {
			t.Errorf("a refused key moved money: %s then %s", before, after)
		}
		if res := send(strings.Repeat("k", 255)); res.StatusCode != 200 {
			t.Errorf("a 255-character key: %d", res.StatusCode)
		}

		// A request id that is not printable ASCII is replaced, not stored:
		// audited actions write it into PostgreSQL text.
		for _, id := range []string{"req\xff", "r\xc3q"} {
			r := ops.Do("POST", "/ops/managed-cards/"+card+"/block/", nil, "X-Request-Id", id)
			if r.Status != 200 || r.Header.Get("X-Request-Id") == id || r.Header.Get("X-Request-Id") == "" {
				t.Errorf("X-Request-Id %q: %d %s, echoed %q", id, r.Status, r.Body, r.Header.Get("X-Request-Id"))
			}
			ops.Must(200, "POST", "/ops/managed-cards/"+card+"/unblock/", nil)
		}
		if r := ops.Do("GET", "/ops/audit-log/?limit=1", nil, "X-Request-Id", "mine 42"); r.Header.Get("X-Request-Id") != "mine 42" {
			t.Errorf("a printable request id is not echoed: %q", r.Header.Get("X-Request-Id"))
		}

		// Two Authorization headers are refused; every answer is no-store.
		req, _ := http.NewRequest("GET", env.Server.URL+"/cards/api/v1/wallets/", nil)
		req.Header.Add("Authorization", "Bearer "+alice.Token)
		req.Header.Add("Authorization", "Bearer "+ops.Token)
		res, err := env.Server.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 401 {
			t.Errorf("two Authorization headers: %d, want 401", res.StatusCode)
		}
		if r := alice.Do("GET", "/managed-cards/"+card+"/details/", nil); r.Status != 200 || r.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("reveal: %d, Cache-Control %q", r.Status, r.Header.Get("Cache-Control"))
		}
		env.CheckLedger()
	})
}

// A client can send any token as a method; the metrics must not keep a
// series for each.
func TestMetricsMethodLabel(t *testing.T) {
	env := apptest.New(t, testdb.URL(t, "sqlite"))
	alice := env.Client("alice", "US")
	for _, m := range []string{"BREW", "M1", "M2"} {
		alice.Do(m, "/programs/", nil)
	}
	alice.Do("GET", "//healthz", nil)
	alice.Must(200, "GET", "/programs/", nil)
	r := alice.Do("GET", "//metrics", nil)
	if !strings.Contains(string(r.Body), `route="GET /healthz/"`) || !strings.Contains(string(r.Body), `route="GET /cards/api/v1/programs/"`) {
		t.Errorf("health checks are not labelled by their route:\n%s", grepLines(string(r.Body), "cardrail_http_requests_total"))
	}
	if strings.Contains(string(r.Body), `method="BREW"`) || strings.Contains(string(r.Body), `method="M1"`) ||
		!strings.Contains(string(r.Body), `method="other"`) {
		t.Errorf("metrics keep raw methods:\n%s", grepLines(string(r.Body), "cardrail_http_requests_total"))
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
