package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/ledger"
	"github.com/cardrail/cardrail/store/sqlstore"
)

var cardContracts = []contract{
	{"insert creates the card with two empty balances", testInsertCard},
	{"lookup honours owner and mode", testCardLookup},
	{"update is conditional on the stored status", testUpdateCard},
	{"list pages newest first", testCardsPagination},
	{"list filters by status", testCardsStatusFilter},
	{"secret round trip", testCardSecret},
}

func testInsertCard(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	c := newCard("alice", false, cardrail.CardActive)
	insertCard(t, s, c)

	got, err := s.Card(ctx, false, "alice", c.Reference)
	if err != nil {
		t.Fatalf("Card: %v", err)
	}
	want := *c
	want.Balance = cardrail.Balance{Available: 0, Held: 0}
	equal(t, "stored card", *got, want)

	inTx(t, s, func(tx cardrail.Tx) error {
		locked, err := tx.CardForUpdate(ctx, false, "alice", c.Reference)
		if err != nil {
			return err
		}
		equal(t, "card read for update", *locked, want)
		return nil
	})

	bals, err := s.AccountBalances(ctx, false)
	if err != nil {
		t.Fatalf("AccountBalances: %v", err)
	}
	equal(t, "account balances after one card", bals, []cardrail.AccountBalance{
		{Currency: "USD", Kind: ledger.CardAvailable, Balance: 0, Accounts: 1},
		{Currency: "USD", Kind: ledger.CardHeld, Balance: 0, Accounts: 1},
	})
}

func testCardLookup(t *testing.T, s *sqlstore.Store) {
	c := newCard("alice", false, cardrail.CardActive)
	insertCard(t, s, c)

	for _, tc := range []struct {
		name     string
		livemode bool
		owner    string
		ref      string
		found    bool
	}{
		{"its owner finds it", false, "alice", c.Reference, true},
		{"no owner (an operator) finds it", false, "", c.Reference, true},
		{"another owner does not", false, "mallory", c.Reference, false},
		{"the other mode does not", true, "alice", c.Reference, false},
		{"the other mode does not, even for an operator", true, "", c.Reference, false},
		{"an unknown reference is not found", false, "", cardrail.NewReference(cardrail.PrefixCard), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Card(t.Context(), tc.livemode, tc.owner, tc.ref)
			switch {
			case tc.found && err != nil:
				t.Fatalf("Card(livemode=%v, owner=%q): %v", tc.livemode, tc.owner, err)
			case tc.found && got.Reference != c.Reference:
				t.Errorf("Card returned %s, want %s", got.Reference, c.Reference)
			case !tc.found && err == nil:
				t.Errorf("Card(livemode=%v, owner=%q) found %s, want ErrNoRows", tc.livemode, tc.owner, got.Reference)
			case !tc.found:
				mustNotFind(t, "Card", err)
			}
		})
	}
}

func testUpdateCard(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	c := newCard("alice", false, cardrail.CardPending)
	insertCard(t, s, c)

	read := func() cardrail.Card {
		t.Helper()
		got, err := s.Card(ctx, false, "", c.Reference)
		if err != nil {
			t.Fatalf("Card: %v", err)
		}
		return *got
	}

	active := read()
	active.Status = cardrail.CardActive
	active.StatusReason = nil
	active.Nickname = ptr("groceries")
	active.Last4 = ptr("1881")
	active.Metadata = map[string]string{"team": "finance", "cost_centre": "42"}
	active.SpendingControls = cardrail.SpendingControls{AllowedCountries: []string{"FR"}}
	active.UpdatedAt = c.UpdatedAt.Add(time.Minute)
	inTx(t, s, func(tx cardrail.Tx) error { return tx.UpdateCard(ctx, &active, cardrail.CardPending) })
	equal(t, "card after a matching conditional update", read(), active)

	for _, tc := range []struct {
		name string
		to   cardrail.CardStatus
		from []cardrail.CardStatus
	}{
		{"a single from status that no longer holds", cardrail.CardFailed, []cardrail.CardStatus{cardrail.CardPending}},
		{"several from statuses none of which hold", cardrail.CardTerminated, []cardrail.CardStatus{cardrail.CardFrozen, cardrail.CardBlocked}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := read()
			next.Status = tc.to
			next.Nickname = ptr("should not be written")
			err := s.Tx(ctx, func(tx cardrail.Tx) error { return tx.UpdateCard(ctx, &next, tc.from...) })
			mustFail(t, "UpdateCard from "+string(tc.from[0]), err, cardrail.ErrStale)
			equal(t, "card after a stale update", read(), active)
		})
	}

	t.Run("any status when from is empty", func(t *testing.T) {
		frozen := read()
		frozen.Status = cardrail.CardFrozen
		inTx(t, s, func(tx cardrail.Tx) error { return tx.UpdateCard(ctx, &frozen) })
		equal(t, "card after an unconditional update", read(), frozen)
	})

	t.Run("an unknown card is stale", func(t *testing.T) {
		ghost := newCard("alice", false, cardrail.CardActive)
		err := s.Tx(ctx, func(tx cardrail.Tx) error { return tx.UpdateCard(ctx, ghost) })
		mustFail(t, "UpdateCard of a card never inserted", err, cardrail.ErrStale)
	})
}

func testCardsPagination(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	var made []string
	for range 5 {
		c := newCard("alice", false, cardrail.CardActive)
		insertCard(t, s, c)
		made = append(made, c.Reference)
	}
	// Other owners' and the other mode's cards must not leak into the list.
	insertCard(t, s, newCard("bob", false, cardrail.CardActive))
	insertCard(t, s, newCard("alice", true, cardrail.CardActive))
	newestFirst := slices.Clone(made)
	slices.Reverse(newestFirst)

	var seen []string
	cursor := ""
	for i, want := range []struct {
		refs    []string
		hasMore bool
	}{
		{newestFirst[0:2], true},
		{newestFirst[2:4], true},
		{newestFirst[4:5], false},
	} {
		p, err := s.Cards(ctx, cardrail.CardFilter{Owner: "alice", ListParams: cardrail.ListParams{Limit: 2, Cursor: cursor}})
		if err != nil {
			t.Fatalf("Cards page %d: %v", i+1, err)
		}
		got := refs(p.Data, cardRef)
		if !slices.Equal(got, want.refs) {
			t.Fatalf("Cards page %d = %q, want %q", i+1, got, want.refs)
		}
		if p.HasMore != want.hasMore {
			t.Errorf("Cards page %d HasMore = %v, want %v", i+1, p.HasMore, want.hasMore)
		}
		switch {
		case want.hasMore && p.NextCursor == nil:
			t.Fatalf("Cards page %d: NextCursor nil, want %s", i+1, got[len(got)-1])
		case want.hasMore && *p.NextCursor != got[len(got)-1]:
			t.Errorf("Cards page %d NextCursor = %s, want the page's last reference %s", i+1, *p.NextCursor, got[len(got)-1])
		case !want.hasMore && p.NextCursor != nil:
			t.Errorf("last Cards page NextCursor = %s, want nil", *p.NextCursor)
		}
		seen = append(seen, got...)
		if p.NextCursor != nil {
			cursor = *p.NextCursor
		}
	}
	if !slices.Equal(seen, newestFirst) {
		t.Errorf("following the cursors listed %q, want each of %q once, newest first", seen, newestFirst)
	}

	for _, tc := range []struct {
		name     string
		livemode bool
		owner    string
		want     int
	}{
		{"every owner", false, "", 6},
		{"another owner", false, "bob", 1},
		{"the other mode", true, "alice", 1},
		{"an owner with no cards", false, "carol", 0},
	} {
		p, err := s.Cards(ctx, cardrail.CardFilter{Livemode: tc.livemode, Owner: tc.owner, ListParams: cardrail.ListParams{Limit: 10}})
		if err != nil {
			t.Fatalf("Cards for %s: %v", tc.name, err)
		}
		if len(p.Data) != tc.want || p.HasMore || p.NextCursor != nil {
			t.Errorf("Cards for %s: %d cards, HasMore %v, NextCursor %v; want %d on one page", tc.name, len(p.Data), p.HasMore, p.NextCursor, tc.want)
		}
	}
}

func testCardsStatusFilter(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	byStatus := map[cardrail.CardStatus][]string{}
	for _, st := range []cardrail.CardStatus{cardrail.CardActive, cardrail.CardFrozen, cardrail.CardActive, cardrail.CardPending, cardrail.CardActive} {
		c := newCard("alice", false, st)
		insertCard(t, s, c)
		byStatus[st] = append([]string{c.Reference}, byStatus[st]...) // newest first
	}
	for _, st := range []cardrail.CardStatus{cardrail.CardActive, cardrail.CardFrozen, cardrail.CardPending, cardrail.CardTerminated} {
		p, err := s.Cards(ctx, cardrail.CardFilter{Owner: "alice", Status: st, ListParams: cardrail.ListParams{Limit: 10}})
		if err != nil {
			t.Fatalf("Cards(status=%s): %v", st, err)
		}
		got := refs(p.Data, cardRef)
		if want := byStatus[st]; !slices.Equal(got, want) {
			t.Errorf("Cards(status=%s) = %q, want %q", st, got, want)
		}
		for _, c := range p.Data {
			if c.Status != st {
				t.Errorf("Cards(status=%s) returned %s which is %s", st, c.Reference, c.Status)
			}
		}
	}
}

func testCardSecret(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	c := newCard("alice", false, cardrail.CardActive)
	first := cardrail.CardSecret{KeyID: "k1", SealedPAN: []byte{0x00, 0x9f, 0xff, 'p', 'a', 'n'}, ProviderCardID: "sbx_card_1"}
	inTx(t, s, func(tx cardrail.Tx) error { return tx.InsertCard(ctx, c, first) })

	got, err := s.CardSecret(ctx, false, c.Reference)
	if err != nil {
		t.Fatalf("CardSecret: %v", err)
	}
	equal(t, "secret stored with the card", got, first)

	second := cardrail.CardSecret{KeyID: "k2", SealedPAN: []byte("resealed under k2"), ProviderCardID: "sbx_card_1"}
	inTx(t, s, func(tx cardrail.Tx) error { return tx.SetCardSecret(ctx, c.Reference, second) })
	got, err = s.CardSecret(ctx, false, c.Reference)
	if err != nil {
		t.Fatalf("CardSecret after SetCardSecret: %v", err)
	}
	equal(t, "secret after SetCardSecret", got, second)

	_, err = s.CardSecret(ctx, true, c.Reference)
	mustNotFind(t, "CardSecret in the other mode", err)

	bare := newCard("alice", false, cardrail.CardPending)
	insertCard(t, s, bare)
	got, err = s.CardSecret(ctx, false, bare.Reference)
	if err != nil {
		t.Fatalf("CardSecret of a card without one: %v", err)
	}
	if got.KeyID != "" || len(got.SealedPAN) != 0 || got.ProviderCardID != "" {
		t.Errorf("CardSecret of a card without one = %+v, want empty", got)
	}
}
