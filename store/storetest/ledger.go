package storetest

import (
	"cmp"
	"errors"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/ledger"
	"github.com/cardrail/cardrail/store/sqlstore"
)

var ledgerContracts = []contract{
	{"a wallet is created on first use and found after", testWallet},
	{"a deposit raises the wallet", testDeposit},
	{"an overdraft fails with insufficient funds and applies nothing", testOverdraft},
	{"an invalid entry is rejected and applies nothing", testInvalidEntry},
	{"system accounts may go negative", testSystemAccountsNegative},
	{"no balance is carried past int64", testBalanceOverflow},
	{"account balances sum to zero per currency", testAccountBalances},
	{"card transactions list the card's lines newest first", testCardTransactions},
	{"lines racing on one account list in the order they were applied", testLinesInAppliedOrder},
}

// testLinesInAppliedOrder races entries on one wallet and the funding
// account, which no card lock serializes: ordered by reference, the
// wallet's lines must chain (each balance_after is the one before plus
// the amount) and never go back in created_at, so the stamp that names
// and dates them must come after the accounts are locked.
func testLinesInAppliedOrder(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	owner := cardrail.NewReference("owner")
	wallet := fundWallet(t, s, false, owner, "USD", 1)
	funding := ledger.SystemAccount(false, "USD", ledger.Funding)
	const workers, each = 8, 10
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				e := ledger.Move(ledger.TypeDeposit, false, "USD", funding, wallet, 1)
				if err := s.Tx(ctx, func(tx cardrail.Tx) error { return tx.Post(ctx, &e) }); err != nil {
					t.Errorf("deposit: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	rows, err := s.Conn().Query(ctx, `SELECT reference, amount, balance_after, created_at FROM journal_lines WHERE account = $1 ORDER BY reference`, wallet)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var n, balance, created int64
	for rows.Next() {
		var ref string
		var amount, after, at int64
		if err := rows.Scan(&ref, &amount, &after, &at); err != nil {
			t.Fatal(err)
		}
		if after != balance+amount {
			t.Errorf("line %s: balance_after %d, but the lines before it add up to %d", ref, after, balance+amount)
		}
		if at < created {
			t.Errorf("line %s was created at %d, before the line listed ahead of it (%d)", ref, at, created)
		}
		n, balance, created = n+1, after, at
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 1+workers*each || balance != 1+workers*each {
		t.Fatalf("%d lines ending at %d, want %d", n, balance, 1+workers*each)
	}
}

func testWallet(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	wallet := func(livemode bool, owner, currency string) cardrail.Wallet {
		t.Helper()
		var w *cardrail.Wallet
		inTx(t, s, func(tx cardrail.Tx) error {
			var err error
			w, err = tx.Wallet(ctx, livemode, owner, currency)
			return err
		})
		return *w
	}

	first := wallet(false, "alice", "USD")
	if !cardrail.HasPrefix(first.Reference, cardrail.PrefixWallet) {
		t.Errorf("new wallet reference %q is not a wallet reference", first.Reference)
	}
	want := cardrail.Wallet{Object: "wallet", Reference: first.Reference, Currency: "USD", Livemode: false,
		CreatedAt: first.CreatedAt, Owner: "alice"}
	equal(t, "new wallet", first, want)
	if first.CreatedAt.IsZero() {
		t.Error("new wallet has no creation time")
	}
	equal(t, "wallet asked for again", wallet(false, "alice", "USD"), first)

	others := map[string]string{first.Reference: "alice's sandbox USD wallet"}
	for _, tc := range []struct {
		name     string
		livemode bool
		owner    string
		currency string
	}{
		{"alice's sandbox EUR wallet", false, "alice", "EUR"},
		{"alice's live USD wallet", true, "alice", "USD"},
		{"bob's sandbox USD wallet", false, "bob", "USD"},
	} {
		w := wallet(tc.livemode, tc.owner, tc.currency)
		if prev, ok := others[w.Reference]; ok {
			t.Errorf("%s has the same reference %s as %s", tc.name, w.Reference, prev)
		}
		others[w.Reference] = tc.name
	}

	ws, err := s.Wallets(ctx, false, "alice")
	if err != nil {
		t.Fatalf("Wallets: %v", err)
	}
	var currencies []string
	for _, w := range ws {
		currencies = append(currencies, w.Currency)
	}
	slices.Sort(currencies)
	if !slices.Equal(currencies, []string{"EUR", "USD"}) {
		t.Errorf("Wallets(alice) currencies = %q, want [EUR USD]", currencies)
	}
	if ws, err := s.Wallets(ctx, false, "carol"); err != nil || len(ws) != 0 {
		t.Errorf("Wallets of an owner with none = %d wallets, %v; want none", len(ws), err)
	}
}

func testDeposit(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	wallet := fundWallet(t, s, false, "alice", "USD", 1_000)
	if got := walletBalance(t, s, false, "alice", "USD"); got != 1_000 {
		t.Errorf("wallet after a deposit of 1000 = %d, want 1000", got)
	}

	e := ledger.Move(ledger.TypeDeposit, false, "USD", ledger.SystemAccount(false, "USD", ledger.Funding), wallet, 250)
	inTx(t, s, func(tx cardrail.Tx) error { return tx.Post(ctx, &e) })
	if !cardrail.HasPrefix(e.Reference, cardrail.PrefixEntry) {
		t.Errorf("posted entry reference %q is not an entry reference", e.Reference)
	}
	if got := walletBalance(t, s, false, "alice", "USD"); got != 1_250 {
		t.Errorf("wallet after deposits of 1000 and 250 = %d, want 1250", got)
	}
	if got := count(t, s, "journal_lines"); got != 4 {
		t.Errorf("journal lines after two two-line deposits = %d, want 4", got)
	}
}

// ledgerState is everything an entry could change that a test can observe.
type ledgerState struct {
	Wallet       int64
	Card         cardrail.Balance
	Transactions []cardrail.CardTransaction
	Balances     []cardrail.AccountBalance
	Entries      int64
	Lines        int64
}

func snapshot(t *testing.T, s *sqlstore.Store, owner string, c *cardrail.Card) ledgerState {
	t.Helper()
	ctx := t.Context()
	txs, err := s.CardTransactions(ctx, c.Livemode, c.Reference, cardrail.ListParams{Limit: 100})
	if err != nil {
		t.Fatalf("CardTransactions: %v", err)
	}
	return ledgerState{
		Wallet:       walletBalance(t, s, c.Livemode, owner, c.Currency),
		Card:         cardBalance(t, s, c),
		Transactions: txs.Data,
		Balances:     balances(t, s, c.Livemode),
		Entries:      count(t, s, "journal_entries"),
		Lines:        count(t, s, "journal_lines"),
	}
}

// balances returns AccountBalances sorted by currency and kind; the
// contract promises the sums, not an order.
func balances(t *testing.T, s *sqlstore.Store, livemode bool) []cardrail.AccountBalance {
	t.Helper()
	b, err := s.AccountBalances(t.Context(), livemode)
	if err != nil {
		t.Fatalf("AccountBalances(livemode=%v): %v", livemode, err)
	}
	slices.SortFunc(b, func(x, y cardrail.AccountBalance) int {
		return cmp.Or(cmp.Compare(x.Currency, y.Currency), cmp.Compare(x.Kind, y.Kind))
	})
	return b
}

func testOverdraft(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	// Lines are applied in account order, so in the first and last cases a
	// line that fits is applied before the one that does not.
	for _, tc := range []struct {
		name  string
		entry func(wallet, available, held string) (e ledger.Entry, short string)
	}{
		{"funding a card beyond the wallet", func(wallet, available, held string) (ledger.Entry, string) {
			return ledger.Move(ledger.TypeCardFunding, false, "USD", wallet, available, 6), wallet
		}},
		{"holding beyond the card's available balance", func(wallet, available, held string) (ledger.Entry, string) {
			return ledger.Move(ledger.TypeHold, false, "USD", available, held, 6), available
		}},
		{"releasing more than the card holds", func(wallet, available, held string) (ledger.Entry, string) {
			return ledger.Move(ledger.TypeHoldRelease, false, "USD", held, available, 1), held
		}},
	} {
		for _, commit := range []bool{false, true} {
			name := tc.name + ", rolled back"
			if commit {
				// The issuing layer records a declined authorization in the
				// same transaction after a shortfall, so the failed entry
				// must leave nothing behind even when the caller commits.
				name = tc.name + ", caller commits anyway"
			}
			t.Run(name, func(t *testing.T) {
				owner := cardrail.NewReference("owner")
				c := newCard(owner, false, cardrail.CardActive)
				insertCard(t, s, c)
				wallet := fundWallet(t, s, false, owner, "USD", 10)
				fundCard(t, s, wallet, c, 5)
				before := snapshot(t, s, owner, c)
				if before.Wallet != 5 || before.Card != (cardrail.Balance{Available: 5}) {
					t.Fatalf("set-up: wallet %d, card %+v; want wallet 5, card {5 0}", before.Wallet, before.Card)
				}
				entry, want := tc.entry(wallet, ledger.CardAvailableAccount(c.Reference), ledger.CardHeldAccount(c.Reference))
				entry.Card = c.Reference

				var postErr error
				err := s.Tx(ctx, func(tx cardrail.Tx) error {
					e := entry
					postErr = tx.Post(ctx, &e)
					if commit {
						return nil
					}
					return postErr
				})
				account, short := ledger.IsInsufficientFunds(postErr)
				if !short {
					t.Fatalf("Post: got %v, want *ledger.InsufficientFunds", postErr)
				}
				if account != want {
					t.Errorf("InsufficientFunds names %s, want %s", account, want)
				}
				if commit && err != nil {
					t.Fatalf("Tx committing after a swallowed shortfall: %v", err)
				}
				if !commit && !errors.Is(err, postErr) {
					t.Errorf("Tx returned %v, want the Post error %v", err, postErr)
				}
				equal(t, "ledger after the failed entry", snapshot(t, s, owner, c), before)
			})
		}
	}
}

func testInvalidEntry(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	c := newCard("alice", false, cardrail.CardActive)
	insertCard(t, s, c)
	wallet := fundWallet(t, s, false, "alice", "USD", 100)
	funding := ledger.SystemAccount(false, "USD", ledger.Funding)
	before := snapshot(t, s, "alice", c)

	for _, tc := range []struct {
		name     string
		currency string
		lines    []ledger.Line
	}{
		{"lines that do not sum to zero", "USD", []ledger.Line{{Account: funding, Amount: -100}, {Account: wallet, Amount: 90}}},
		{"a single line", "USD", []ledger.Line{{Account: wallet, Amount: 10}}},
		{"a zero line", "USD", []ledger.Line{{Account: funding, Amount: 0}, {Account: wallet, Amount: 0}}},
		{"an account of no known kind", "USD", []ledger.Line{{Account: "bogus", Amount: -5}, {Account: wallet, Amount: 5}}},
		{"a wallet that does not exist", "USD", []ledger.Line{{Account: funding, Amount: -5}, {Account: "wal_missing", Amount: 5}}},
		{"a wallet in another currency", "EUR", []ledger.Line{{Account: ledger.SystemAccount(false, "EUR", ledger.Funding), Amount: -5}, {Account: wallet, Amount: 5}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := ledger.Entry{Type: ledger.TypeDeposit, Livemode: false, Currency: tc.currency, Lines: tc.lines}
			err := s.Tx(ctx, func(tx cardrail.Tx) error { return tx.Post(ctx, &e) })
			if err == nil {
				t.Fatal("Post accepted the entry, want an error")
			}
			if account, short := ledger.IsInsufficientFunds(err); short {
				t.Errorf("Post: insufficient funds in %s, want a rejection of the entry itself", account)
			}
			equal(t, "ledger after the rejected entry", snapshot(t, s, "alice", c), before)
		})
	}
}

func testSystemAccountsNegative(t *testing.T, s *sqlstore.Store) {
	c := newCard("alice", false, cardrail.CardActive)
	insertCard(t, s, c)
	fundWallet(t, s, false, "alice", "USD", 700)
	refund := ledger.Move(ledger.TypeRefund, false, "USD", ledger.SystemAccount(false, "USD", ledger.NetworkSettlement), ledger.CardAvailableAccount(c.Reference), 30)
	refund.Card = c.Reference
	post(t, s, refund)

	got := map[ledger.Kind]int64{}
	for _, b := range balances(t, s, false) {
		got[b.Kind] = b.Balance
	}
	for _, tc := range []struct {
		kind ledger.Kind
		want int64
	}{
		{ledger.Funding, -700},
		{ledger.NetworkSettlement, -30},
		{ledger.Wallet, 700},
		{ledger.CardAvailable, 30},
	} {
		if got[tc.kind] != tc.want {
			t.Errorf("%s balance = %d, want %d", tc.kind, got[tc.kind], tc.want)
		}
	}
}

func testAccountBalances(t *testing.T, s *sqlstore.Store) {
	c := newCard("alice", false, cardrail.CardActive)
	insertCard(t, s, c)
	usd := fundWallet(t, s, false, "alice", "USD", 1_000)
	fundWallet(t, s, false, "bob", "EUR", 500)
	fundWallet(t, s, true, "alice", "USD", 77)
	fundCard(t, s, usd, c, 300)
	available, held := ledger.CardAvailableAccount(c.Reference), ledger.CardHeldAccount(c.Reference)
	post(t, s, ledger.Move(ledger.TypeHold, false, "USD", available, held, 100))
	post(t, s, ledger.Move(ledger.TypeSettlement, false, "USD", held, ledger.SystemAccount(false, "USD", ledger.NetworkSettlement), 40))

	for _, tc := range []struct {
		livemode bool
		want     []cardrail.AccountBalance
	}{
		{false, []cardrail.AccountBalance{
			{Currency: "EUR", Kind: ledger.Funding, Balance: -500, Accounts: 1},
			{Currency: "EUR", Kind: ledger.Wallet, Balance: 500, Accounts: 1},
			{Currency: "USD", Kind: ledger.CardAvailable, Balance: 200, Accounts: 1},
			{Currency: "USD", Kind: ledger.CardHeld, Balance: 60, Accounts: 1},
			{Currency: "USD", Kind: ledger.Funding, Balance: -1_000, Accounts: 1},
			{Currency: "USD", Kind: ledger.NetworkSettlement, Balance: 40, Accounts: 1},
			{Currency: "USD", Kind: ledger.Wallet, Balance: 700, Accounts: 1},
		}},
		{true, []cardrail.AccountBalance{
			{Currency: "USD", Kind: ledger.Funding, Balance: -77, Accounts: 1},
			{Currency: "USD", Kind: ledger.Wallet, Balance: 77, Accounts: 1},
		}},
	} {
		got := balances(t, s, tc.livemode)
		equal(t, "account balances", got, tc.want)
		total := map[string]int64{}
		for _, b := range got {
			total[b.Currency] += b.Balance
		}
		for cur, sum := range total {
			if sum != 0 {
				t.Errorf("livemode=%v: %s accounts sum to %d, want 0", tc.livemode, cur, sum)
			}
		}
	}
}

func testCardTransactions(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	c := newCard("alice", false, cardrail.CardActive)
	other := newCard("alice", false, cardrail.CardActive)
	insertCard(t, s, c)
	insertCard(t, s, other)
	wallet := fundWallet(t, s, false, "alice", "USD", 1_000)
	fundCard(t, s, wallet, c, 300)
	fundCard(t, s, wallet, other, 50)
	auth := cardrail.NewReference(cardrail.PrefixAuthorization)
	hold := ledger.Move(ledger.TypeHold, false, "USD", ledger.CardAvailableAccount(c.Reference), ledger.CardHeldAccount(c.Reference), 100)
	hold.Card, hold.Authorization = c.Reference, auth
	post(t, s, hold)

	line := func(typ, account string, amount, after int64, authorization *string) cardrail.CardTransaction {
		return cardrail.CardTransaction{Object: "card_transaction", Type: typ, Account: account, Amount: amount,
			BalanceAfter: after, Currency: "USD", Authorization: authorization}
	}
	want := []cardrail.CardTransaction{
		line(ledger.TypeHold, "held", 100, 100, &auth),
		line(ledger.TypeHold, "available", -100, 200, &auth),
		line(ledger.TypeCardFunding, "available", 300, 300, nil),
	}

	p, err := s.CardTransactions(ctx, false, c.Reference, cardrail.ListParams{Limit: 10})
	if err != nil {
		t.Fatalf("CardTransactions: %v", err)
	}
	if p.HasMore || p.NextCursor != nil {
		t.Errorf("CardTransactions with room to spare: HasMore %v, NextCursor %v; want one page", p.HasMore, p.NextCursor)
	}
	all := p.Data
	got := slices.Clone(all)
	for i := range got {
		if !cardrail.HasPrefix(got[i].Reference, cardrail.PrefixTransaction) {
			t.Errorf("transaction %d reference %q is not a transaction reference", i, got[i].Reference)
		}
		if got[i].CreatedAt.IsZero() {
			t.Errorf("transaction %d has no creation time", i)
		}
		got[i].Reference, got[i].CreatedAt = "", time.Time{}
	}
	equal(t, "card transactions", got, want)

	first, err := s.CardTransactions(ctx, false, c.Reference, cardrail.ListParams{Limit: 2})
	if err != nil {
		t.Fatalf("CardTransactions page 1: %v", err)
	}
	if !first.HasMore || first.NextCursor == nil || len(first.Data) != 2 {
		t.Fatalf("CardTransactions page 1: %d lines, HasMore %v, NextCursor %v; want 2 lines and more", len(first.Data), first.HasMore, first.NextCursor)
	}
	second, err := s.CardTransactions(ctx, false, c.Reference, cardrail.ListParams{Limit: 2, Cursor: *first.NextCursor})
	if err != nil {
		t.Fatalf("CardTransactions page 2: %v", err)
	}
	if second.HasMore || second.NextCursor != nil {
		t.Errorf("CardTransactions page 2: HasMore %v, NextCursor %v; want the last page", second.HasMore, second.NextCursor)
	}
	ref := func(t *cardrail.CardTransaction) string { return t.Reference }
	if paged, whole := append(refs(first.Data, ref), refs(second.Data, ref)...), refs(all, ref); !slices.Equal(paged, whole) {
		t.Errorf("paging by 2 listed %q, want %q", paged, whole)
	}

	if p, err := s.CardTransactions(ctx, true, c.Reference, cardrail.ListParams{Limit: 10}); err != nil || len(p.Data) != 0 {
		t.Errorf("CardTransactions in the other mode: %d lines, %v; want none", len(p.Data), err)
	}
}

func testBalanceOverflow(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	wallet := fundWallet(t, s, false, "alice", "USD", 10)
	funding := ledger.SystemAccount(false, "USD", ledger.Funding)
	// A sandbox that took deposits for long enough: funding near the
	// bottom of int64, then a wallet near the top.
	for _, tc := range []struct {
		name    string
		account string
		balance int64
	}{
		{"funding near the lowest balance", funding, math.MinInt64 + 5},
		{"a wallet near the highest balance", wallet, math.MaxInt64 - 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Conn().Exec(ctx, `UPDATE accounts SET balance = $1 WHERE id = $2`, tc.balance, tc.account); err != nil {
				t.Fatal(err)
			}
			before := balances(t, s, false)
			e := ledger.Move(ledger.TypeDeposit, false, "USD", funding, wallet, 6)
			err := s.Tx(ctx, func(tx cardrail.Tx) error { return tx.Post(ctx, &e) })
			var ce *cardrail.Error
			if !errors.As(err, &ce) || ce.Code != cardrail.CodeMaxBalanceExceeded {
				t.Fatalf("deposit past int64: %v, want %s", err, cardrail.CodeMaxBalanceExceeded)
			}
			equal(t, "balances after the refused deposit", balances(t, s, false), before)
			e = ledger.Move(ledger.TypeDeposit, false, "USD", funding, wallet, 5)
			if err := s.Tx(ctx, func(tx cardrail.Tx) error { return tx.Post(ctx, &e) }); err != nil {
				t.Fatalf("deposit up to the limit: %v", err)
			}
			if _, err := s.Conn().Exec(ctx, `UPDATE accounts SET balance = 0 WHERE id IN ($1, $2)`, funding, wallet); err != nil {
				t.Fatal(err)
			}
		})
	}
}
