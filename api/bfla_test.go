package api

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/cardrail/cardrail"
)

// stubVerifier accepts the token "ops" as an operator and anything else as
// a cardholder.
type stubVerifier struct{}

func (stubVerifier) Verify(tok string) (cardrail.Caller, error) {
	if tok == "ops" {
		return cardrail.Caller{Subject: "op", Roles: []string{cardrail.RoleOps}}, nil
	}
	return cardrail.Caller{Subject: "mallory", Country: "US", Roles: []string{"support", "admin"}}, nil
}

// TestOperatorRoutesRefuseCardholders walks the route table, so a new
// operator route cannot escape the check: every one of them, whatever the
// method, answers 403 to a token without the ops role — before any handler
// runs (the server here has no service at all; reaching one would panic).
func TestOperatorRoutesRefuseCardholders(t *testing.T) {
	s := New(nil, stubVerifier{}, nil, Config{}, discardLogger())
	param := regexp.MustCompile(`\{[^}]+\}`)
	n := 0
	for _, rt := range routes() {
		if rt.Access != operator {
			if strings.HasPrefix(rt.Path, "/ops/") {
				t.Errorf("%s %s is under /ops/ but not operator-only", rt.Method, rt.Path)
			}
			continue
		}
		n++
		path := BasePath + param.ReplaceAllString(rt.Path, "x_01m85pzhch41z3xs03np47j63w")
		t.Run(rt.Method+" "+rt.Path, func(t *testing.T) {
			for _, variant := range []string{path, strings.TrimSuffix(path, "/")} {
				req := httptest.NewRequest(rt.Method, variant, strings.NewReader(`{}`))
				req.Header.Set("Authorization", "Bearer cardholder")
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Idempotency-Key", "k")
				w := httptest.NewRecorder()
				s.ServeHTTP(w, req)
				if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), `"code":"forbidden"`) {
					t.Fatalf("%s %s: %d %s", rt.Method, variant, w.Code, w.Body)
				}
			}
		})
	}
	if n < 20 {
		t.Fatalf("only %d operator routes in the table", n)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
