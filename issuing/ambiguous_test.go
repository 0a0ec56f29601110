package issuing_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/cardrail/cardrail"
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

// TestBatchWhoseCommitIsLostIsNotDecidedTwice: when a batch's commit
// fails after the database committed it, deciding its authorizations again
// one by one must find them rather than hold the money a second time.
func TestBatchWhoseCommitIsLostIsNotDecidedTwice(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		alice := env.Client("alice", "US")
		card := alice.FundedCard(100_000)
		store := &lostCommit{Store: env.App.Store}
		svc := issuing.New(store, env.App.Registry, env.App.Router, env.App.Keys,
			issuing.Config{HoldWindow: time.Hour, Batch: issuing.BatchConfig{MaxBatch: 64, Executors: 1, Linger: 50 * time.Millisecond}},
			slog.New(slog.NewTextHandler(io.Discard, nil)))
		defer svc.Close()
		caller := cardrail.Caller{Subject: "alice", Country: "US"}
		attempt := cardrail.AuthorizationAttempt{Amount: 1000, Currency: "USD", Merchant: cardrail.Merchant{Name: "Shop", MCC: "5411", Country: "US"}}

		const n = 12
		refs := make(chan string, n)
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a, err := svc.Authorize(context.Background(), caller, card, attempt)
				if err != nil || a.Status != cardrail.AuthPending {
					t.Errorf("Authorize = %+v, %v", a, err)
					return
				}
				refs <- a.Reference
			}()
		}
		wg.Wait()
		close(refs)
		answered := map[string]bool{}
		for r := range refs {
			answered[r] = true
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
