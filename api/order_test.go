package api_test

import (
	"sync"
	"testing"
	"time"

	"github.com/cardrail/cardrail/internal/apptest"
	"github.com/cardrail/cardrail/internal/testdb"
)

// TestListsAgreeWithCreatedAt races authorizations on cards that different
// engine executors decide (two on PostgreSQL, by default, on this
// project's machine), and reads the caller's whole authorization list and
// the operator's list of events back (funding runs beside them, so the
// service's other path writes events at the same time): ordered by
// reference, newest first, no list's created_at may ever rise.
func TestListsAgreeWithCreatedAt(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		alice := env.Client("alice", "US")
		const cards, each = 8, 30
		refs := make([]string, cards)
		for i := range refs {
			refs[i] = alice.FundedCard(100_000)
		}
		alice.Must(200, "POST", "/sandbox/wallets/deposit/", map[string]any{"amount": 1000, "currency": "USD"})
		var wg sync.WaitGroup
		for _, card := range refs {
			// Funding beside the authorizations: events from the
			// service's other path, written concurrently.
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 5 {
					if r := alice.Do("POST", "/managed-cards/"+card+"/fund/", map[string]any{"amount": 1}); r.Status != 200 {
						t.Errorf("fund: %d %s", r.Status, r.Body)
						return
					}
				}
			}()
			for range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range each / 2 {
						if r := alice.Do("POST", "/managed-cards/"+card+"/authorize/", apptest.Purchase(100)); r.Status != 201 {
							t.Errorf("authorize: %d %s", r.Status, r.Body)
							return
						}
					}
				}()
			}
		}
		wg.Wait()
		ops := env.Client("root", "US", "ops")
		inCreatedOrder(t, alice, "/authorizations/?limit=100", "reference", cards*each)
		inCreatedOrder(t, ops, "/ops/events/?limit=100&type=card.authorization.created", "id", cards*each)
		inCreatedOrder(t, ops, "/ops/events/?limit=100&type=card.funded", "id", cards*(5+1))
		inCreatedOrder(t, ops, "/ops/events/?limit=100", "id", -1)
	})
}

// inCreatedOrder reads a whole list and checks it is newest first by its
// id field and never rises in created_at; want is its length, or -1 for
// any.
func inCreatedOrder(t *testing.T, c *apptest.Client, path, id string, want int) {
	t.Helper()
	var created []time.Time
	var ids []string
	cursor := ""
	for {
		page := c.Must(200, "GET", path+cursor, nil).JSON()
		for _, item := range page["data"].([]any) {
			item := item.(map[string]any)
			at, err := time.Parse(time.RFC3339Nano, item["created_at"].(string))
			if err != nil {
				t.Fatal(err)
			}
			created, ids = append(created, at), append(ids, item[id].(string))
		}
		next, _ := page["next_cursor"].(string)
		if next == "" {
			break
		}
		cursor = "&cursor=" + next
	}
	if want >= 0 && len(ids) != want {
		t.Fatalf("%s: listed %d, want %d", path, len(ids), want)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] >= ids[i-1] {
			t.Fatalf("%s: %s listed after %s", path, ids[i], ids[i-1])
		}
		if created[i].After(created[i-1]) {
			t.Fatalf("%s: %s (created %s) is listed after %s (created %s), which is older", path,
				ids[i], created[i].Format(time.RFC3339Nano), ids[i-1], created[i-1].Format(time.RFC3339Nano))
		}
	}
}
