package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/internal/apptest"
	"github.com/cardrail/cardrail/internal/testdb"
	"github.com/cardrail/cardrail/provider/sandbox"
)

func TestConventions(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		alice := env.Client("alice", "US")
		card := alice.NewCard("usd_visa_virtual")

		t.Run("paths answer with and without the trailing slash, without redirect", func(t *testing.T) {
			for _, p := range []string{"/managed-cards/" + card + "/", "/managed-cards/" + card} {
				r := alice.Do("GET", p, nil)
				if r.Status != http.StatusOK || r.Str("reference") != card {
					t.Fatalf("GET %s: %d %s", p, r.Status, r.Body)
				}
			}
			r := alice.Do("POST", "/managed-cards/"+card+"/freeze", nil)
			if r.Status != http.StatusOK || r.Str("status") != "frozen" {
				t.Fatalf("POST without slash: %d %s", r.Status, r.Body)
			}
			alice.Must(200, "POST", "/managed-cards/"+card+"/unfreeze/", nil)
			// An escaped slash stays inside its segment either way: this
			// names a card "<card>/transactions", not the card's lines.
			for _, p := range []string{"/managed-cards/" + card + "%2Ftransactions/", "/managed-cards/" + card + "%2Ftransactions"} {
				if r := alice.Do("GET", p, nil); r.Status != http.StatusNotFound {
					t.Fatalf("GET %s: %d %s", p, r.Status, r.Body)
				}
			}
			ops := env.Client("op-trailing", "US", "ops")
			for _, p := range []string{"/ops/cardholders/team%2Falice/verification/", "/ops/cardholders/team%2Falice/verification"} {
				if r := ops.Do("POST", p, `{"kyc":"verified"}`); r.Status != http.StatusOK || r.Str("subject") != "team/alice" {
					t.Fatalf("POST %s: %d %s", p, r.Status, r.Body)
				}
			}
		})
		t.Run("request id is echoed, or made", func(t *testing.T) {
			r := alice.Do("GET", "/programs/", nil, "X-Request-Id", "trace-123")
			if got := r.Header.Get("X-Request-Id"); got != "trace-123" {
				t.Fatalf("X-Request-Id = %q", got)
			}
			r = alice.Do("GET", "/programs/", nil)
			if !strings.HasPrefix(r.Header.Get("X-Request-Id"), "req_") {
				t.Fatalf("generated X-Request-Id = %q", r.Header.Get("X-Request-Id"))
			}
		})
		t.Run("lines logged inside a request name it, once", func(t *testing.T) {
			erin := env.Client("erin", "US")
			card := erin.Must(201, "POST", "/managed-cards/", map[string]any{"program": "usd_visa_virtual"}, "X-Request-Id", "trace-log-1").Str("reference")
			var attempt, access int
			for _, line := range strings.Split(env.Logs.String(), "\n") {
				if !strings.Contains(line, "trace-log-1") {
					continue
				}
				var rec map[string]any
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("%v: %s", err, line)
				}
				if strings.Count(line, `"request_id"`) != 1 || rec["request_id"] != "trace-log-1" {
					t.Fatalf("log line %s", line)
				}
				switch rec["msg"] {
				case "provider attempt":
					if rec["card"] == card {
						attempt++
					}
				case "request":
					access++
				}
			}
			if attempt != 1 || access != 1 {
				t.Fatalf("%d provider attempt lines and %d access lines name the request:\n%s", attempt, access, env.Logs.String())
			}
		})
		problems := []struct {
			name   string
			method string
			path   string
			body   any
			status int
			code   string
		}{
			{"malformed JSON is 400", "POST", "/managed-cards/", `{"program":`, 400, "malformed_request"},
			{"two JSON values are 400", "POST", "/managed-cards/", `{"program":"usd_visa_virtual"} {}`, 400, "malformed_request"},
			{"unknown field is 422", "POST", "/managed-cards/", `{"program":"usd_visa_virtual","status":"active"}`, 422, "validation_failed"},
			{"a field in another case is 422", "POST", "/managed-cards/", `{"PROGRAM":"usd_visa_virtual"}`, 422, "validation_failed"},
			{"a field named twice is 422", "POST", "/managed-cards/", `{"program":"usd_visa_virtual","program":"usd_visa_virtual"}`, 422, "validation_failed"},
			{"a field named twice in two cases is 422", "POST", "/managed-cards/", `{"program":"nope","Program":"usd_visa_virtual"}`, 422, "validation_failed"},
			{"a nested field in another case is 422", "POST", "/managed-cards/", `{"program":"usd_visa_virtual","spending_controls":{"Daily":5}}`, 422, "validation_failed"},
			{"a metadata key named twice is 422", "POST", "/managed-cards/", `{"program":"usd_visa_virtual","metadata":{"a":"1","a":"2"}}`, 422, "validation_failed"},
			{"wrong type is 422", "POST", "/managed-cards/", `{"program":7}`, 422, "validation_failed"},
			{"unknown program is 422", "POST", "/managed-cards/", `{"program":"nope"}`, 422, "validation_failed"},
			{"missing program is 422", "POST", "/managed-cards/", `{}`, 422, "validation_failed"},
			{"21 metadata keys are 422", "POST", "/managed-cards/", map[string]any{"program": "usd_visa_virtual", "metadata": manyKeys(21)}, 422, "validation_failed"},
			{"array body is 400", "POST", "/managed-cards/", `[1]`, 400, "malformed_request"},
			{"unknown card is 404", "GET", "/managed-cards/card_01m85pzhch41z3xs03np47j63w/", nil, 404, "not_found"},
			{"garbage reference is 404", "GET", "/managed-cards/../../etc/", nil, 404, "not_found"},
			{"unknown path is 404", "GET", "/nothing/", nil, 404, "not_found"},
			{"wrong method is 405", "DELETE", "/programs/", nil, 405, "method_not_allowed"},
			{"bad limit is 422", "GET", "/managed-cards/?limit=0", nil, 422, "validation_failed"},
			{"limit over 100 is 422", "GET", "/managed-cards/?limit=101", nil, 422, "validation_failed"},
			{"foreign cursor is 422", "GET", "/managed-cards/?cursor=auth_01m85pzhch41z3xs03np47j63w", nil, 422, "validation_failed"},
			{"unknown status filter is 422", "GET", "/managed-cards/?status=lost", nil, 422, "validation_failed"},
			{"oversized body is 413", "POST", "/managed-cards/", `{"program":"` + strings.Repeat("x", 70<<10) + `"}`, 413, "request_too_large"},
		}
		for _, tc := range problems {
			t.Run(tc.name, func(t *testing.T) {
				r := alice.Do(tc.method, tc.path, tc.body)
				if r.Status != tc.status || r.Code() != tc.code {
					t.Fatalf("status %d code %q, want %d %q: %s", r.Status, r.Code(), tc.status, tc.code, r.Body)
				}
				if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
					t.Fatalf("Content-Type %q", ct)
				}
				p := r.JSON()
				for _, f := range []string{"type", "title", "status", "detail", "code", "request_id"} {
					if _, ok := p[f]; !ok {
						t.Fatalf("problem lacks %q: %s", f, r.Body)
					}
				}
			})
		}
		t.Run("a 405 lists HEAD wherever GET is served", func(t *testing.T) {
			for path, want := range map[string]string{"/programs/": "GET, HEAD", "/managed-cards/card_01m85pzhch41z3xs03np47j63w/": "GET, HEAD, PATCH"} {
				r := alice.Do("PUT", path, nil)
				if r.Status != 405 || r.Header.Get("Allow") != want {
					t.Fatalf("PUT %s: %d, Allow %q, want %q", path, r.Status, r.Header.Get("Allow"), want)
				}
				if h := alice.Do("HEAD", path, nil); path == "/programs/" && h.Status != 200 {
					t.Fatalf("HEAD %s: %d", path, h.Status)
				}
			}
		})
		t.Run("JSON nested past the decoder's depth is 400 and says so", func(t *testing.T) {
			body := `{"program":"usd_visa_virtual","metadata":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`
			r := alice.Do("POST", "/managed-cards/", body)
			if r.Status != 400 || r.Code() != "malformed_request" || r.JSON()["detail"] != "The request body nests JSON too deeply." {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
		})
		t.Run("validation problems name the field", func(t *testing.T) {
			r := alice.Do("POST", "/managed-cards/", `{"program":"usd_visa_virtual","colour":"red"}`)
			errs, _ := r.JSON()["errors"].([]any)
			if len(errs) != 1 || errs[0].(map[string]any)["field"] != "colour" {
				t.Fatalf("errors = %v", r.JSON()["errors"])
			}
		})
		t.Run("nested problems name the field by its path", func(t *testing.T) {
			for body, field := range map[string]string{
				`{"program":"usd_visa_virtual","spending_controls":{"Daily":5}}`:  "spending_controls.Daily",
				`{"program":"usd_visa_virtual","spending_controls":{"weekly":5}}`: "spending_controls.weekly",
			} {
				r := alice.Do("POST", "/managed-cards/", body)
				errs, _ := r.JSON()["errors"].([]any)
				if r.Status != 422 || len(errs) != 1 || errs[0].(map[string]any)["field"] != field {
					t.Fatalf("%s: %d errors = %v, want the field %q", body, r.Status, r.JSON()["errors"], field)
				}
			}
		})
		t.Run("form-encoded bodies are refused", func(t *testing.T) {
			r := alice.Do("POST", "/managed-cards/", "program=usd_visa_virtual", "Content-Type", "application/x-www-form-urlencoded")
			if r.Status != 415 {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			for ct, want := range map[string]int{"application/json; charset=UTF-16": 415, "application/json;charset=latin1": 415, "application/json; charset=utf-8": 422, "application/json; charset=UTF8": 422} {
				// 422: the charset passes and the empty program is refused.
				if r := alice.Do("POST", "/managed-cards/", `{"program":""}`, "Content-Type", ct); r.Status != want {
					t.Fatalf("%s: status %d, want %d: %s", ct, r.Status, want, r.Body)
				}
			}
		})
		t.Run("a compressed body is refused, not read as JSON", func(t *testing.T) {
			for ce, want := range map[string]int{"gzip": 415, "br": 415, "identity": 422} {
				// 422: the body is read, and the empty program refused.
				if r := alice.Do("POST", "/managed-cards/", `{"program":""}`, "Content-Encoding", ce); r.Status != want {
					t.Fatalf("%s: status %d, want %d: %s", ce, r.Status, want, r.Body)
				}
			}
		})
		t.Run("a body that is not UTF-8 is refused, not repaired", func(t *testing.T) {
			r := alice.Do("POST", "/managed-cards/", "{\"program\":\"usd_visa_virtual\",\"nickname\":\"\xff\xfe\"}")
			if r.Status != 400 || r.Code() != "malformed_request" || !strings.Contains(r.Str("detail"), "UTF-8") {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
		})
		t.Run("a lone surrogate escape is refused, not repaired", func(t *testing.T) {
			r := alice.Do("POST", "/managed-cards/", `{"program":"usd_visa_virtual","nickname":"Sh\ud800op"}`)
			if r.Status != 400 || r.Code() != "malformed_request" || !strings.Contains(r.Str("detail"), `\ud800`) {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			// In a key too: refused as such, not as an unknown field.
			if r := alice.Do("POST", "/managed-cards/", `{"program":"usd_visa_virtual","metadata":{"k\udfff":"v"}}`); r.Status != 400 || !strings.Contains(r.Str("detail"), `\udfff`) {
				t.Fatalf("a lone surrogate in a key: %d %s", r.Status, r.Body)
			}
			ok := env.Client("sam", "US").Must(201, "POST", "/managed-cards/", `{"program":"usd_visa_virtual","nickname":"\ud83d\ude00"}`)
			if ok.Str("nickname") != "\U0001F600" {
				t.Fatalf("a surrogate pair decoded as %q", ok.Str("nickname"))
			}
		})
		t.Run("null is not a body, an amount or a metadata value", func(t *testing.T) {
			dana := env.Client("dana", "US")
			card := dana.FundedCard(1000)
			auth := dana.Must(201, "POST", "/managed-cards/"+card+"/authorize/", apptest.Purchase(300)).Str("reference")
			if r := dana.Do("POST", "/managed-cards/"+card+"/freeze/", "null"); r.Status != 400 || r.Code() != "malformed_request" {
				t.Fatalf("null body: %d %s", r.Status, r.Body)
			}
			// Left out, the amount means all of it; null must not.
			for _, tc := range []struct{ path, body, field string }{
				{"/authorizations/" + auth + "/settle/", `{"amount":null}`, "amount"},
				{"/authorizations/" + auth + "/reverse/", `{"amount": null}`, "amount"},
				{"/managed-cards/" + card + "/fund/", `{"amount":null}`, "amount"},
				{"/disputes/", `{"authorization":"` + auth + `","reason":"other","amount":null}`, "amount"},
				{"/managed-cards/", `{"program":"usd_visa_virtual","metadata":{"k":null}}`, "metadata.k"},
			} {
				r := dana.Do("POST", tc.path, tc.body)
				errs, _ := r.JSON()["errors"].([]any)
				if r.Status != 422 || len(errs) != 1 || errs[0].(map[string]any)["field"] != tc.field ||
					!strings.Contains(errs[0].(map[string]any)["message"].(string), "not null") {
					t.Fatalf("POST %s %s: %d %s, want 422 naming %s", tc.path, tc.body, r.Status, r.Body, tc.field)
				}
			}
			if r := dana.Must(200, "GET", "/authorizations/"+auth+"/", nil); r.Str("status") != "pending" || r.Int("held_amount") != 300 {
				t.Fatalf("after the refused requests: %s", r.Body)
			}
			// In a PATCH a null field is one left out, as documented; a
			// metadata value is still a string ("" removes the key).
			if r := dana.Do("PATCH", "/managed-cards/"+card+"/", `{"metadata":{"k":null}}`); r.Status != 422 || !strings.Contains(string(r.Body), `"field":"metadata.k"`) {
				t.Fatalf("PATCH with a null metadata value: %d %s", r.Status, r.Body)
			}
			dana.Must(200, "PATCH", "/managed-cards/"+card+"/", `{"nickname":null,"metadata":null,"spending_controls":{"daily":null}}`)
		})
		t.Run("an empty currency is not one left out", func(t *testing.T) {
			fay := env.Client("fay", "US")
			card := fay.FundedCard(1000)
			// Withdraw first: the funded card took the whole wallet.
			for _, path := range []string{"/managed-cards/" + card + "/withdraw/", "/managed-cards/" + card + "/fund/"} {
				r := fay.Do("POST", path, `{"amount":1,"currency":""}`)
				if r.Status != 422 || !strings.Contains(string(r.Body), `"field":"currency"`) {
					t.Fatalf("POST %s with currency \"\": %d %s", path, r.Status, r.Body)
				}
				fay.Must(200, "POST", path, `{"amount":1,"currency":null}`)
			}
			if r := fay.Do("GET", "/disputes/?authorization=not-an-auth", nil); r.Status != 422 || !strings.Contains(string(r.Body), `"field":"authorization"`) {
				t.Fatalf("GET /disputes/?authorization=not-an-auth: %d %s", r.Status, r.Body)
			}
		})
		t.Run("no request left a partial write", func(t *testing.T) {
			page := alice.Must(200, "GET", "/managed-cards/?limit=100", nil).JSON()
			if n := len(page["data"].([]any)); n != 1 {
				t.Fatalf("alice has %d cards, want 1", n)
			}
		})
	})
}

func manyKeys(n int) map[string]string {
	m := map[string]string{}
	for i := range n {
		m[fmt.Sprintf("k%d", i)] = "v"
	}
	return m
}

func TestAuthentication(t *testing.T) {
	env := apptest.New(t, testdb.URL(t, "sqlite"))
	now := time.Now()
	sign := func(method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
		tok, err := jwt.NewWithClaims(method, claims).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := jwt.MapClaims{"sub": "alice", "country": "US", "exp": now.Add(time.Hour).Unix()}
	expired := jwt.MapClaims{"sub": "alice", "exp": now.Add(-2 * time.Minute).Unix()}
	noExp := jwt.MapClaims{"sub": "alice"}
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, good).SignedString(jwt.UnsafeAllowNoneSignatureType)
	cases := []struct {
		name   string
		header string
		status int
	}{
		{"valid sandbox token", "Bearer " + sign(jwt.SigningMethodHS256, env.App.SandboxSecret, good), 200},
		{"no header", "", 401},
		{"not bearer", "Basic YWxpY2U6cHc=", 401},
		{"garbage token", "Bearer not.a.jwt", 401},
		{"forged with another secret", "Bearer " + sign(jwt.SigningMethodHS256, []byte("guess"), good), 401},
		{"expired", "Bearer " + sign(jwt.SigningMethodHS256, env.App.SandboxSecret, expired), 401},
		{"no exp", "Bearer " + sign(jwt.SigningMethodHS256, env.App.SandboxSecret, noExp), 401},
		{"alg none", "Bearer " + none, 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := env.WithToken("")
			var r *apptest.Response
			if tc.header == "" {
				r = c.Do("GET", "/programs/", nil)
			} else {
				r = c.Do("GET", "/programs/", nil, "Authorization", tc.header)
			}
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			if tc.status == 401 && (r.Code() != "unauthenticated" || r.Header.Get("WWW-Authenticate") == "") {
				t.Fatalf("401 without code or WWW-Authenticate: %s", r.Body)
			}
		})
	}
}

// prodProvider is a production issuing partner for tests: Cardrail ships no
// real partner adapter, so the production path is exercised with this one.
type prodProvider struct{ *sandbox.Adapter }

func (prodProvider) Sandbox() bool { return false }

// productionEnv starts an app with production tokens verified by an RSA key,
// a production program open in NG routed to a registered production partner,
// and returns a function minting production tokens.
func productionEnv(t *testing.T, url string) (*apptest.Env, func(sub, country, kyc string, roles ...string) string) {
	env, sign := apptest.NewProduction(t, url)
	env.App.Registry.Register(prodProvider{sandbox.New(sandbox.Config{Name: "partner_ng", Countries: []string{"NG"}, Currencies: []string{"NGN", "USD"}, Secret: []byte("x")})})
	ctx := context.Background()
	err := env.App.Store.Tx(ctx, func(tx cardrail.Tx) error {
		for _, p := range []cardrail.Program{
			{Code: "ngn_live", Name: "NGN Live", Brand: "verve", CardType: "virtual", Currency: "NGN", Markets: []string{"NG"},
				Status: cardrail.ProgramEnabled, Providers: []string{"partner_ng"}, Livemode: true},
			{Code: "usd_live", Name: "USD Live", Brand: "visa", CardType: "virtual", Currency: "USD", Markets: []string{"NG", "GB"},
				Status: cardrail.ProgramEnabled, Providers: []string{"partner_ng"}, Livemode: true},
		} {
			if err := tx.SaveProgram(ctx, &p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mint := func(sub, country, kyc string, roles ...string) string {
		claims := jwt.MapClaims{"sub": sub, "country": country, "kyc": kyc}
		if len(roles) > 0 {
			claims["roles"] = roles
		}
		return sign(claims)
	}
	return env, mint
}

func TestModesAndProductionGating(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env, mint := productionEnv(t, url)
		sandboxAlice := env.Client("alice", "NG")
		liveAlice := env.WithToken(mint("alice", "NG", "verified"))

		sandboxCard := sandboxAlice.NewCard("ngn_verve_virtual")
		t.Run("production sees only production programs", func(t *testing.T) {
			page := liveAlice.Must(200, "GET", "/programs/", nil).JSON()
			var codes []string
			for _, p := range page["data"].([]any) {
				codes = append(codes, p.(map[string]any)["code"].(string))
				if p.(map[string]any)["livemode"] != true {
					t.Fatalf("livemode false in production list: %v", p)
				}
			}
			slices.Sort(codes)
			if strings.Join(codes, ",") != "ngn_live,usd_live" {
				t.Fatalf("codes %v", codes)
			}
		})
		liveCard := liveAlice.Must(201, "POST", "/managed-cards/", map[string]any{"program": "ngn_live"})
		t.Run("a verified production card is live", func(t *testing.T) {
			if liveCard.JSON()["livemode"] != true || liveCard.Str("provider") != "partner_ng" || liveCard.Str("status") != "active" {
				t.Fatalf("card %s", liveCard.Body)
			}
		})
		t.Run("objects of one mode are invisible in the other", func(t *testing.T) {
			liveAlice.Must(404, "GET", "/managed-cards/"+sandboxCard+"/", nil)
			sandboxAlice.Must(404, "GET", "/managed-cards/"+liveCard.Str("reference")+"/", nil)
			list := liveAlice.Must(200, "GET", "/managed-cards/", nil).JSON()["data"].([]any)
			if len(list) != 1 {
				t.Fatalf("production list has %d cards", len(list))
			}
		})
		gating := []struct {
			name    string
			token   string
			program string
			status  int
			code    string
		}{
			{"unverified caller", mint("bob", "NG", ""), "ngn_live", 403, "verification_required"},
			{"country not activated", mint("carol", "KE", "verified"), "ngn_live", 403, "country_not_activated"},
			{"no provider supports the country", mint("dave", "GB", "verified"), "usd_live", 403, "provider_unsupported"},
			{"production's copy of the catalogue starts disabled", mint("erin", "NG", "verified"), "usd_visa_virtual", 409, "program_disabled"},
			{"a program production does not have", mint("erin", "NG", "verified"), "sandbox_only_code", 422, "validation_failed"},
		}
		for _, tc := range gating {
			t.Run(tc.name, func(t *testing.T) {
				r := env.WithToken(tc.token).Do("POST", "/managed-cards/", map[string]any{"program": tc.program})
				if r.Status != tc.status || r.Code() != tc.code {
					t.Fatalf("status %d code %q, want %d %q: %s", r.Status, r.Code(), tc.status, tc.code, r.Body)
				}
			})
		}
		t.Run("an operator opens the catalogue in production up to the partner", func(t *testing.T) {
			ops := env.WithToken(mint("jane", "US", "verified", "ops"))
			frank := env.WithToken(mint("frank", "US", "verified"))
			frank.Must(409, "POST", "/managed-cards/", map[string]any{"program": "usd_visa_virtual"})
			ops.Must(200, "POST", "/ops/programs/usd_visa_virtual/enable/", nil)
			if r := frank.Do("POST", "/managed-cards/", map[string]any{"program": "usd_visa_virtual"}); r.Status != 403 || r.Code() != "country_not_activated" {
				t.Fatalf("enabled, no market: %d %s", r.Status, r.Body)
			}
			ops.Must(200, "POST", "/ops/programs/usd_visa_virtual/countries/", map[string]any{"activate": []string{"US"}})
			var listed map[string]any
			for _, p := range frank.Must(200, "GET", "/programs/", nil).JSON()["data"].([]any) {
				if p.(map[string]any)["code"] == "usd_visa_virtual" {
					listed = p.(map[string]any)
				}
			}
			if listed == nil || listed["livemode"] != true || len(listed["providers"].([]any)) != 0 {
				t.Fatalf("production usd_visa_virtual listed as %v", listed)
			}
			// No production partner ships, so issuing stops at routing.
			if r := frank.Do("POST", "/managed-cards/", map[string]any{"program": "usd_visa_virtual"}); r.Status != 403 || r.Code() != "provider_unsupported" {
				t.Fatalf("no partner: %d %s", r.Status, r.Body)
			}
			// The sandbox partners are not production's to switch.
			ops.Must(404, "POST", "/ops/providers/sandbox_alpha/enable/", nil)
			if r := ops.Do("POST", "/ops/programs/usd_visa_virtual/providers/", map[string]any{"providers": []string{"sandbox_alpha"}}); r.Status != 422 ||
				!strings.Contains(r.Str("detail"), `no issuing partner named "sandbox_alpha" serves production`) {
				t.Fatalf("production routed to a sandbox partner: %d %s", r.Status, r.Body)
			}
			ops.Must(200, "POST", "/ops/providers/partner_ng/disable/", nil)
			ops.Must(200, "POST", "/ops/providers/partner_ng/enable/", nil)
			// Nor to script, nor to list: production's partners are the
			// ones its programs route to.
			if r := ops.Do("POST", "/ops/providers/sandbox_alpha/simulate/", map[string]any{"outcome": "error"}); r.Status != 403 || r.Code() != "sandbox_only" {
				t.Fatalf("production scripted a partner: %d %s", r.Status, r.Body)
			}
			for _, p := range ops.Must(200, "GET", "/ops/providers/", nil).JSON()["data"].([]any) {
				if p := p.(map[string]any); p["livemode"] != true || strings.HasPrefix(p["name"].(string), "sandbox_") {
					t.Fatalf("production lists the partner %v", p)
				}
			}
			// The catalogue operators open holds the disabled programs too.
			if p := ops.Must(200, "GET", "/ops/programs/ngn_verve_virtual/", nil); p.Str("status") != "disabled" || p.JSON()["livemode"] != true {
				t.Fatalf("production's disabled program: %s", p.Body)
			}
		})
		t.Run("an operator's verification overrides the token", func(t *testing.T) {
			ctx := context.Background()
			if err := env.App.Store.Tx(ctx, func(tx cardrail.Tx) error {
				return tx.SetCardholder(ctx, &cardrail.Cardholder{Subject: "bob", KYC: "verified", Livemode: true, UpdatedAt: time.Now()})
			}); err != nil {
				t.Fatal(err)
			}
			env.WithToken(mint("bob", "NG", "")).Must(201, "POST", "/managed-cards/", map[string]any{"program": "ngn_live"})
		})
		t.Run("an operator's verdict overrides the token until it is cleared", func(t *testing.T) {
			ops := env.WithToken(mint("jane", "US", "verified", "ops"))
			carol := env.WithToken(mint("carol", "NG", "verified"))
			ops.Must(200, "POST", "/ops/cardholders/carol/verification/", map[string]any{"kyc": "rejected"})
			if r := carol.Do("POST", "/managed-cards/", map[string]any{"program": "ngn_live"}); r.Status != 403 || r.Code() != "verification_required" {
				t.Fatalf("rejected by an operator: %d %s", r.Status, r.Body)
			}
			cleared := ops.Must(200, "DELETE", "/ops/cardholders/carol/verification/", nil)
			if v, ok := cleared.JSON()["kyc"]; !ok || v != nil || cleared.JSON()["deleted"] != true || cleared.JSON()["livemode"] != true {
				t.Fatalf("cleared: %s", cleared.Body)
			}
			carol.Must(201, "POST", "/managed-cards/", map[string]any{"program": "ngn_live"})
			ops.Must(404, "DELETE", "/ops/cardholders/carol/verification/", nil)
			var found bool
			for _, rec := range ops.Must(200, "GET", "/ops/audit-log/", nil).JSON()["data"].([]any) {
				rec := rec.(map[string]any)
				if rec["action"] == "cardholder.verification_cleared" && rec["target"] == "carol" {
					found = rec["before"].(map[string]any)["kyc"] == "rejected" && rec["after"] == nil
				}
			}
			if !found {
				t.Fatal("no cardholder.verification_cleared audit record with the verdict before and nothing after")
			}
		})
		t.Run("card details are never revealed in production", func(t *testing.T) {
			r := liveAlice.Do("GET", "/managed-cards/"+liveCard.Str("reference")+"/details/", nil)
			if r.Status != 403 || r.Code() != "sandbox_only" {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
		})
		t.Run("cardholders cannot send network events in production", func(t *testing.T) {
			liveRef := liveCard.Str("reference")
			ctx := context.Background()
			if _, err := env.App.Service.Deposit(ctx, cardrail.Caller{Subject: "alice", Livemode: true}, "alice", 1000, "NGN"); err != nil {
				t.Fatal(err)
			}
			liveAlice.Must(200, "POST", "/managed-cards/"+liveRef+"/fund/", map[string]any{"amount": 1000})
			auth := liveAlice.Must(201, "POST", "/managed-cards/"+liveRef+"/authorize/", map[string]any{"amount": 100, "currency": "NGN",
				"merchant": map[string]any{"name": "Shop", "mcc": "5411", "country": "NG"}})
			r := liveAlice.Do("POST", "/authorizations/"+auth.Str("reference")+"/settle/", nil)
			if r.Status != 403 || r.Code() != "forbidden" {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
			if r := liveAlice.Do("POST", "/sandbox/wallets/deposit/", map[string]any{"amount": 1, "currency": "NGN"}); r.Status != 403 || r.Code() != "sandbox_only" {
				t.Fatalf("deposit in production: %d %s", r.Status, r.Body)
			}
		})
	})
}

func TestPrograms(t *testing.T) {
	env := apptest.New(t, testdb.URL(t, "sqlite"))
	cases := []struct {
		country string
		want    string
	}{
		{"US", "usd_visa_virtual"},
		{"NG", "ngn_verve_virtual,usd_visa_virtual"},
		{"KE", "kes_mastercard_virtual,usd_visa_virtual"},
		{"FR", ""},
	}
	for _, tc := range cases {
		t.Run("market "+tc.country, func(t *testing.T) {
			var page struct {
				Data []cardrail.Program `json:"data"`
			}
			if err := env.Client("u", tc.country).Must(200, "GET", "/programs/", nil).Decode(&page); err != nil {
				t.Fatal(err)
			}
			var codes []string
			for _, p := range page.Data {
				codes = append(codes, p.Code)
				if len(p.Providers) < 2 {
					t.Fatalf("program %s routes to %v, want at least two providers", p.Code, p.Providers)
				}
			}
			if got := strings.Join(codes, ","); got != tc.want {
				t.Fatalf("programs %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("a program outside the caller's market is not found", func(t *testing.T) {
		us := env.Client("u", "US")
		us.Must(200, "GET", "/programs/usd_visa_virtual/", nil)
		us.Must(404, "GET", "/programs/ngn_verve_virtual/", nil)
		r := us.Do("POST", "/managed-cards/", map[string]any{"program": "ngn_verve_virtual"})
		if r.Status != 403 || r.Code() != "country_not_activated" {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
}

func TestRoutingAndFailover(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		alice := env.Client("alice", "US")
		alpha, beta := env.App.Sandbox["sandbox_alpha"], env.App.Sandbox["sandbox_beta"]
		reset := func() {
			alpha.SetFailure(sandbox.FailNone, 0)
			beta.SetFailure(sandbox.FailNone, 0)
		}
		t.Run("the first healthy provider issues", func(t *testing.T) {
			if p := alice.Must(201, "POST", "/managed-cards/", map[string]any{"program": "usd_visa_virtual"}).Str("provider"); p != "sandbox_alpha" {
				t.Fatalf("provider %q", p)
			}
		})
		t.Run("an erroring provider fails over to the next", func(t *testing.T) {
			defer reset()
			alpha.SetFailure(sandbox.FailError, 0)
			before := beta.Calls()
			r := alice.Must(201, "POST", "/managed-cards/", map[string]any{"program": "usd_visa_virtual"})
			if r.Str("provider") != "sandbox_beta" || r.Str("status") != "active" || beta.Calls() != before+1 {
				t.Fatalf("card %s", r.Body)
			}
			// The log says why alpha was passed over.
			var found bool
			for _, line := range strings.Split(env.Logs.String(), "\n") {
				if strings.Contains(line, `"msg":"provider attempt"`) && strings.Contains(line, r.Str("reference")) &&
					strings.Contains(line, `"provider":"sandbox_alpha"`) {
					found = strings.Contains(line, `"level":"WARN"`) && strings.Contains(line, `"error":`)
				}
			}
			if !found {
				t.Fatalf("no warning with the reason for alpha's failure:\n%s", env.Logs.String())
			}
		})
		t.Run("every provider failing leaves a failed card with a reason", func(t *testing.T) {
			defer reset()
			alpha.SetFailure(sandbox.FailError, 0)
			beta.SetFailure(sandbox.FailError, 0)
			r := alice.Must(201, "POST", "/managed-cards/", map[string]any{"program": "usd_visa_virtual"})
			if r.Str("status") != "failed" || !strings.Contains(r.Str("status_reason"), "sandbox_beta") || r.JSON()["last4"] != nil {
				t.Fatalf("card %s", r.Body)
			}
			if got := alice.Do("POST", "/managed-cards/"+r.Str("reference")+"/freeze/", nil); got.Code() != "invalid_card_state" {
				t.Fatalf("freeze failed card: %s", got.Body)
			}
		})
		t.Run("a provider held for review gives an under_review card", func(t *testing.T) {
			defer reset()
			env.App.Sandbox["sandbox_beta"].SetFailure(sandbox.FailNone, 0)
			alpha.SetFailure(sandbox.FailReview, 0)
			if s := alice.Must(201, "POST", "/managed-cards/", map[string]any{"program": "usd_visa_virtual"}).Str("status"); s != "under_review" {
				t.Fatalf("status %q", s)
			}
		})
		t.Run("disabled providers are skipped; all disabled is 503 and no card", func(t *testing.T) {
			ctx := context.Background()
			set := func(name string, on bool) {
				if err := env.App.Store.Tx(ctx, func(tx cardrail.Tx) error {
					return tx.SetProviderState(ctx, cardrail.ProviderState{Name: name, Enabled: on})
				}); err != nil {
					t.Fatal(err)
				}
			}
			set("sandbox_alpha", false)
			if p := alice.Must(201, "POST", "/managed-cards/", map[string]any{"program": "usd_visa_virtual"}).Str("provider"); p != "sandbox_beta" {
				t.Fatalf("provider %q", p)
			}
			set("sandbox_beta", false)
			before := len(alice.Must(200, "GET", "/managed-cards/?limit=100", nil).JSON()["data"].([]any))
			r := alice.Do("POST", "/managed-cards/", map[string]any{"program": "usd_visa_virtual"})
			if r.Status != 503 || r.Code() != "provider_unavailable" {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
			after := len(alice.Must(200, "GET", "/managed-cards/?limit=100", nil).JSON()["data"].([]any))
			if after != before {
				t.Fatalf("a card was written: %d → %d", before, after)
			}
			set("sandbox_alpha", true)
			set("sandbox_beta", true)
		})
	})
}

func TestTimeoutFailover(t *testing.T) {
	env := apptest.New(t, testdb.URL(t, "sqlite"))
	// Shorten the router's attempt timeout by timing out the first partner
	// through its context: the sandbox blocks until the router gives up.
	alpha := env.App.Sandbox["sandbox_alpha"]
	alpha.SetFailure(sandbox.FailTimeout, 0)
	defer alpha.SetFailure(sandbox.FailNone, 0)
	start := time.Now()
	r := env.Client("alice", "US").Must(201, "POST", "/managed-cards/", map[string]any{"program": "usd_visa_virtual"})
	if r.Str("provider") != "sandbox_beta" {
		t.Fatalf("card %s", r.Body)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("failover took %v", d)
	}
}

// TestRetriedCreationGetsThePartnersCard: a card creation that failed after
// the partner issued (here the client gave up on a slow partner, which
// ends the request) is retried with its Idempotency-Key. The retry must
// ask the partner with the same key and get the card it already issued,
// not have it issue a second one.
func TestRetriedCreationGetsThePartnersCard(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		alice := env.Client("alice", "US")
		alpha := env.App.Sandbox["sandbox_alpha"]
		body := `{"program":"usd_visa_virtual"}`
		issued := alpha.Issued()

		alpha.SetFailure(sandbox.FailNone, time.Minute)
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		req, _ := http.NewRequestWithContext(ctx, "POST", env.Server.URL+"/cards/api/v1/managed-cards/", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+alice.Token)
		req.Header.Set("Idempotency-Key", "create-once")
		if res, err := env.Server.Client().Do(req); err == nil {
			res.Body.Close()
			t.Fatalf("the first try answered %d; it should still be waiting on the partner", res.StatusCode)
		}
		cancel()
		alpha.SetFailure(sandbox.FailNone, 0)
		if alpha.Issued() != issued+1 {
			t.Fatalf("the partner issued %d cards on the first try", alpha.Issued()-issued)
		}

		// The first try ends once the server sees the client gone.
		var r *apptest.Response
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			r = alice.Do("POST", "/managed-cards/", body, "Idempotency-Key", "create-once")
			if r.Code() != "idempotency_request_in_progress" || time.Now().After(deadline) {
				break
			}
		}
		if r.Status != 201 || r.Str("provider") != "sandbox_alpha" || r.Str("status") != "active" {
			t.Fatalf("retry: %d %s", r.Status, r.Body)
		}
		if n := alpha.Issued() - issued; n != 1 {
			t.Fatalf("the partner holds %d cards for one request", n)
		}
		// The retry keeps the first try's reference, and so its place in
		// the list: created_at is when the first try minted it, before
		// the client gave up on it 300 ms after it started.
		if created, err := time.Parse(time.RFC3339Nano, r.Str("created_at")); err != nil || created.Before(start.Truncate(time.Millisecond)) || !created.Before(start.Add(300*time.Millisecond)) {
			t.Fatalf("retry: created_at %s, want the first try's time, within 300 ms of %s", r.Str("created_at"), start.Format(time.RFC3339Nano))
		}
		if again := alice.Must(201, "POST", "/managed-cards/", body, "Idempotency-Key", "create-once"); again.Header.Get("Idempotent-Replayed") != "true" ||
			again.Str("reference") != r.Str("reference") {
			t.Fatalf("replay: %s", again.Body)
		}
		// A new key is a new card.
		alice.Must(201, "POST", "/managed-cards/", body, "Idempotency-Key", "create-twice")
		if n := alpha.Issued() - issued; n != 2 {
			t.Fatalf("the partner holds %d cards for two requests", n)
		}
	})
}

// TestShortListsPage: the lists the service keeps whole (programs,
// wallets, webhook endpoints) answer newest first and page like the rest.
func TestShortListsPage(t *testing.T) {
	env := apptest.New(t, testdb.URL(t, "sqlite"))
	alice := env.Client("alice", "US")
	for _, cur := range []string{"USD", "EUR", "JPY"} {
		alice.Must(200, "POST", "/sandbox/wallets/deposit/", map[string]any{"amount": 100, "currency": cur})
	}
	currencies := func(page map[string]any) (out []string) {
		for _, w := range page["data"].([]any) {
			out = append(out, w.(map[string]any)["currency"].(string))
		}
		return out
	}
	all := alice.Must(200, "GET", "/wallets/", nil).JSON()
	if got := strings.Join(currencies(all), ","); got != "JPY,EUR,USD" || all["has_more"] != false || all["next_cursor"] != nil {
		t.Fatalf("wallets %s has_more %v next_cursor %v, want JPY,EUR,USD on one page", got, all["has_more"], all["next_cursor"])
	}
	first := alice.Must(200, "GET", "/wallets/?limit=2", nil).JSON()
	cursor, _ := first["next_cursor"].(string)
	if got := strings.Join(currencies(first), ","); got != "JPY,EUR" || first["has_more"] != true || cursor == "" {
		t.Fatalf("first page %s has_more %v next_cursor %v", got, first["has_more"], first["next_cursor"])
	}
	second := alice.Must(200, "GET", "/wallets/?limit=2&cursor="+cursor, nil).JSON()
	if got := strings.Join(currencies(second), ","); got != "USD" || second["has_more"] != false || second["next_cursor"] != nil {
		t.Fatalf("second page %s has_more %v next_cursor %v", got, second["has_more"], second["next_cursor"])
	}
	// Programs page one at a time to the same list as one page (two are
	// open in NG).
	ada := env.Client("ada", "NG")
	var whole, paged []string
	for _, p := range ada.Must(200, "GET", "/programs/?limit=100", nil).JSON()["data"].([]any) {
		whole = append(whole, p.(map[string]any)["code"].(string))
	}
	for path := "/programs/?limit=1"; path != ""; {
		page := ada.Must(200, "GET", path, nil).JSON()
		for _, p := range page["data"].([]any) {
			paged = append(paged, p.(map[string]any)["code"].(string))
		}
		path = ""
		if next, ok := page["next_cursor"].(string); ok {
			path = "/programs/?limit=1&cursor=" + next
		}
	}
	if len(whole) < 2 || !slices.Equal(whole, paged) {
		t.Fatalf("programs one by one %v, in one page %v", paged, whole)
	}
	// A cursor outlives its item: the walk goes on from where a program
	// disabled since, or an endpoint deleted since, stood.
	ops := env.Client("ops-1", "US", "ops")
	ops.Must(200, "POST", "/ops/programs/"+whole[0]+"/disable/", nil)
	if got := ada.Must(200, "GET", "/programs/?cursor="+whole[0], nil).JSON()["data"].([]any); len(got) != len(whole)-1 ||
		got[0].(map[string]any)["code"] != whole[1] {
		t.Fatalf("programs after %s, disabled since: %v, want %v", whole[0], got, whole[1:])
	}
	var endpoints []string
	for range 3 {
		endpoints = append(endpoints, ops.Must(201, "POST", "/ops/webhook-endpoints/", map[string]any{"url": "http://127.0.0.1:9/hooks", "events": []string{"*"}}).Str("reference"))
	}
	if next := ops.Must(200, "GET", "/ops/webhook-endpoints/?limit=2", nil).Str("next_cursor"); next != endpoints[1] {
		t.Fatalf("next_cursor %q, want %s", next, endpoints[1])
	}
	ops.Must(200, "DELETE", "/ops/webhook-endpoints/"+endpoints[1]+"/", nil)
	if got := ops.Must(200, "GET", "/ops/webhook-endpoints/?limit=2&cursor="+endpoints[1], nil).JSON()["data"].([]any); len(got) != 1 ||
		got[0].(map[string]any)["reference"] != endpoints[0] {
		t.Fatalf("endpoints after %s, deleted since: %v, want %s", endpoints[1], got, endpoints[0])
	}
	for _, path := range []string{"/programs/?limit=0", "/programs/?limit=101", "/programs/?cursor=no_such_program", "/wallets/?limit=0", "/wallets/?cursor=wal_nope",
		"/ops/webhook-endpoints/?limit=0", "/ops/programs/?cursor=no_such_program",
		// An empty value is refused, not taken as absent (which would
		// answer the whole list to a filter).
		"/programs/?limit=", "/wallets/?cursor=", "/managed-cards/?status=", "/authorizations/?card=", "/ops/events/?type=",
		// A filter that is no reference of its type.
		"/authorizations/?card=card_" + strings.Repeat("Z", 26), "/disputes/?authorization=auth_" + strings.Repeat("!", 26),
		"/ops/events/?object=nonsense", "/ops/events/?object=we_" + strings.Repeat("0", 26)} {
		c := alice
		if strings.HasPrefix(path, "/ops/") {
			c = ops
		}
		if r := c.Do("GET", path, nil); r.Status != 422 || r.Code() != "validation_failed" {
			t.Errorf("GET %s: %d %q, want 422 validation_failed", path, r.Status, r.Code())
		}
	}
}

// A PATCH that changes nothing writes nothing and tells no subscriber; an
// empty allow-list, which would decline everything, is refused.
func TestUpdateCardOnlyWhenChanged(t *testing.T) {
	env := apptest.New(t, testdb.URL(t, "sqlite"))
	alice := env.Client("alice", "US")
	ops := env.Client("root", "US", "ops")
	card := alice.NewCard("usd_visa_virtual")
	updates := func() int {
		return len(ops.Must(200, "GET", "/ops/events/?type=card.updated&object="+card, nil).JSON()["data"].([]any))
	}
	first := alice.Must(200, "PATCH", "/managed-cards/"+card+"/", map[string]any{"nickname": "travel", "metadata": map[string]string{"k": "v"},
		"spending_controls": map[string]any{"blocked_mccs": []string{"7995"}}})
	if n := updates(); n != 1 {
		t.Fatalf("%d card.updated after a change, want 1", n)
	}
	for _, body := range []map[string]any{
		{},
		{"nickname": "travel"},
		{"metadata": map[string]string{"k": "v"}},
		{"metadata": map[string]string{"gone": ""}},
		{"spending_controls": map[string]any{"blocked_mccs": []string{"7995"}}},
	} {
		r := alice.Must(200, "PATCH", "/managed-cards/"+card+"/", body)
		if r.Str("updated_at") != first.Str("updated_at") {
			t.Errorf("PATCH %v moved updated_at", body)
		}
	}
	if n := updates(); n != 1 {
		t.Fatalf("%d card.updated after no-op PATCHes, want 1", n)
	}
	alice.Must(200, "PATCH", "/managed-cards/"+card+"/", map[string]any{"nickname": ""})
	if n := updates(); n != 2 {
		t.Fatalf("%d card.updated after clearing the nickname, want 2", n)
	}
	// An empty block-list means what one left out means, and reads back
	// the same way.
	for _, list := range []string{"blocked_mccs", "blocked_countries"} {
		r := alice.Must(200, "PATCH", "/managed-cards/"+card+"/", map[string]any{"spending_controls": map[string]any{list: []string{}}})
		if v, ok := r.JSON()["spending_controls"].(map[string]any)[list]; !ok || v != nil {
			t.Errorf("empty %s reads back as %v", list, v)
		}
	}
	if r := alice.Do("PATCH", "/managed-cards/"+card+"/", `{"spending_controls":{"blocked_mccs":["7995","7995"]}}`); r.Status != 422 || !strings.Contains(string(r.Body), `"field":"spending_controls.blocked_mccs[1]"`) {
		t.Errorf("a repeated MCC: %d %s", r.Status, r.Body)
	}
	for _, list := range []string{"allowed_mccs", "allowed_countries"} {
		r := alice.Do("PATCH", "/managed-cards/"+card+"/", map[string]any{"spending_controls": map[string]any{list: []string{}}})
		if r.Status != 422 || !strings.Contains(string(r.Body), `"field":"spending_controls.`+list+`"`) {
			t.Errorf("empty %s: %d %s", list, r.Status, r.Body)
		}
	}
}
