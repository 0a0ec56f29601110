package apptest

import (
	"net/http"
	"strings"
	"testing"
)

// The check every Client.Do runs must catch what it exists for: the
// provider list's items once lacked "object", which the reference
// requires.
func TestContractCatchesDrift(t *testing.T) {
	k, err := loadContract()
	if err != nil {
		t.Fatal(err)
	}
	answer := func(status int, contentType string) *http.Response {
		return &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {contentType}}}
	}
	item := `{"name":"sandbox_alpha","enabled":true,"livemode":false,"circuit":"closed"}`
	list := func(item string) []byte {
		return []byte(`{"object":"list","data":[` + item + `],"has_more":false,"next_cursor":null}`)
	}
	wallet := `{"object":"wallet","reference":"wal_01jd7x3k9q2m4n8p6r5s1t0v2w","currency":"USD","balance":{"available":5000},"livemode":false,"created_at":"2026-11-25T04:47:24Z"}`
	events := func(object string) []byte {
		return []byte(`{"object":"list","data":[{"id":"evt_01jd7x3k9q2m4n8p6r5s1t0v2w","object":"event","type":"wallet.credited",` +
			`"created_at":"2026-11-25T04:47:24Z","livemode":false,"data":{"object":` + object + `}}],"has_more":false,"next_cursor":null}`)
	}
	for _, c := range []struct {
		name, method, path string
		res                *http.Response
		body               []byte
		want               string // "" for no departure
	}{
		{"typed items pass", "GET", "/ops/providers/", answer(200, "application/json"),
			list(`{"object":"provider",` + item[1:]), ""},
		{"an item without object fails", "GET", "/ops/providers/", answer(200, "application/json"),
			list(item), "departs from the reference"},
		{"an undocumented field fails", "GET", "/ops/providers/", answer(200, "application/json"),
			list(`{"object":"provider","extra":1,` + item[1:]), "departs from the reference"},
		{"a status the operation does not list fails", "GET", "/ops/providers/", answer(404, "application/problem+json"),
			[]byte(`{}`), "not among the reference's answers"},
		{"a problem is checked against the shared answer", "GET", "/managed-cards/card_01jd7x3k9q2m4n8p6r5s1t0v2w/", answer(404, "application/problem+json"),
			[]byte(`{"type":"https://cardrail.dev/problems/not_found","title":"Not Found","status":404}`), "departs from the reference"},
		{"the query string is not part of the path", "GET", "/ops/providers/?limit=2", answer(200, "application/json"),
			list(`{"object":"provider",` + item[1:]), ""},
		{"an event carries its object whole", "GET", "/ops/events/", answer(200, "application/json"),
			events(wallet), ""},
		{"an event's object is held to its schema", "GET", "/ops/events/", answer(200, "application/json"),
			events(`{"owner":"bob",` + wallet[1:]), "departs from the reference"},
		{"a wrong media type fails", "GET", "/ops/providers/", answer(200, "text/plain"),
			list(`{"object":"provider",` + item[1:]), "Content-Type"},
	} {
		got := k.check(c.method, c.path, nil, c.res, c.body)
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("%s: check = %q, want %q", c.name, got, c.want)
		}
	}
}
