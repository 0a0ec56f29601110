package issuing

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/cardrail/cardrail"
)

// panickyStore panics inside every transaction; nothing else is called.
type panickyStore struct {
	cardrail.Store
	mu    sync.Mutex
	calls int
}

func (p *panickyStore) Tx(context.Context, func(cardrail.Tx) error) error {
	p.mu.Lock()
	p.calls++
	p.mu.Unlock()
	panic("storage bug")
}

func TestEngineSurvivesAPanickingBatch(t *testing.T) {
	store := &panickyStore{}
	s := New(store, nil, nil, nil, Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer s.Close()
	attempt := cardrail.AuthorizationAttempt{Amount: 100, Currency: "USD", Merchant: cardrail.Merchant{Name: "Shop", MCC: "5411", Country: "US"}}
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Authorize(context.Background(), cardrail.Caller{Subject: "alice"}, cardrail.NewReference(cardrail.PrefixCard), attempt)
			if cardrail.ErrorCode(err) != cardrail.CodeInternal {
				t.Errorf("Authorize = %v, want an internal error", err)
			}
		}()
	}
	wg.Wait()
	// The executors are still alive: another request is answered too.
	if _, err := s.Authorize(context.Background(), cardrail.Caller{Subject: "alice"}, cardrail.NewReference(cardrail.PrefixCard), attempt); cardrail.ErrorCode(err) != cardrail.CodeInternal {
		t.Fatalf("after the panics: %v", err)
	}
	if store.calls == 0 {
		t.Fatal("the store was never asked")
	}
}
