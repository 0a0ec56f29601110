// Package apptest runs the real Cardrail application (app.New, the same
// wiring as `cardrail serve`) behind an httptest server on a test database,
// with clients that mint tokens and speak JSON. Every end-to-end test uses
// it, so what the tests exercise is what users run.
package apptest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cardrail/cardrail/app"
	"github.com/cardrail/cardrail/auth"
	"github.com/cardrail/cardrail/config"
	"github.com/cardrail/cardrail/internal/ledgercheck"
)

// Env is one running application.
type Env struct {
	T      testing.TB
	App    *app.App
	Server *httptest.Server
	// Logs holds every log line the application wrote.
	Logs *SyncBuffer
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// New starts the application on the database at url. Options adjust the
// configuration before start (rate limits are off unless an option turns
// them on, so tests that race requests are not throttled).
func New(t testing.TB, url string, opts ...func(*config.Config)) *Env {
	t.Helper()
	cfg := config.Default()
	cfg.DatabaseURL = url
	cfg.RateLimit = 0
	for _, o := range opts {
		o(&cfg)
	}
	logs := &SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := app.New(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("start app: %v", err)
	}
	srv := httptest.NewServer(a.Handler())
	srv.Client().Transport.(*http.Transport).MaxIdleConnsPerHost = 128
	t.Cleanup(func() {
		srv.Close()
		a.Close()
	})
	return &Env{T: t, App: a, Server: srv, Logs: logs}
}

// Token mints a sandbox token.
func (e *Env) Token(sub, country string, roles ...string) string {
	e.T.Helper()
	tok, err := auth.MintSandbox(e.App.SandboxSecret, auth.TokenRequest{Subject: sub, Country: country, Roles: roles, TTL: time.Hour}, time.Now())
	if err != nil {
		e.T.Fatalf("mint token: %v", err)
	}
	return tok
}

// Client is a caller of the API.
type Client struct {
	env   *Env
	Token string
}

// Client returns a sandbox client for sub in country.
func (e *Env) Client(sub, country string, roles ...string) *Client {
	return &Client{env: e, Token: e.Token(sub, country, roles...)}
}

// WithToken returns a client presenting tok.
func (e *Env) WithToken(tok string) *Client { return &Client{env: e, Token: tok} }

// Response is an API answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a map.
func (r *Response) JSON() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(r.Body, &m)
	return m
}

// Str returns a top-level string field.
func (r *Response) Str(field string) string {
	s, _ := r.JSON()[field].(string)
	return s
}

// Int returns a top-level number field.
func (r *Response) Int(field string) int64 {
	f, _ := r.JSON()[field].(float64)
	return int64(f)
}

// Code returns a problem's code.
func (r *Response) Code() string { return r.Str("code") }

// Decode decodes the body into v.
func (r *Response) Decode(v any) error { return json.Unmarshal(r.Body, v) }

// Do sends a request to path (relative to the API base unless it starts
// with "//", which means the server root). body may be nil, a string sent
// as is, or a value encoded as JSON. headers are name, value pairs.
func (c *Client) Do(method, path string, body any, headers ...string) *Response {
	c.env.T.Helper()
	url := c.env.Server.URL + "/cards/api/v1" + path
	if strings.HasPrefix(path, "//") {
		url = c.env.Server.URL + path[1:]
	}
	var rd io.Reader
	var sent []byte
	switch b := body.(type) {
	case nil:
	case string:
		sent = []byte(b)
	case []byte:
		sent = b
	default:
		j, err := json.Marshal(b)
		if err != nil {
			c.env.T.Fatalf("encode body: %v", err)
		}
		sent = j
	}
	if body != nil {
		rd = bytes.NewReader(sent)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		c.env.T.Fatalf("new request: %v", err)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := c.env.Server.Client().Do(req)
	if err != nil {
		c.env.T.Errorf("%s %s: %v", method, path, err)
		return &Response{}
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if !strings.HasPrefix(path, "//") && !strings.HasSuffix(path, "/openapi.json") {
		k, err := loadContract()
		if err != nil {
			c.env.T.Fatalf("load the API reference: %v", err)
		}
		if msg := k.check(method, path, sent, res, b); msg != "" {
			c.env.T.Errorf("%s %s: %d: %s\n%s", method, path, res.StatusCode, msg, b)
		}
	}
	return &Response{Status: res.StatusCode, Header: res.Header, Body: b}
}

// Must sends the request and fails the test unless the status is want.
func (c *Client) Must(want int, method, path string, body any, headers ...string) *Response {
	c.env.T.Helper()
	r := c.Do(method, path, body, headers...)
	if r.Status != want {
		c.env.T.Fatalf("%s %s: status %d, want %d: %s", method, path, r.Status, want, r.Body)
	}
	return r
}

// NewCard creates a card on program and returns its reference.
func (c *Client) NewCard(program string) string {
	c.env.T.Helper()
	return c.Must(http.StatusCreated, "POST", "/managed-cards/", map[string]any{"program": program}).Str("reference")
}

// FundedCard creates a USD card and funds it with amount from a sandbox
// deposit of the same amount.
func (c *Client) FundedCard(amount int64) string {
	c.env.T.Helper()
	ref := c.NewCard("usd_visa_virtual")
	c.Must(http.StatusOK, "POST", "/sandbox/wallets/deposit/", map[string]any{"amount": amount, "currency": "USD"})
	c.Must(http.StatusOK, "POST", "/managed-cards/"+ref+"/fund/", map[string]any{"amount": amount})
	return ref
}

// Purchase is a typical authorization body.
func Purchase(amount int64) map[string]any {
	return map[string]any{"amount": amount, "currency": "USD",
		"merchant": map[string]any{"name": "Corner Shop", "mcc": "5411", "country": "US", "city": "Austin"}}
}

// CheckLedger fails the test if any money invariant is broken.
func (e *Env) CheckLedger() {
	e.T.Helper()
	if err := ledgercheck.Check(context.Background(), e.App.Store.Conn()); err != nil {
		e.T.Fatalf("ledger invariants:\n%v", err)
	}
}
