// Package ledgercheck verifies, straight from the database, the invariants
// that make Cardrail's money exact, and those that keep its webhook queue
// moving in order. Tests call it after every step of a
// property run, after concurrent races and after each crash and restart.
package ledgercheck

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/cardrail/cardrail/store/sqlstore"
)

// invariants are queries that must return no rows; each row found is
// described by its columns.
var invariants = []struct {
	name  string
	query string
}{
	{"every journal entry sums to zero", `
		SELECT entry, SUM(amount) FROM journal_lines GROUP BY entry HAVING SUM(amount) <> 0`},
	{"every entry has at least two lines", `
		SELECT e.reference, COUNT(l.reference) FROM journal_entries e LEFT JOIN journal_lines l ON l.entry = e.reference
		GROUP BY e.reference HAVING COUNT(l.reference) < 2`},
	{"every balance equals the sum of its lines", `
		SELECT a.id, a.balance, COALESCE(s.total, 0) FROM accounts a
		LEFT JOIN (SELECT account, SUM(amount) AS total FROM journal_lines GROUP BY account) s ON s.account = a.id
		WHERE a.balance <> COALESCE(s.total, 0)`},
	{"no wallet or card balance is negative", `
		SELECT id, balance FROM accounts WHERE balance < 0 AND kind IN ('wallet', 'card_available', 'card_held')`},
	{"all accounts of a mode and currency sum to zero", `
		SELECT livemode, currency, SUM(balance) FROM accounts GROUP BY livemode, currency HAVING SUM(balance) <> 0`},
	{"approved authorizations: amount = held + settled + reversed", `
		SELECT reference FROM authorizations WHERE status <> 'declined' AND amount <> held_amount + settled_amount + reversed_amount`},
	{"settled + reversed never exceed the amount; refunds never exceed settlement", `
		SELECT reference FROM authorizations WHERE settled_amount + reversed_amount > amount OR refunded_amount > settled_amount`},
	{"declined authorizations hold and move nothing", `
		SELECT reference FROM authorizations WHERE status = 'declined'
		AND (held_amount <> 0 OR settled_amount <> 0 OR reversed_amount <> 0 OR refunded_amount <> 0
		     OR reference IN (SELECT authorization_ref FROM journal_entries WHERE authorization_ref IS NOT NULL))`},
	{"only pending authorizations hold money", `
		SELECT reference FROM authorizations WHERE status <> 'pending' AND held_amount <> 0`},
	{"each approved authorization has exactly one hold entry", `
		SELECT a.reference, COUNT(e.reference) FROM authorizations a
		LEFT JOIN journal_entries e ON e.authorization_ref = a.reference AND e.type = 'authorization_hold'
		WHERE a.status <> 'declined' GROUP BY a.reference HAVING COUNT(e.reference) <> 1`},
	{"each hold is resolved once: the held lines of an authorization sum to what it still holds", `
		SELECT a.reference, a.held_amount, COALESCE(SUM(l.amount), 0) FROM authorizations a
		LEFT JOIN journal_entries e ON e.authorization_ref = a.reference
		LEFT JOIN journal_lines l ON l.entry = e.reference AND l.account = a.card || '.held'
		WHERE a.status <> 'declined'
		GROUP BY a.reference, a.held_amount HAVING COALESCE(SUM(l.amount), 0) <> a.held_amount`},
	{"a card's held balance is what its pending authorizations hold", `
		SELECT c.reference, h.balance, COALESCE(p.total, 0) FROM cards c
		JOIN accounts h ON h.id = c.reference || '.held'
		LEFT JOIN (SELECT card, SUM(held_amount) AS total FROM authorizations WHERE status = 'pending' GROUP BY card) p ON p.card = c.reference
		WHERE h.balance <> COALESCE(p.total, 0)`},
	{"settlement net of refunds matches the network account's lines per authorization", `
		SELECT a.reference FROM authorizations a
		LEFT JOIN journal_entries e ON e.authorization_ref = a.reference
		LEFT JOIN journal_lines l ON l.entry = e.reference AND l.account LIKE 'sys.%.network_settlement'
		WHERE a.status <> 'declined'
		GROUP BY a.reference, a.settled_amount, a.refunded_amount
		HAVING COALESCE(SUM(l.amount), 0) <> a.settled_amount - a.refunded_amount`},
	{"closed cards keep no available balance", `
		SELECT c.reference, a.balance FROM cards c JOIN accounts a ON a.id = c.reference || '.available'
		WHERE c.status IN ('terminated', 'expired') AND a.balance <> 0`},
	// On PostgreSQL the hot-path tables carry no foreign keys (migration
	// 00004); these three stand in for them.
	{"every journal line belongs to an entry", `
		SELECT l.reference, l.entry FROM journal_lines l LEFT JOIN journal_entries e ON e.reference = l.entry WHERE e.reference IS NULL`},
	{"every journal line names an account", `
		SELECT l.reference, l.account FROM journal_lines l LEFT JOIN accounts a ON a.id = l.account WHERE a.id IS NULL`},
	{"every authorization belongs to a card", `
		SELECT a.reference, a.card FROM authorizations a LEFT JOIN cards c ON c.reference = a.card WHERE c.reference IS NULL`},
	{"spend windows never go negative", `
		SELECT reference, spend_day_amount, spend_month_amount FROM cards WHERE spend_day_amount < 0 OR spend_month_amount < 0`},
	// Only heads and replays are claimed (migration 00011): a queue
	// without its head would never be sent, one with two out of order.
	{"the first pending delivery of each (endpoint, object), and only it, is its queue's head", `
		SELECT d.reference, d.endpoint, d.object_ref FROM webhook_deliveries d
		WHERE d.status = 'pending' AND d.replayed = FALSE AND d.head = EXISTS (SELECT 1 FROM webhook_deliveries p
			WHERE p.endpoint = d.endpoint AND p.object_ref = d.object_ref AND p.status = 'pending'
			AND p.replayed = FALSE AND p.event_seq < d.event_seq)`},
	{"no replayed or finished delivery is a head", `
		SELECT reference, status FROM webhook_deliveries WHERE head AND (replayed OR status <> 'pending')`},
}

// Check runs every invariant and returns one error naming each that fails,
// with up to five offending rows.
func Check(ctx context.Context, q sqlstore.Querier) error {
	var errs []error
	for _, inv := range invariants {
		rows, err := q.Query(ctx, inv.query)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: query: %w", inv.name, err))
			continue
		}
		var bad []string
		for rows.Next() {
			if len(bad) >= 5 {
				bad = append(bad, "…")
				break
			}
			vals := make([]any, 3)
			ptrs := []any{&vals[0], &vals[1], &vals[2]}
			// Each query returns one to three columns; scan as many as needed.
			var scanErr error
			for n := 3; n >= 1; n-- {
				if scanErr = rows.Scan(ptrs[:n]...); scanErr == nil {
					bad = append(bad, strings.TrimSuffix(fmt.Sprintln(vals[:n]...), "\n"))
					break
				}
			}
			if scanErr != nil {
				bad = append(bad, "unscannable row: "+scanErr.Error())
			}
		}
		if err := rows.Err(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", inv.name, err))
		}
		rows.Close()
		if len(bad) > 0 {
			errs = append(errs, fmt.Errorf("%s: violated by %s", inv.name, strings.Join(bad, "; ")))
		}
	}
	return errors.Join(errs...)
}
