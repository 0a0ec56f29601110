package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/ledger"
	"github.com/cardrail/cardrail/store/sqlstore"
)

var transactionContracts = []contract{
	{"an error from fn rolls back every write", testTxRollback},
	{"a committed transaction is visible to readers", testTxCommit},
	{"writes are seen inside the transaction and nowhere else until commit", testTxIsolation},
	{"concurrent debits never overdraw a wallet", testConcurrentDebits},
}

var errAbort = errors.New("abort: the contract suite rolls this back")

// writeEverything makes one write of every kind the issuing layer makes in
// a single transaction.
func writeEverything(t *testing.T, tx cardrail.Tx, c *cardrail.Card) error {
	ctx := t.Context()
	if err := tx.SaveProgram(ctx, newProgram("std", false)); err != nil {
		return err
	}
	if err := tx.SetProviderState(ctx, cardrail.ProviderState{Name: "sandbox", Enabled: false}); err != nil {
		return err
	}
	if err := tx.InsertCard(ctx, c, cardrail.CardSecret{KeyID: "k1", SealedPAN: []byte("sealed")}); err != nil {
		return err
	}
	w, err := tx.Wallet(ctx, false, c.Owner, c.Currency)
	if err != nil {
		return err
	}
	deposit := ledger.Move(ledger.TypeDeposit, false, "USD", ledger.SystemAccount(false, "USD", ledger.Funding), w.Reference, 500)
	if err := tx.Post(ctx, &deposit); err != nil {
		return err
	}
	funding := ledger.Move(ledger.TypeCardFunding, false, "USD", w.Reference, ledger.CardAvailableAccount(c.Reference), 200)
	if err := tx.Post(ctx, &funding); err != nil {
		return err
	}
	if err := tx.InsertAuthorizations(ctx, []*cardrail.Authorization{newAuthorization(c, cardrail.AuthDeclined, 50)}); err != nil {
		return err
	}
	if err := tx.AddSpend(ctx, c.Reference, cardrail.DayWindow(base), 50); err != nil {
		return err
	}
	if err := tx.SetCardholder(ctx, &cardrail.Cardholder{Subject: c.Owner, KYC: "verified", UpdatedAt: base}); err != nil {
		return err
	}
	ev, err := cardrail.NewEvent(cardrail.EventCardCreated, false, c.Reference, c, base)
	if err != nil {
		return err
	}
	if err := tx.InsertEvent(ctx, &ev); err != nil {
		return err
	}
	if err := tx.InsertAudit(ctx, newAudit(c.Reference)); err != nil {
		return err
	}
	return tx.SetSetting(ctx, "webhook_secret", "s3cret")
}

func rowCounts(t *testing.T, s *sqlstore.Store) map[string]int64 {
	t.Helper()
	m := map[string]int64{}
	for _, table := range tables {
		m[table] = count(t, s, table)
	}
	return m
}

func testTxRollback(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	c := newCard("alice", false, cardrail.CardActive)
	empty := rowCounts(t, s)
	err := s.Tx(ctx, func(tx cardrail.Tx) error {
		if err := writeEverything(t, tx, c); err != nil {
			return fmt.Errorf("writing inside the transaction: %w", err)
		}
		return errAbort
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("Tx returned %v, want fn's error %v", err, errAbort)
	}
	equal(t, "row counts after rollback", rowCounts(t, s), empty)

	_, err = s.Program(ctx, false, "std")
	mustNotFind(t, "Program after rollback", err)
	_, err = s.Card(ctx, false, "", c.Reference)
	mustNotFind(t, "Card after rollback", err)
	_, err = s.Setting(ctx, "webhook_secret")
	mustNotFind(t, "Setting after rollback", err)
	if ws, err := s.Wallets(ctx, false, "alice"); err != nil || len(ws) != 0 {
		t.Errorf("Wallets after rollback: %d wallets, %v; want none", len(ws), err)
	}
	if b := balances(t, s, false); len(b) != 0 {
		t.Errorf("AccountBalances after rollback = %+v, want none", b)
	}
}

func testTxCommit(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	c := newCard("alice", false, cardrail.CardActive)
	inTx(t, s, func(tx cardrail.Tx) error { return writeEverything(t, tx, c) })

	for table, want := range map[string]int64{"settings": 1, "programs": 1, "provider_states": 1, "cards": 1,
		"accounts": 4, "journal_entries": 2, "journal_lines": 4, "authorizations": 1,
		"cardholders": 1, "events": 1, "audit_log": 1} {
		if got := count(t, s, table); got != want {
			t.Errorf("%s holds %d rows after commit, want %d", table, got, want)
		}
	}
	if _, err := s.Program(ctx, false, "std"); err != nil {
		t.Errorf("Program after commit: %v", err)
	}
	if got := cardBalance(t, s, c); got != (cardrail.Balance{Available: 200}) {
		t.Errorf("card balance after commit = %+v, want {200 0}", got)
	}
	if got := walletBalance(t, s, false, "alice", "USD"); got != 300 {
		t.Errorf("wallet after commit = %d, want 300", got)
	}
	if v, err := s.Setting(ctx, "webhook_secret"); err != nil || v != "s3cret" {
		t.Errorf("Setting after commit = %q, %v; want s3cret", v, err)
	}
	if h, err := s.Cardholder(ctx, false, "alice"); err != nil || h.KYC != "verified" {
		t.Errorf("Cardholder after commit = %+v, %v; want KYC verified", h, err)
	}
	if st, err := s.ProviderStates(ctx, false); err != nil || st["sandbox"] {
		t.Errorf("ProviderStates after commit = %v, %v; want sandbox off", st, err)
	}
}

func testTxIsolation(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	c := newCard("alice", false, cardrail.CardActive)
	inTx(t, s, func(tx cardrail.Tx) error {
		if err := tx.InsertCard(ctx, c, cardrail.CardSecret{}); err != nil {
			return err
		}
		if err := tx.SetSetting(ctx, "k", "v"); err != nil {
			return err
		}
		if _, err := tx.CardForUpdate(ctx, false, "alice", c.Reference); err != nil {
			t.Errorf("the transaction does not see the card it inserted: %v", err)
		}
		if v, err := tx.Setting(ctx, "k"); err != nil || v != "v" {
			t.Errorf("the transaction reads setting k = %q, %v; want its own write v", v, err)
		}
		_, err := s.Card(ctx, false, "", c.Reference)
		mustNotFind(t, "a reader outside the transaction, before commit", err)
		return nil
	})
	if _, err := s.Card(ctx, false, "", c.Reference); err != nil {
		t.Errorf("a reader after commit: %v", err)
	}
}

func testConcurrentDebits(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	const funded, debits = 10, 20
	c := newCard("alice", false, cardrail.CardActive)
	insertCard(t, s, c)
	wallet := fundWallet(t, s, false, "alice", "USD", funded)

	errs := make([]error, debits)
	var wg sync.WaitGroup
	for i := range debits {
		wg.Go(func() {
			errs[i] = s.Tx(ctx, func(tx cardrail.Tx) error {
				e := ledger.Move(ledger.TypeCardFunding, false, "USD", wallet, ledger.CardAvailableAccount(c.Reference), 1)
				e.Card = c.Reference
				return tx.Post(ctx, &e)
			})
		})
	}
	wg.Wait()

	var ok, short int
	for i, err := range errs {
		switch _, insufficient := ledger.IsInsufficientFunds(err); {
		case err == nil:
			ok++
		case insufficient:
			short++
		default:
			t.Errorf("debit %d failed with %v, want success or insufficient funds", i, err)
		}
	}
	if ok != funded || short != debits-funded {
		t.Errorf("%d debits succeeded and %d were short, want %d and %d", ok, short, funded, debits-funded)
	}
	if got := walletBalance(t, s, false, "alice", "USD"); got != 0 {
		t.Errorf("wallet after the race = %d, want 0", got)
	}
	if got := cardBalance(t, s, c); got != (cardrail.Balance{Available: funded}) {
		t.Errorf("card after the race = %+v, want {%d 0}", got, funded)
	}

	// Every successful debit saw the balance its predecessor left, so the
	// wallet's debit lines step down through each value exactly once.
	rows, err := s.Conn().Query(ctx, `SELECT balance_after FROM journal_lines WHERE account = $1 AND amount < 0`, wallet)
	if err != nil {
		t.Fatalf("wallet lines: %v", err)
	}
	defer rows.Close()
	var after []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			t.Fatalf("wallet lines: %v", err)
		}
		after = append(after, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("wallet lines: %v", err)
	}
	slices.Sort(after)
	if want := []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}; !slices.Equal(after, want) {
		t.Errorf("wallet balances after each debit = %v, want each of %v once", after, want)
	}
}
