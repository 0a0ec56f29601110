package storetest

import (
	"testing"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/ledger"
	"github.com/cardrail/cardrail/store/sqlstore"
)

var batchContracts = []contract{
	{"locking for authorization reads cards with their program and spend", testLockCardsForAuthorization},
	{"a batch of holds with known balances posts like entry by entry", func(t *testing.T, s *sqlstore.Store) { testPostBatch(t, s, true) }},
	{"a batch of holds read back from the database posts the same", func(t *testing.T, s *sqlstore.Store) { testPostBatch(t, s, false) }},
	{"an overdraft in a batch applies nothing (known balances)", func(t *testing.T, s *sqlstore.Store) { testPostBatchOverdraft(t, s, true) }},
	{"an overdraft in a batch applies nothing (read back)", func(t *testing.T, s *sqlstore.Store) { testPostBatchOverdraft(t, s, false) }},
	{"batch inserts commit and roll back with their transaction", testBatchInsertsRollBack},
}

// fundedCards stores n cards of program "std" for alice, each funded with
// amount.
func fundedCards(t *testing.T, s *sqlstore.Store, n int, amount int64) []*cardrail.Card {
	t.Helper()
	saveProgram(t, s, newProgram("std", false))
	wallet := fundWallet(t, s, false, "alice", "USD", int64(n)*amount)
	var cards []*cardrail.Card
	for range n {
		c := newCard("alice", false, cardrail.CardActive)
		insertCard(t, s, c)
		fundCard(t, s, wallet, c, amount)
		cards = append(cards, c)
	}
	return cards
}

func testLockCardsForAuthorization(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	cards := fundedCards(t, s, 2, 1_000)
	inTx(t, s, func(tx cardrail.Tx) error {
		if err := tx.AddSpend(ctx, cards[0].Reference, "d20260314", 300); err != nil {
			return err
		}
		return tx.AddSpend(ctx, cards[0].Reference, "m202603", 700)
	})
	refs := []string{cards[0].Reference, cards[1].Reference, cardrail.NewReference(cardrail.PrefixCard)}
	if refs[0] > refs[1] {
		refs[0], refs[1] = refs[1], refs[0]
	}
	var got []cardrail.LockedCard
	inTx(t, s, func(tx cardrail.Tx) error {
		var err error
		got, err = tx.LockCardsForAuthorization(ctx, refs, "d20260314", "m202603")
		return err
	})
	if len(got) != 2 {
		t.Fatalf("locked %d cards, want the 2 that exist", len(got))
	}
	for _, l := range got {
		wantDaily, wantMonthly := int64(0), int64(0)
		if l.Card.Reference == cards[0].Reference {
			wantDaily, wantMonthly = 300, 700
		}
		if !l.ProgramEnabled || l.Limits != newProgram("std", false).Limits || l.Card.Balance.Available != 1_000 ||
			l.DailyUsed != wantDaily || l.MonthlyUsed != wantMonthly || l.Card.Owner != "alice" {
			t.Errorf("locked card %s = %+v (card %+v)", l.Card.Reference, l, *l.Card)
		}
	}
	if got[0].Card.Reference > got[1].Card.Reference {
		t.Errorf("cards not returned in reference order")
	}
}

func holds(cards []*cardrail.Card, amounts ...int64) []ledger.Entry {
	var es []ledger.Entry
	for i, a := range amounts {
		c := cards[i%len(cards)]
		e := ledger.Move(ledger.TypeHold, false, "USD", ledger.CardAvailableAccount(c.Reference), ledger.CardHeldAccount(c.Reference), a)
		e.Card = c.Reference
		es = append(es, e)
	}
	return es
}

func known(cards []*cardrail.Card, available int64) map[string]int64 {
	m := map[string]int64{}
	for _, c := range cards {
		m[ledger.CardAvailableAccount(c.Reference)] = available
		m[ledger.CardHeldAccount(c.Reference)] = 0
	}
	return m
}

func testPostBatch(t *testing.T, s *sqlstore.Store, withKnown bool) {
	ctx := t.Context()
	cards := fundedCards(t, s, 2, 1_000)
	var hint map[string]int64
	if withKnown {
		hint = known(cards, 1_000)
	}
	entries := holds(cards, 100, 250, 300) // card 0: 100 then 300; card 1: 250
	inTx(t, s, func(tx cardrail.Tx) error { return tx.PostBatch(ctx, entries, hint) })
	for i, want := range []cardrail.Balance{{Available: 600, Held: 400}, {Available: 750, Held: 250}} {
		if got := cardBalance(t, s, cards[i]); got != want {
			t.Errorf("card %d balance %+v, want %+v", i, got, want)
		}
	}
	txs, err := s.CardTransactions(ctx, false, cards[0].Reference, cardrail.ListParams{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var trail []int64
	for _, tx := range txs.Data {
		if tx.Account == "available" {
			trail = append(trail, tx.BalanceAfter)
		}
	}
	equal(t, "card 0 available balance after each line, newest first", trail, []int64{600, 900, 1_000})
	for _, e := range entries {
		if !cardrail.HasPrefix(e.Reference, cardrail.PrefixEntry) {
			t.Errorf("entry reference %q", e.Reference)
		}
	}
	if n := count(t, s, "journal_lines"); n != 2*3+2*2+2 {
		t.Errorf("%d journal lines, want 12 (two per funding, hold and deposit)", n)
	}
}

func testPostBatchOverdraft(t *testing.T, s *sqlstore.Store, withKnown bool) {
	ctx := t.Context()
	cards := fundedCards(t, s, 2, 1_000)
	var hint map[string]int64
	if withKnown {
		hint = known(cards, 1_000)
	}
	before := snapshot(t, s, "alice", cards[0])
	err := s.Tx(ctx, func(tx cardrail.Tx) error { return tx.PostBatch(ctx, holds(cards, 600, 100, 500), hint) })
	if _, short := ledger.IsInsufficientFunds(err); !short {
		t.Fatalf("PostBatch of 1100 against 1000 = %v, want insufficient funds", err)
	}
	equal(t, "ledger after a refused batch", snapshot(t, s, "alice", cards[0]), before)
	if got := cardBalance(t, s, cards[1]); got != (cardrail.Balance{Available: 1_000}) {
		t.Errorf("the other card moved: %+v", got)
	}
}

func testBatchInsertsRollBack(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	cards := fundedCards(t, s, 1, 1_000)
	write := func(tx cardrail.Tx) error {
		a := newAuthorization(cards[0], cardrail.AuthDeclined, 50)
		e, err := cardrail.NewEvent(cardrail.EventAuthorizationCreated, false, a.Reference, a, now())
		if err != nil {
			return err
		}
		if err := tx.InsertAuthorizations(ctx, []*cardrail.Authorization{a, newAuthorization(cards[0], cardrail.AuthDeclined, 60)}); err != nil {
			return err
		}
		if err := tx.InsertEvents(ctx, []*cardrail.Event{&e}); err != nil {
			return err
		}
		return tx.AddSpendMany(ctx, "d20260314", "m202603", map[string]int64{cards[0].Reference: 5})
	}
	mustRollBack(t, s, write)
	spend := func() map[string]int64 {
		var got map[string]int64
		inTx(t, s, func(tx cardrail.Tx) (err error) {
			got, err = tx.SpendUsed(ctx, cards[0].Reference, "d20260314", "m202603")
			return err
		})
		return got
	}
	for table, want := range map[string]int64{"authorizations": 0, "events": 0} {
		if got := count(t, s, table); got != want {
			t.Errorf("%s after rollback: %d rows", table, got)
		}
	}
	equal(t, "spend after rollback", spend(), map[string]int64{"d20260314": 0, "m202603": 0})
	inTx(t, s, write)
	for table, want := range map[string]int64{"authorizations": 2, "events": 1} {
		if got := count(t, s, table); got != want {
			t.Errorf("%s after commit: %d rows, want %d", table, got, want)
		}
	}
	equal(t, "spend after commit", spend(), map[string]int64{"d20260314": 5, "m202603": 5})
}

// mustRollBack runs write and then fails the transaction.
func mustRollBack(t *testing.T, s *sqlstore.Store, write func(cardrail.Tx) error) {
	t.Helper()
	sentinel := cardrail.Errorf(cardrail.CodeConflict, "roll back")
	err := s.Tx(t.Context(), func(tx cardrail.Tx) error {
		if err := write(tx); err != nil {
			return err
		}
		return sentinel
	})
	if err != sentinel {
		t.Fatalf("transaction = %v, want the rollback sentinel", err)
	}
}
