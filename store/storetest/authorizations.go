package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/store/sqlstore"
)

var authorizationContracts = []contract{
	{"insert and read back", testAuthorizationRoundTrip},
	{"update is conditional on the stored status", testUpdateAuthorization},
	{"list filters by owner and card and pages newest first", testAuthorizationsList},
	{"stale authorizations are pending ones past their expiry, oldest first", testStaleAuthorizations},
	{"spend windows add up", testSpend},
}

func testAuthorizationRoundTrip(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	c := newCard("alice", false, cardrail.CardActive)
	insertCard(t, s, c)

	pending := newAuthorization(c, cardrail.AuthPending, 1_250)
	pending.ExpiresAt = ptr(base.Add(7*24*time.Hour + 123*time.Microsecond))
	declined := newAuthorization(c, cardrail.AuthDeclined, 9_999)
	declined.DeclineReason = ptr(cardrail.DeclineMCCBlocked)
	declined.Merchant = cardrail.Merchant{Name: "Lucky \"7\" Casino", MCC: "7995", Country: "MT"}

	for _, a := range []*cardrail.Authorization{pending, declined} {
		insertAuthorization(t, s, a)
		for _, owner := range []string{"alice", ""} {
			got, err := s.Authorization(ctx, false, owner, a.Reference)
			if err != nil {
				t.Fatalf("Authorization(%s, owner %q): %v", a.Status, owner, err)
			}
			equal(t, string(a.Status)+" authorization", *got, *a)
		}
		inTx(t, s, func(tx cardrail.Tx) error {
			got, err := tx.AuthorizationForUpdate(ctx, false, "alice", a.Reference)
			if err != nil {
				return err
			}
			equal(t, string(a.Status)+" authorization read for update", *got, *a)
			return nil
		})
	}

	for _, tc := range []struct {
		name     string
		livemode bool
		owner    string
	}{
		{"another owner", false, "mallory"},
		{"the other mode", true, "alice"},
	} {
		_, err := s.Authorization(ctx, tc.livemode, tc.owner, pending.Reference)
		mustNotFind(t, "Authorization for "+tc.name, err)
	}
}

func testUpdateAuthorization(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	c := newCard("alice", false, cardrail.CardActive)
	insertCard(t, s, c)
	a := newAuthorization(c, cardrail.AuthPending, 1_000)
	insertAuthorization(t, s, a)
	read := func() cardrail.Authorization {
		t.Helper()
		got, err := s.Authorization(ctx, false, "", a.Reference)
		if err != nil {
			t.Fatalf("Authorization: %v", err)
		}
		return *got
	}

	settled := read()
	settled.Status, settled.HeldAmount, settled.SettledAmount, settled.ReversedAmount = cardrail.AuthSettled, 0, 700, 300
	settled.RefundedAmount = 200
	settled.UpdatedAt = a.UpdatedAt.Add(time.Hour)
	inTx(t, s, func(tx cardrail.Tx) error { return tx.UpdateAuthorization(ctx, &settled, cardrail.AuthPending) })
	equal(t, "authorization after settling", read(), settled)

	// A reversal racing the settlement still believes the hold is pending.
	reversed := *a
	reversed.Status, reversed.HeldAmount, reversed.ReversedAmount = cardrail.AuthReversed, 0, 1_000
	reversed.UpdatedAt = a.UpdatedAt.Add(2 * time.Hour)
	err := s.Tx(ctx, func(tx cardrail.Tx) error { return tx.UpdateAuthorization(ctx, &reversed, cardrail.AuthPending) })
	mustFail(t, "UpdateAuthorization from pending after settlement", err, cardrail.ErrStale)
	equal(t, "authorization after a stale update", read(), settled)

	ghost := newAuthorization(c, cardrail.AuthPending, 5)
	err = s.Tx(ctx, func(tx cardrail.Tx) error { return tx.UpdateAuthorization(ctx, ghost, cardrail.AuthPending) })
	mustFail(t, "UpdateAuthorization of one never inserted", err, cardrail.ErrStale)
}

func testAuthorizationsList(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	alice1 := newCard("alice", false, cardrail.CardActive)
	alice2 := newCard("alice", false, cardrail.CardActive)
	bob := newCard("bob", false, cardrail.CardActive)
	live := newCard("alice", true, cardrail.CardActive)
	made := map[*cardrail.Card][]string{} // newest first
	for _, c := range []*cardrail.Card{alice1, alice2, bob, live} {
		insertCard(t, s, c)
	}
	for _, c := range []*cardrail.Card{alice1, alice2, alice1, bob, alice1, alice2, bob, live} {
		a := newAuthorization(c, cardrail.AuthPending, 100)
		insertAuthorization(t, s, a)
		made[c] = append([]string{a.Reference}, made[c]...)
	}
	newestFirst := func(cards ...*cardrail.Card) []string {
		var out []string
		for _, c := range cards {
			out = append(out, made[c]...)
		}
		slices.Sort(out)
		slices.Reverse(out)
		return out
	}

	list := func(f cardrail.AuthorizationFilter) (all []string, pages int) {
		t.Helper()
		for {
			p, err := s.Authorizations(ctx, f)
			if err != nil {
				t.Fatalf("Authorizations(%+v): %v", f, err)
			}
			pages++
			all = append(all, refs(p.Data, authorizationRef)...)
			if p.HasMore != (p.NextCursor != nil) {
				t.Fatalf("Authorizations(%+v): HasMore %v but NextCursor %v", f, p.HasMore, p.NextCursor)
			}
			if !p.HasMore {
				return all, pages
			}
			if last := p.Data[len(p.Data)-1].Reference; *p.NextCursor != last {
				t.Fatalf("Authorizations(%+v): NextCursor %s, want the page's last reference %s", f, *p.NextCursor, last)
			}
			if pages > 10 {
				t.Fatalf("Authorizations(%+v): more than 10 pages of 2", f)
			}
			f.Cursor = *p.NextCursor
		}
	}

	for _, tc := range []struct {
		name      string
		filter    cardrail.AuthorizationFilter
		want      []string
		wantPages int
	}{
		{"one owner", cardrail.AuthorizationFilter{Owner: "alice"}, newestFirst(alice1, alice2), 3},
		{"one owner's card", cardrail.AuthorizationFilter{Owner: "alice", Card: alice1.Reference}, newestFirst(alice1), 2},
		{"another owner's card", cardrail.AuthorizationFilter{Owner: "bob", Card: alice1.Reference}, nil, 1},
		{"every owner", cardrail.AuthorizationFilter{}, newestFirst(alice1, alice2, bob), 4},
		{"every owner, one card", cardrail.AuthorizationFilter{Card: bob.Reference}, newestFirst(bob), 1},
		{"the other mode", cardrail.AuthorizationFilter{Livemode: true, Owner: "alice"}, newestFirst(live), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.filter
			f.Limit = 2
			got, pages := list(f)
			if !slices.Equal(got, tc.want) {
				t.Errorf("listed %q, want %q", got, tc.want)
			}
			if pages != tc.wantPages {
				t.Errorf("listed %d authorizations over %d pages of 2, want %d pages", len(got), pages, tc.wantPages)
			}
		})
	}
}

func testStaleAuthorizations(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	c := newCard("alice", false, cardrail.CardActive)
	insertCard(t, s, c)
	at := func(status cardrail.AuthorizationStatus, expires time.Duration) *cardrail.Authorization {
		a := newAuthorization(c, status, 100)
		a.ExpiresAt = ptr(base.Add(expires))
		insertAuthorization(t, s, a)
		return a
	}
	// Inserted out of expiry order, so that only sorting can list them right.
	lastHour := at(cardrail.AuthPending, -time.Hour)
	justNow := at(cardrail.AuthPending, 0)
	at(cardrail.AuthPending, time.Microsecond)
	yesterday := at(cardrail.AuthPending, -24*time.Hour)
	at(cardrail.AuthSettled, -48*time.Hour)
	at(cardrail.AuthReversed, -48*time.Hour)
	at(cardrail.AuthPending, time.Hour)
	insertAuthorization(t, s, newAuthorization(c, cardrail.AuthDeclined, 100))
	lastWeek := at(cardrail.AuthPending, -7*24*time.Hour)

	for _, tc := range []struct {
		limit int
		want  []*cardrail.Authorization
	}{
		{10, []*cardrail.Authorization{lastWeek, yesterday, lastHour, justNow}},
		{2, []*cardrail.Authorization{lastWeek, yesterday}},
	} {
		got, err := s.StaleAuthorizations(ctx, base, tc.limit)
		if err != nil {
			t.Fatalf("StaleAuthorizations: %v", err)
		}
		want := refs(tc.want, func(a **cardrail.Authorization) string { return (*a).Reference })
		if got := refs(got, authorizationRef); !slices.Equal(got, want) {
			t.Errorf("StaleAuthorizations(limit %d) = %q, want %q", tc.limit, got, want)
		}
	}
}

func testSpend(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	c := newCard("alice", false, cardrail.CardActive)
	other := newCard("alice", false, cardrail.CardActive)
	insertCard(t, s, c)
	insertCard(t, s, other)
	day, month := cardrail.DayWindow(base), cardrail.MonthWindow(base)
	nextDay := cardrail.DayWindow(base.Add(24 * time.Hour))

	for _, step := range []struct {
		card   string
		window string
		delta  int64
	}{
		{c.Reference, day, 500},
		{c.Reference, month, 500},
		{c.Reference, day, 250},
		{c.Reference, month, 250},
		{other.Reference, day, 9_000},
		{c.Reference, day, -100}, // a reversal lowers the window
	} {
		inTx(t, s, func(tx cardrail.Tx) error { return tx.AddSpend(ctx, step.card, step.window, step.delta) })
	}

	inTx(t, s, func(tx cardrail.Tx) error {
		got, err := tx.SpendUsed(ctx, c.Reference, day, month, nextDay)
		if err != nil {
			return err
		}
		equal(t, "spend used", got, map[string]int64{day: 650, month: 750, nextDay: 0})
		got, err = tx.SpendUsed(ctx, other.Reference, day, month)
		if err != nil {
			return err
		}
		equal(t, "the other card's spend used", got, map[string]int64{day: 9_000, month: 0})
		return nil
	})

	// A raise in the next day starts that window; a release counted in the
	// day before then lowers nothing, while the month still holds both.
	inTx(t, s, func(tx cardrail.Tx) error { return tx.AddSpend(ctx, c.Reference, nextDay, 40) })
	inTx(t, s, func(tx cardrail.Tx) error { return tx.AddSpend(ctx, c.Reference, month, 40) })
	inTx(t, s, func(tx cardrail.Tx) error { return tx.AddSpend(ctx, c.Reference, day, -600) })
	inTx(t, s, func(tx cardrail.Tx) error {
		got, err := tx.SpendUsed(ctx, c.Reference, day, month, nextDay)
		if err != nil {
			return err
		}
		equal(t, "spend after the day turned", got, map[string]int64{day: 0, month: 790, nextDay: 40})
		return nil
	})
}
