// Package storetest is the contract suite that every cardrail.Store
// implementation must pass. store/sqlite and store/postgres run it against
// their real databases, so the two backends cannot drift apart in behaviour
// the issuing layer relies on.
//
// The suite drives the store through its public methods only. Where the
// contract is about what did not happen (a rolled-back write, a journal line
// that must not exist), it counts rows through Store.Conn, because no reader
// method can prove an absence across every table; and it empties the tables
// through Store.Conn between contracts, because a new PostgreSQL database
// for each of them would cost most of a second.
package storetest

import (
	"testing"
	"time"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/ledger"
	"github.com/cardrail/cardrail/store/sqlstore"
)

// contract is one named behaviour, checked against a store with empty tables.
type contract struct {
	name string
	run  func(t *testing.T, s *sqlstore.Store)
}

// Run runs the contract suite. open must return a fresh, migrated, empty
// store and close it when t ends. Each group of contracts opens its own store
// and runs in parallel with the other groups; within a group every contract
// starts from empty tables, so no contract depends on another's data.
func Run(t *testing.T, open func(t *testing.T) *sqlstore.Store) {
	groups := []struct {
		name      string
		contracts []contract
	}{
		{"programs", programContracts},
		{"cards", cardContracts},
		{"ledger", ledgerContracts},
		{"authorizations", authorizationContracts},
		{"transactions", transactionContracts},
		{"idempotency", idempotencyContracts},
		{"events and audit", eventContracts},
		{"settings", settingContracts},
		{"batches", batchContracts},
		{"webhooks", webhookContracts},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			for _, c := range g.contracts {
				t.Run(c.name, func(t *testing.T) {
					empty(t, s)
					c.run(t, s)
				})
			}
		})
	}
}

// tables are every table the store writes, children before the parents
// their foreign keys point to.
var tables = []string{"webhook_attempts", "webhook_deliveries", "webhook_endpoints", "journal_lines", "journal_entries", "authorizations", "accounts", "cards",
	"programs", "provider_states", "cardholders", "events", "audit_log", "settings", "idempotency_keys"}

// empty deletes every row the store holds.
func empty(t *testing.T, s *sqlstore.Store) {
	t.Helper()
	for _, table := range tables {
		if _, err := s.Conn().Exec(t.Context(), "DELETE FROM "+table); err != nil {
			t.Fatalf("empty %s: %v", table, err)
		}
	}
}

// base is a fixed instant with microsecond precision, the finest the stores
// keep, so values built from it must round-trip exactly.
var base = time.Date(2026, time.March, 14, 15, 9, 26, 535897000, time.UTC)

func ptr[T any](v T) *T { return &v }

// now is the current time at the precision the stores keep.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// inTx runs fn in a transaction that must commit.
func inTx(t *testing.T, s *sqlstore.Store, fn func(tx cardrail.Tx) error) {
	t.Helper()
	if err := s.Tx(t.Context(), fn); err != nil {
		t.Fatalf("transaction: %v", err)
	}
}

// newCard returns a card with every optional field set, so a round trip
// proves each column is kept.
func newCard(owner string, livemode bool, status cardrail.CardStatus) *cardrail.Card {
	at := now()
	return &cardrail.Card{
		Object:       "card",
		Reference:    cardrail.NewReference(cardrail.PrefixCard),
		Program:      "std",
		Provider:     ptr("sandbox"),
		Status:       status,
		StatusReason: ptr("issued by the contract suite"),
		Type:         cardrail.CardTypeVirtual,
		Brand:        "visa",
		Currency:     "USD",
		Last4:        ptr("4242"),
		ExpMonth:     ptr(12),
		ExpYear:      ptr(2030),
		Nickname:     ptr("travel"),
		SpendingControls: cardrail.SpendingControls{
			Daily:       ptr(int64(50_000)),
			BlockedMCCs: []string{"7995"},
		},
		Metadata:  map[string]string{"team": "ops"},
		Livemode:  livemode,
		CreatedAt: at,
		UpdatedAt: at,
		Owner:     owner,
	}
}

// insertCard stores c with an empty secret in its own transaction.
func insertCard(t *testing.T, s *sqlstore.Store, c *cardrail.Card) {
	t.Helper()
	inTx(t, s, func(tx cardrail.Tx) error { return tx.InsertCard(t.Context(), c, cardrail.CardSecret{}) })
}

// newAuthorization returns an authorization on c whose amounts satisfy the
// status: a pending one holds everything, a settled one settled everything,
// a declined one holds nothing and says why.
func newAuthorization(c *cardrail.Card, status cardrail.AuthorizationStatus, amount int64) *cardrail.Authorization {
	at := now()
	a := &cardrail.Authorization{
		Object:    "authorization",
		Reference: cardrail.NewReference(cardrail.PrefixAuthorization),
		Card:      c.Reference,
		Status:    status,
		Amount:    amount,
		Currency:  c.Currency,
		Merchant:  cardrail.Merchant{Name: "Corner Café", MCC: "5812", Country: "FR", City: "Lyon"},
		ExpiresAt: ptr(base.Add(7 * 24 * time.Hour)),
		Livemode:  c.Livemode,
		CreatedAt: at,
		UpdatedAt: at,
		Owner:     c.Owner,
	}
	switch status {
	case cardrail.AuthPending:
		a.HeldAmount = amount
	case cardrail.AuthSettled:
		a.SettledAmount = amount
	case cardrail.AuthReversed, cardrail.AuthExpired:
		a.ReversedAmount = amount
	case cardrail.AuthDeclined:
		a.DeclineReason = ptr(cardrail.DeclineInsufficientFunds)
		a.ExpiresAt = nil
	}
	return a
}

// insertAuthorization stores a in its own transaction.
func insertAuthorization(t *testing.T, s *sqlstore.Store, a *cardrail.Authorization) {
	t.Helper()
	inTx(t, s, func(tx cardrail.Tx) error { return tx.InsertAuthorizations(t.Context(), []*cardrail.Authorization{a}) })
}

// post applies e in its own transaction.
func post(t *testing.T, s *sqlstore.Store, e ledger.Entry) {
	t.Helper()
	inTx(t, s, func(tx cardrail.Tx) error { return tx.Post(t.Context(), &e) })
}

// fundWallet deposits amount from the funding account into owner's wallet
// (creating it) and returns the wallet's reference.
func fundWallet(t *testing.T, s *sqlstore.Store, livemode bool, owner, currency string, amount int64) string {
	t.Helper()
	var ref string
	inTx(t, s, func(tx cardrail.Tx) error {
		w, err := tx.Wallet(t.Context(), livemode, owner, currency)
		if err != nil {
			return err
		}
		ref = w.Reference
		e := ledger.Move(ledger.TypeDeposit, livemode, currency, ledger.SystemAccount(livemode, currency, ledger.Funding), w.Reference, amount)
		return tx.Post(t.Context(), &e)
	})
	return ref
}

// fundCard moves amount from the owner's wallet to the card's available
// balance.
func fundCard(t *testing.T, s *sqlstore.Store, wallet string, c *cardrail.Card, amount int64) {
	t.Helper()
	e := ledger.Move(ledger.TypeCardFunding, c.Livemode, c.Currency, wallet, ledger.CardAvailableAccount(c.Reference), amount)
	e.Card = c.Reference
	post(t, s, e)
}

// walletBalance reads the owner's wallet in currency through Wallets.
func walletBalance(t *testing.T, s *sqlstore.Store, livemode bool, owner, currency string) int64 {
	t.Helper()
	ws, err := s.Wallets(t.Context(), livemode, owner)
	if err != nil {
		t.Fatalf("Wallets(%s): %v", owner, err)
	}
	for _, w := range ws {
		if w.Currency == currency {
			return w.Balance.Available
		}
	}
	t.Fatalf("Wallets(%s): no %s wallet among %d", owner, currency, len(ws))
	return 0
}

// cardBalance reads a card's balance through Card.
func cardBalance(t *testing.T, s *sqlstore.Store, c *cardrail.Card) cardrail.Balance {
	t.Helper()
	got, err := s.Card(t.Context(), c.Livemode, "", c.Reference)
	if err != nil {
		t.Fatalf("Card(%s): %v", c.Reference, err)
	}
	return got.Balance
}

// count returns the number of rows in table, read outside any transaction.
func count(t *testing.T, s *sqlstore.Store, table string) int64 {
	t.Helper()
	var n int64
	if err := s.Conn().QueryRow(t.Context(), "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}
