package api_test

import (
	"fmt"
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

// TestOtherListsAgreeWithCreatedAt races the requests behind the other
// lists: cards created at once; funding and authorizations on the same
// cards, whose ledger lines wait on each other's locks; operators settling
// at once (each settlement audited); and disputes on the same cards. Each
// list must be in created_at order, and each account's lines must chain:
// listed oldest first, every balance_after is the one before plus the
// line's amount.
func TestOtherListsAgreeWithCreatedAt(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		alice := env.Client("alice", "US")
		ops := env.Client("root", "US", "ops")
		const cards, each = 6, 6
		alice.Must(200, "POST", "/sandbox/wallets/deposit/", map[string]any{"amount": 1_000_000, "currency": "USD"})
		refs := make([]string, cards)
		race(t, cards, func(i int) string {
			r := alice.Do("POST", "/managed-cards/", map[string]any{"program": "usd_visa_virtual"})
			if r.Status != 201 {
				return fmt.Sprintf("create card: %d %s", r.Status, r.Body)
			}
			refs[i] = r.Str("reference")
			return ""
		})
		var mu sync.Mutex
		var held []string
		race(t, 4*cards, func(i int) string {
			card := refs[i%cards]
			for range each {
				if i/cards%2 == 0 {
					if r := alice.Do("POST", "/managed-cards/"+card+"/fund/", map[string]any{"amount": 1000}); r.Status != 200 {
						return fmt.Sprintf("fund: %d %s", r.Status, r.Body)
					}
					continue
				}
				r := alice.Do("POST", "/managed-cards/"+card+"/authorize/", apptest.Purchase(100))
				if r.Status != 201 {
					return fmt.Sprintf("authorize: %d %s", r.Status, r.Body)
				}
				if r.Str("status") == "pending" {
					mu.Lock()
					held = append(held, r.Str("reference"))
					mu.Unlock()
				}
			}
			return ""
		})
		if len(held) == 0 {
			t.Fatal("no authorization was approved")
		}
		race(t, len(held), func(i int) string {
			if r := ops.Do("POST", "/ops/authorizations/"+held[i]+"/settle/", nil); r.Status != 200 {
				return fmt.Sprintf("settle: %d %s", r.Status, r.Body)
			}
			return ""
		})
		race(t, len(held), func(i int) string {
			if r := alice.Do("POST", "/disputes/", map[string]any{"authorization": held[i], "reason": "fraudulent"}); r.Status != 201 {
				return fmt.Sprintf("dispute: %d %s", r.Status, r.Body)
			}
			return ""
		})
		inCreatedOrder(t, alice, "/managed-cards/?limit=100", "reference", cards)
		inCreatedOrder(t, alice, "/disputes/?limit=100", "reference", len(held))
		inCreatedOrder(t, ops, "/ops/audit-log/?limit=100", "reference", len(held))
		for _, card := range refs {
			path := "/managed-cards/" + card + "/transactions/?limit=100"
			inCreatedOrder(t, alice, path, "reference", -1)
			linesChain(t, alice, path)
		}
	})
}

// race runs fn(0) … fn(n-1) at once and fails the test with each message
// fn returns.
func race(t *testing.T, n int, fn func(i int) string) {
	t.Helper()
	var wg sync.WaitGroup
	msgs := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msgs[i] = fn(i)
		}()
	}
	wg.Wait()
	for _, m := range msgs {
		if m != "" {
			t.Fatal(m)
		}
	}
}

// linesChain reads a card's whole transaction list and checks that, per
// account and oldest first, each line's balance_after is the previous
// line's plus its amount.
func linesChain(t *testing.T, c *apptest.Client, path string) {
	t.Helper()
	type line struct {
		Reference    string `json:"reference"`
		Account      string `json:"account"`
		Amount       int64  `json:"amount"`
		BalanceAfter int64  `json:"balance_after"`
	}
	var lines []line
	cursor := ""
	for {
		var page struct {
			Data       []line `json:"data"`
			NextCursor string `json:"next_cursor"`
		}
		if err := c.Must(200, "GET", path+cursor, nil).Decode(&page); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, page.Data...)
		if page.NextCursor == "" {
			break
		}
		cursor = "&cursor=" + page.NextCursor
	}
	last := map[string]int64{}
	for i := len(lines) - 1; i >= 0; i-- {
		l := lines[i]
		if got := last[l.Account] + l.Amount; got != l.BalanceAfter {
			t.Fatalf("%s: line %s on %s: balance_after %d, but the lines before it add up to %d", path, l.Reference, l.Account, l.BalanceAfter, got)
		}
		last[l.Account] = l.BalanceAfter
	}
}
