package issuing_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/config"
	"github.com/cardrail/cardrail/internal/apptest"
	"github.com/cardrail/cardrail/internal/testdb"
	"github.com/cardrail/cardrail/issuing"
)

// lostCommit commits the first transaction that writes more than one
// authorization and then reports a failure, as a connection lost while
// COMMIT was in flight does: the outcome is unknown to the caller.
type lostCommit struct {
	cardrail.Store
	mu   sync.Mutex
	lost bool
}

type countingTx struct {
	cardrail.Tx
	auths int
}

func (t *countingTx) InsertAuthorizations(ctx context.Context, auths []*cardrail.Authorization) error {
	t.auths += len(auths)
	return t.Tx.InsertAuthorizations(ctx, auths)
}

func (s *lostCommit) Tx(ctx context.Context, fn func(cardrail.Tx) error) error {
	var counted *countingTx
	err := s.Store.Tx(ctx, func(tx cardrail.Tx) error {
		counted = &countingTx{Tx: tx}
		return fn(counted)
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil && !s.lost && counted.auths > 1 {
		s.lost = true
		return errors.New("commit: connection lost")
	}
	return err
}

// engineOver starts a second issuing service over store (env's own,
// wrapped to misbehave), with one executor that lingers 50 ms so that
// requests made together share a batch.
func engineOver(t *testing.T, env *apptest.Env, store cardrail.Store) *issuing.Service {
	svc := issuing.New(store, env.App.Registry, env.App.Router, env.App.Keys,
		issuing.Config{HoldWindow: time.Hour, Batch: issuing.BatchConfig{MaxBatch: 64, Executors: 1, Linger: 50 * time.Millisecond}},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(svc.Close)
	return svc
}

// pendingAtOnce makes n authorizations of purchase on card at once and
// returns those answered pending; any other answer fails the test.
func pendingAtOnce(t *testing.T, svc *issuing.Service, card string, n int) []*cardrail.Authorization {
	t.Helper()
	auths := make([]*cardrail.Authorization, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := svc.Authorize(context.Background(), aliceUS, card, purchase)
			if err != nil || a.Status != cardrail.AuthPending {
				t.Errorf("Authorize = %+v, %v", a, err)
				return
			}
			auths[i] = a
		}()
	}
	wg.Wait()
	return slices.DeleteFunc(auths, func(a *cardrail.Authorization) bool { return a == nil })
}

// aliceUS and purchase are the caller and the attempt the engine tests make.
var (
	aliceUS  = cardrail.Caller{Subject: "alice", Country: "US"}
	purchase = cardrail.AuthorizationAttempt{Amount: 1000, Currency: "USD", Merchant: cardrail.Merchant{Name: "Shop", MCC: "5411", Country: "US"}}
)

// TestBatchWhoseCommitIsLostIsNotDecidedTwice: when a batch's commit
// fails after the database committed it, deciding its authorizations again
// one by one must find them rather than hold the money a second time.
func TestBatchWhoseCommitIsLostIsNotDecidedTwice(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		alice := env.Client("alice", "US")
		card := alice.FundedCard(100_000)
		store := &lostCommit{Store: env.App.Store}
		svc := engineOver(t, env, store)

		const n = 12
		answered := map[string]bool{}
		for _, a := range pendingAtOnce(t, svc, card, n) {
			answered[a.Reference] = true
		}
		if !store.lost {
			t.Fatal("no batch of more than one authorization was committed and reported lost")
		}
		list := alice.Must(200, "GET", "/authorizations/?card="+card+"&limit=100", nil).JSON()["data"].([]any)
		for _, a := range list {
			if ref := a.(map[string]any)["reference"].(string); !answered[ref] {
				t.Errorf("authorization %s was recorded but answered to no one", ref)
			}
		}
		c := alice.Must(200, "GET", "/managed-cards/"+card+"/", nil).JSON()
		if held := c["balance"].(map[string]any)["held"].(float64); len(list) != n || len(answered) != n || held != n*1000 {
			t.Fatalf("%d requests: %d answers, %d authorizations recorded, %v held", n, len(answered), len(list), held)
		}
	})
}

// failedBatch fails the first transaction that writes more than one
// authorization, a pause after writing them and before it commits: the
// database rolls it back, and the engine decides its authorizations again
// one by one.
type failedBatch struct {
	cardrail.Store
	mu     sync.Mutex
	failed bool
}

func (s *failedBatch) Tx(ctx context.Context, fn func(cardrail.Tx) error) error {
	return s.Store.Tx(ctx, func(tx cardrail.Tx) error {
		counted := &countingTx{Tx: tx}
		if err := fn(counted); err != nil {
			return err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.failed && counted.auths > 1 {
			s.failed = true
			time.Sleep(50 * time.Millisecond)
			return errors.New("batch: connection reset before commit")
		}
		return nil
	})
}

// TestRetriedAuthorizationKeepsItsStamp: an authorization decided again
// after its batch failed keeps the reference its first try minted, and
// with it that stamp's time as created_at (and the hold window counted
// from it), so that it lists by reference in created_at order.
func TestRetriedAuthorizationKeepsItsStamp(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		alice := env.Client("alice", "US")
		card := alice.FundedCard(100_000)
		store := &failedBatch{Store: env.App.Store}
		svc := engineOver(t, env, store)

		auths := pendingAtOnce(t, svc, card, 8)
		if !store.failed {
			t.Fatal("no batch of more than one authorization failed")
		}
		for _, a := range auths {
			minted, _ := cardrail.ReferenceTime(a.Reference)
			if d := a.CreatedAt.Sub(minted); d < -time.Millisecond || d > 5*time.Millisecond {
				t.Errorf("%s: created_at %s, %v after its reference was minted (the failed try paused 50 ms)", a.Reference, a.CreatedAt.Format(time.RFC3339Nano), d)
			}
			if a.ExpiresAt == nil || a.ExpiresAt.Sub(a.CreatedAt) != time.Hour {
				t.Errorf("%s: created %s, expires %v; the hold window is an hour", a.Reference, a.CreatedAt, a.ExpiresAt)
			}
		}
	})
}

// lateUnknownCommit commits every transaction, then, past the engine's
// batch deadline, reports that the commit went unconfirmed, as a
// connection that dies while COMMIT is in flight does.
type lateUnknownCommit struct {
	cardrail.Store
	mu    sync.Mutex
	armed bool
}

func (s *lateUnknownCommit) Tx(ctx context.Context, fn func(cardrail.Tx) error) error {
	err := s.Store.Tx(ctx, fn)
	s.mu.Lock()
	armed := s.armed
	s.armed = false
	s.mu.Unlock()
	if err != nil || !armed {
		return err
	}
	time.Sleep(3200 * time.Millisecond) // past the batch's 3 s deadline
	return fmt.Errorf("commit: %w: connection reset", cardrail.ErrOutcomeUnknown)
}

// TestUnconfirmedCommitIsNeverCalledNothing: an authorization whose commit
// went unconfirmed may stand, so its caller must never be told nothing was
// applied: not when the answer comes after the batch's deadline (a lone
// job: 503 outcome_unknown), and not when the callers left meanwhile (the
// one-by-one pass still looks each up, and finds them committed).
func TestUnconfirmedCommitIsNeverCalledNothing(t *testing.T) {
	env := apptest.New(t, testdb.URL(t, "sqlite"))
	alice := env.Client("alice", "US")
	card := alice.FundedCard(100_000)
	store := &lateUnknownCommit{Store: env.App.Store}
	svc := engineOver(t, env, store)
	held := func() float64 {
		return alice.Must(200, "GET", "/managed-cards/"+card+"/", nil).JSON()["balance"].(map[string]any)["held"].(float64)
	}

	store.armed = true
	if _, err := svc.Authorize(context.Background(), aliceUS, card, purchase); cardrail.ErrorCode(err) != cardrail.CodeOutcomeUnknown {
		t.Fatalf("a lone authorization whose commit went unconfirmed answered %v, not outcome_unknown", err)
	}
	if h := held(); h != 1000 {
		t.Fatalf("held %v: the unconfirmed commit should stand", h)
	}

	store.armed = true
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second) // gone before the answer
			defer cancel()
			if a, err := svc.Authorize(ctx, aliceUS, card, purchase); err != nil || a.Status != cardrail.AuthPending {
				t.Errorf("a caller whose authorization committed unconfirmed got %+v, %v", a, err)
			}
		}()
	}
	wg.Wait()
	if h := held(); h != 4000 {
		t.Fatalf("held %v after three more, want 4000", h)
	}
	env.CheckLedger()
}

// TestExpiryOnTheWayDoesNotMarkTheKey: a dispute request reads its
// authorization, which expires an overdue hold on the way. That expiry is
// not the dispute's effect, so it must not mark the dispute's
// Idempotency-Key applied: if it did, a 5xx that released the key would
// leave it held, and the retry would be told the request took effect.
func TestExpiryOnTheWayDoesNotMarkTheKey(t *testing.T) {
	ctx := context.Background()
	env := apptest.New(t, testdb.URL(t, "sqlite"), func(c *config.Config) { c.HoldWindow = 100 * time.Millisecond })
	alice := env.Client("alice", "US")
	card := alice.FundedCard(5000)
	auth := alice.Must(201, "POST", "/managed-cards/"+card+"/authorize/", apptest.Purchase(1000)).Str("reference")
	time.Sleep(150 * time.Millisecond)

	store := env.App.Store
	rec, err := store.BeginIdempotent(ctx, "test:alice", "dispute-1", "fp", time.Now())
	if err != nil || rec.Outcome != cardrail.IdempotencyStarted {
		t.Fatalf("begin: %+v, %v", rec, err)
	}
	marked := cardrail.WithIdempotencyMark(ctx, cardrail.IdempotencyMark{Scope: "test:alice", Key: "dispute-1", Token: rec.Token})
	_, err = env.App.Service.OpenDispute(marked, aliceUS, issuing.DisputeParams{Authorization: auth, Reason: "fraudulent"})
	if cardrail.ErrorCode(err) != cardrail.CodeInvalidAuthorizationState {
		t.Fatalf("dispute on an expired authorization: %v", err)
	}
	if got := alice.Must(200, "GET", "/authorizations/"+auth+"/", nil).Str("status"); got != "expired" {
		t.Fatalf("authorization %s", got)
	}
	// Released as a 5xx would release it: a key whose request applied
	// nothing is deleted, so the same request can start afresh.
	if err := store.ReleaseIdempotent(ctx, "test:alice", "dispute-1", rec.Token); err != nil {
		t.Fatal(err)
	}
	again, err := store.BeginIdempotent(ctx, "test:alice", "dispute-1", "fp", time.Now())
	if err != nil || again.Outcome != cardrail.IdempotencyStarted {
		t.Fatalf("the key after a dispute that applied nothing: %+v, %v (the expiry marked it applied)", again, err)
	}
}
