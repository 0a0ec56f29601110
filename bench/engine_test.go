package bench_test

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/app"
	"github.com/cardrail/cardrail/bench"
	"github.com/cardrail/cardrail/config"
	"github.com/cardrail/cardrail/internal/testdb"
)

// BenchmarkEngine measures the authorization engine alone, without HTTP:
// 64 goroutines call Service.Authorize on 200 funded cards, on each
// database. It isolates what the database path costs from what the HTTP
// server and the load generator cost in `cardrail bench`.
//
//	go test -run '^$' -bench Engine -benchtime 5s ./bench/
func BenchmarkEngine(b *testing.B) {
	for _, backend := range testdb.Backends {
		b.Run(backend, func(b *testing.B) {
			ctx := context.Background()
			cfg := config.Default()
			cfg.DatabaseURL = testdb.URL(b, backend)
			cfg.RateLimit = 0
			a, err := app.New(ctx, cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			prog, err := a.Store.Program(ctx, false, "usd_visa_virtual")
			if err != nil {
				b.Fatal(err)
			}
			const owner = "bench-engine"
			cards, err := bench.ProvisionDirect(ctx, a.Store, owner, prog, 200, 1_000_000_000)
			if err != nil {
				b.Skipf("cannot provision cards here: %v", err)
			}
			caller := cardrail.Caller{Subject: owner, Country: "US"}
			attempt := cardrail.AuthorizationAttempt{Amount: 1, Currency: "USD",
				Merchant: cardrail.Merchant{Name: "Bench Store", MCC: "5411", Country: "US"}}
			b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
			start := time.Now()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					auth, err := a.Service.Authorize(ctx, caller, cards[rand.IntN(len(cards))], attempt)
					if err != nil {
						b.Error(err)
						return
					}
					if auth.Status != cardrail.AuthPending {
						b.Errorf("authorization %s: %s", auth.Status, *auth.DeclineReason)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "auth/s")
			st := a.Service.BatchStats()
			if st.Batches > 0 {
				b.ReportMetric(float64(st.Decided)/float64(st.Batches), "auth/batch")
			}
		})
	}
}
