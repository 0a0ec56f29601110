package api_test

import (
	"context"
	"database/sql"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite"

	"github.com/cardrail/cardrail/config"
	"github.com/cardrail/cardrail/internal/apptest"
	"github.com/cardrail/cardrail/internal/testdb"
)

// holdCardLock takes, from outside the service, the lock a transfer on card
// needs (the card's row on PostgreSQL, the write lock on SQLite), and
// returns its release.
func holdCardLock(t *testing.T, url, card string) (release func()) {
	t.Helper()
	ctx := context.Background()
	if path, ok := strings.CutPrefix(url, "sqlite:"); ok {
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			t.Fatal(err)
		}
		return func() {
			_, _ = conn.ExecContext(ctx, "ROLLBACK")
			conn.Close()
			db.Close()
		}
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1 FROM cards WHERE reference = $1 FOR UPDATE", card); err != nil {
		t.Fatal(err)
	}
	return func() {
		_ = tx.Rollback(ctx)
		conn.Close(ctx)
	}
}

// TestRequestDeadline: a transfer stuck behind a lock someone else holds
// answers 503 request_timeout at its deadline, while the lock is still
// held, and moves nothing; the retry under the same Idempotency-Key runs
// afresh. Before, the request waited for the lock however long it took and
// moved the money after the server's write timeout had cut its client off.
func TestRequestDeadline(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url, func(c *config.Config) { c.RequestTimeout = 300 * time.Millisecond })
		alice := env.Client("alice", "US")
		card := alice.FundedCard(10_000)
		alice.Must(200, "POST", "/sandbox/wallets/deposit/", map[string]any{"amount": 1_000, "currency": "USD"})
		a0, h0, w0 := balances(t, alice, card)
		release := holdCardLock(t, url, card)
		answered := make(chan *apptest.Response, 1)
		go func() {
			answered <- alice.Do("POST", "/managed-cards/"+card+"/fund/", map[string]any{"amount": 100}, "Idempotency-Key", "stuck-fund")
		}()
		var r *apptest.Response
		select {
		case r = <-answered:
		case <-time.After(30 * time.Second):
			release()
			t.Fatal("no answer while the lock was held")
		}
		release()
		if r.Status != 503 || r.Code() != "request_timeout" || !strings.Contains(r.Str("detail"), "rolled back") {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		if a, h, w := balances(t, alice, card); a != a0 || h != h0 || w != w0 {
			t.Fatalf("the timed-out fund moved money: card %d/%d wallet %d, was %d/%d %d", a, h, w, a0, h0, w0)
		}
		alice.Must(200, "POST", "/managed-cards/"+card+"/fund/", map[string]any{"amount": 100}, "Idempotency-Key", "stuck-fund")
		if a, _, w := balances(t, alice, card); a != a0+100 || w != w0-100 {
			t.Fatalf("the retry moved card %d wallet %d, was %d %d", a, w, a0, w0)
		}
		env.CheckLedger()
	})
}

// TestLockedCardStallsOnlyItself: a card locked from outside (an operator's
// psql session that never commits) must not stall the authorization engine:
// each executor decides one batch at a time for its share of the cards, and
// before, a batch waited 30 s on such a lock, then each of its
// authorizations waited 30 s more, one after another. Now the batch gives
// up after 3 s; on PostgreSQL every other card's authorization is approved
// while the lock is still held, and the locked card's are answered 503,
// undecided and unapplied. On SQLite the lock is the whole database's
// writer, so every authorization is answered 503, within seconds.
func TestLockedCardStallsOnlyItself(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		alice := env.Client("alice", "US")
		locked := alice.FundedCard(10_000)
		var others []string
		for range 6 {
			others = append(others, alice.FundedCard(10_000))
		}
		release := holdCardLock(t, url, locked)
		type answer struct {
			card string
			r    *apptest.Response
		}
		answers := make(chan answer)
		attempts := append([]string{locked, locked, locked}, others...)
		for _, card := range attempts {
			go func() {
				answers <- answer{card, alice.Do("POST", "/managed-cards/"+card+"/authorize/", apptest.Purchase(100))}
			}()
		}
		sqlite := strings.HasPrefix(url, "sqlite:")
		timeout := time.After(25 * time.Second)
		for range attempts {
			var a answer
			select {
			case a = <-answers:
			case <-timeout:
				release()
				t.Fatal("authorizations still unanswered 25 s into the lock")
			}
			if a.card == locked || sqlite {
				if a.r.Status != 503 || a.r.Code() != "service_unavailable" || !strings.Contains(a.r.Str("detail"), "could not be decided") {
					t.Fatalf("authorization on a locked card: %d %s", a.r.Status, a.r.Body)
				}
			} else if a.r.Status != 201 || a.r.Str("status") != "pending" {
				t.Fatalf("authorization on a free card while another was locked: %d %s", a.r.Status, a.r.Body)
			}
		}
		release()
		for _, card := range append([]string{locked}, others...) {
			want := int64(10_000)
			if card != locked && !sqlite {
				want -= 100
			}
			if a, _, _ := balances(t, alice, card); a != want {
				t.Fatalf("card %s available %d, want %d", card, a, want)
			}
		}
		alice.Must(201, "POST", "/managed-cards/"+locked+"/authorize/", apptest.Purchase(100))
		env.CheckLedger()
	})
}

// TestClientHangUpIsNotAServerFault: a client that gives up while its card
// is being issued is no server error. It was logged at ERROR and counted
// as a 500; it is now recorded as 499 (at warn, with the error), and its
// Idempotency-Key is released so that the retry gets the card the partner
// issued. The partner attempt it cut short is no partner's fault: info.
func TestClientHangUpIsNotAServerFault(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		ops := env.Client("op", "US", "ops")
		alice := env.Client("alice", "US")
		ops.Must(200, "POST", "/ops/providers/sandbox_alpha/simulate/", map[string]any{"outcome": "normal", "delay_ms": 1000})
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, "POST", env.Server.URL+"/cards/api/v1/managed-cards/",
			strings.NewReader(`{"program":"usd_visa_virtual"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+alice.Token)
		req.Header.Set("Idempotency-Key", "hang-up")
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
			t.Fatalf("answered %d before the client gave up", res.StatusCode)
		}
		var line string
		for deadline := time.Now().Add(10 * time.Second); line == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			for _, l := range strings.Split(env.Logs.String(), "\n") {
				if strings.Contains(l, `"msg":"request"`) && strings.Contains(l, `"route":"POST /cards/api/v1/managed-cards/"`) &&
					strings.Contains(l, `"sub":"alice"`) {
					line = l
				}
			}
		}
		// At warn, with what the request was doing when its client left.
		if !strings.Contains(line, `"status":499`) || !strings.Contains(line, `"level":"WARN"`) || !strings.Contains(line, `"error":`) {
			t.Fatalf("the hung-up request was logged as %q", line)
		}
		for _, l := range strings.Split(env.Logs.String(), "\n") {
			if strings.Contains(l, `"msg":"provider attempt"`) && strings.Contains(l, `"ok":false`) && !strings.Contains(l, `"level":"INFO"`) {
				t.Errorf("the attempt the hang-up cut short: %s", l)
			}
		}
		metrics := alice.Do("GET", "//metrics", nil)
		if body := string(metrics.Body); !strings.Contains(body, `status="499"`) || strings.Contains(body, `status="500"`) {
			t.Fatalf("metrics:\n%s", body)
		}
		// The key was released, not stored: the retry issues the card under
		// the reference the first try reserved.
		ops.Must(200, "POST", "/ops/providers/sandbox_alpha/simulate/", map[string]any{"outcome": "normal"})
		r := alice.Must(201, "POST", "/managed-cards/", map[string]any{"program": "usd_visa_virtual"}, "Idempotency-Key", "hang-up")
		if r.Str("status") != "active" || r.Header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("retry: %s", r.Body)
		}
	})
}
