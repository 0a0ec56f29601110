// Package bench drives authorizations at a Cardrail server over HTTP and
// reports throughput and latency: for cards chosen at random, and for one
// hot card every client hits. On PostgreSQL it also runs pgbench's built-in
// TPC-B-like script with the same clients and duration, for a ratio against
// the database's own per-commit rate on the same machine.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a run.
type Options struct {
	BaseURL  string // e.g. http://127.0.0.1:8080/cards/api/v1
	Token    string
	Cards    []string // funded cards to authorize against
	Clients  int
	Duration time.Duration
	Amount   int64
	Currency string
}

// Result is one phase's figures.
type Result struct {
	Name      string
	Approved  int64
	Declined  int64
	Failed    int64
	Elapsed   time.Duration
	Latencies []time.Duration // sorted
}

// Rate is authorizations answered per second (approved + declined).
func (r Result) Rate() float64 {
	return float64(r.Approved+r.Declined) / r.Elapsed.Seconds()
}

// Percentile returns the p-th percentile latency (p in 0..100).
func (r Result) Percentile(p float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	i := int(float64(len(r.Latencies)-1) * p / 100)
	return r.Latencies[i]
}

// String renders the phase as one report block.
func (r Result) String() string {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }
	return fmt.Sprintf("%-7s approved=%d declined=%d failed=%d  %.0f auth/s  p50=%s p95=%s p99=%s max=%s",
		r.Name, r.Approved, r.Declined, r.Failed, r.Rate(), ms(r.Percentile(50)), ms(r.Percentile(95)), ms(r.Percentile(99)),
		ms(r.Percentile(100)))
}

// NewClient returns an HTTP client with enough keep-alive connections for
// the given concurrency.
func NewClient(clients int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = clients * 2
	t.MaxIdleConnsPerHost = clients * 2
	t.MaxConnsPerHost = 0
	return &http.Client{Transport: t, Timeout: 30 * time.Second}
}

var (
	pendingStatus  = []byte(`"status":"pending"`)
	declinedStatus = []byte(`"status":"declined"`)
)

// Run drives POST /managed-cards/{ref}/authorize/ from o.Clients concurrent
// keep-alive clients for o.Duration, each picking a card from o.Cards at
// random, and returns the figures.
func Run(ctx context.Context, name string, client *http.Client, o Options) Result {
	body, _ := json.Marshal(map[string]any{"amount": o.Amount, "currency": o.Currency,
		"merchant": map[string]any{"name": "Bench Store", "mcc": "5411", "country": "US"}})
	var approved, declined, failed atomic.Int64
	lat := make([][]time.Duration, o.Clients)
	addr, prefix, wire := wireTarget(o.BaseURL)
	// A request is the same bytes around the card reference: split once
	// around a placeholder, joined per request into the client's buffer.
	var head, tail []byte
	if wire {
		const placeholder = "\x00card\x00"
		whole := renderPost(addr, prefix+"/managed-cards/"+placeholder+"/authorize/", o.Token, body)
		i := bytes.Index(whole, []byte(placeholder))
		head, tail = whole[:i], whole[i+len(placeholder):]
	}
	// The phase's clock starts once everything above is ready.
	ctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	// send makes one authorization request and returns its status and body.
	// The second result releases what the sender holds.
	type sender func(card string) (int, []byte, error)
	newSender := func() (sender, func()) {
		if wire {
			c := &wireConn{addr: addr}
			stop := context.AfterFunc(ctx, c.interrupt)
			var req []byte
			return func(card string) (int, []byte, error) {
					req = append(append(append(req[:0], head...), card...), tail...)
					return c.roundTrip(req, 30*time.Second)
				}, func() {
					stop()
					c.close()
				}
		}
		return func(card string) (int, []byte, error) {
			req, _ := http.NewRequestWithContext(ctx, "POST", o.BaseURL+"/managed-cards/"+card+"/authorize/", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+o.Token)
			req.Header.Set("Content-Type", "application/json")
			res, err := client.Do(req)
			if err != nil {
				return 0, nil, err
			}
			b, err := io.ReadAll(res.Body)
			res.Body.Close()
			return res.StatusCode, b, err
		}, func() {}
	}
	for i := range o.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			send, release := newSender()
			defer release()
			rng := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			for ctx.Err() == nil {
				card := o.Cards[rng.IntN(len(o.Cards))]
				t0 := time.Now()
				status, b, err := send(card)
				if err != nil {
					if ctx.Err() == nil {
						failed.Add(1)
					}
					continue
				}
				d := time.Since(t0)
				// The authorization's own status is the first "status" in
				// the body; a byte search classifies it without decoding,
				// so the load generator takes less of the CPU it shares
				// with the server.
				switch {
				case status == http.StatusCreated && bytes.Contains(b, pendingStatus):
					approved.Add(1)
				case status == http.StatusCreated && bytes.Contains(b, declinedStatus):
					declined.Add(1)
				default:
					failed.Add(1)
					continue
				}
				lat[i] = append(lat[i], d)
			}
		}()
	}
	wg.Wait()
	r := Result{Name: name, Approved: approved.Load(), Declined: declined.Load(), Failed: failed.Load(), Elapsed: time.Since(start)}
	for _, l := range lat {
		r.Latencies = append(r.Latencies, l...)
	}
	slices.Sort(r.Latencies)
	return r
}
