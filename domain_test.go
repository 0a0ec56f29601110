package cardrail_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cardrail/cardrail"
)

func ptr[T any](v T) *T { return &v }

func TestDecide(t *testing.T) {
	base := cardrail.CardPosition{ProgramEnabled: true, Status: cardrail.CardActive, Currency: "USD", Available: 1000,
		Limits: cardrail.Limits{PerAuthorization: 500, Daily: 800, Monthly: 900}}
	shop := cardrail.AuthorizationAttempt{Amount: 100, Currency: "USD", Merchant: cardrail.Merchant{Name: "Shop", MCC: "5411", Country: "US"}}
	with := func(f func(*cardrail.CardPosition, *cardrail.AuthorizationAttempt)) (cardrail.CardPosition, cardrail.AuthorizationAttempt) {
		p, a := base, shop
		f(&p, &a)
		return p, a
	}
	cases := []struct {
		name string
		set  func(*cardrail.CardPosition, *cardrail.AuthorizationAttempt)
		want cardrail.DeclineReason
	}{
		{"approves within every limit", func(*cardrail.CardPosition, *cardrail.AuthorizationAttempt) {}, ""},
		{"program disabled comes first", func(p *cardrail.CardPosition, a *cardrail.AuthorizationAttempt) {
			p.ProgramEnabled, p.Status, a.Currency = false, cardrail.CardFrozen, "EUR"
		}, cardrail.DeclineProgramDisabled},
		{"a frozen card", func(p *cardrail.CardPosition, a *cardrail.AuthorizationAttempt) {
			p.Status, a.Currency = cardrail.CardFrozen, "EUR"
		}, cardrail.DeclineCardNotActive},
		{"another currency", func(_ *cardrail.CardPosition, a *cardrail.AuthorizationAttempt) { a.Currency, a.Amount = "EUR", 5000 }, cardrail.DeclineCurrencyMismatch},
		{"a blocked category", func(p *cardrail.CardPosition, a *cardrail.AuthorizationAttempt) {
			p.Controls.BlockedMCCs, a.Merchant.Country = []string{"5411"}, "RU"
			p.Controls.BlockedCountries = []string{"RU"}
		}, cardrail.DeclineMCCBlocked},
		{"a category outside the allow list", func(p *cardrail.CardPosition, _ *cardrail.AuthorizationAttempt) {
			p.Controls.AllowedMCCs = []string{"5812"}
		}, cardrail.DeclineMCCBlocked},
		{"a blocked country", func(p *cardrail.CardPosition, a *cardrail.AuthorizationAttempt) {
			p.Controls.BlockedCountries, a.Merchant.Country = []string{"RU"}, "RU"
		}, cardrail.DeclineCountryBlocked},
		{"a country outside the allow list", func(p *cardrail.CardPosition, _ *cardrail.AuthorizationAttempt) {
			p.Controls.AllowedCountries = []string{"GB"}
		}, cardrail.DeclineCountryBlocked},
		{"above the program's per-authorization limit", func(_ *cardrail.CardPosition, a *cardrail.AuthorizationAttempt) { a.Amount = 501 }, cardrail.DeclinePerAuthorization},
		{"the per-authorization limit is inclusive", func(_ *cardrail.CardPosition, a *cardrail.AuthorizationAttempt) { a.Amount = 500 }, ""},
		{"the card's tighter control wins", func(p *cardrail.CardPosition, _ *cardrail.AuthorizationAttempt) {
			p.Controls.PerAuthorization = ptr(int64(99))
		}, cardrail.DeclinePerAuthorization},
		{"the daily window", func(p *cardrail.CardPosition, _ *cardrail.AuthorizationAttempt) { p.DailyUsed = 701 }, cardrail.DeclineDailyLimit},
		{"the daily limit is inclusive", func(p *cardrail.CardPosition, _ *cardrail.AuthorizationAttempt) { p.DailyUsed = 700 }, ""},
		{"the monthly window", func(p *cardrail.CardPosition, _ *cardrail.AuthorizationAttempt) { p.MonthlyUsed = 801 }, cardrail.DeclineMonthlyLimit},
		{"insufficient funds comes last", func(p *cardrail.CardPosition, _ *cardrail.AuthorizationAttempt) { p.Available = 99 }, cardrail.DeclineInsufficientFunds},
		{"no limits at all", func(p *cardrail.CardPosition, a *cardrail.AuthorizationAttempt) {
			p.Limits, p.Available, a.Amount = cardrail.Limits{}, cardrail.MaxAmount, cardrail.MaxAmount
		}, ""},
		{"a window sum that would overflow declines", func(p *cardrail.CardPosition, a *cardrail.AuthorizationAttempt) {
			p.Limits, p.Available, a.Amount, p.DailyUsed = cardrail.Limits{Daily: 1 << 62}, cardrail.MaxAmount, cardrail.MaxAmount, 1<<63-10
		}, cardrail.DeclineDailyLimit},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, a := with(tc.set)
			if got := cardrail.Decide(p, a); got != tc.want {
				t.Fatalf("Decide = %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("DeclineReasons lists every reason Decide gives, once", func(t *testing.T) {
		seen := map[cardrail.DeclineReason]bool{}
		for _, tc := range cases {
			if tc.want != "" {
				seen[tc.want] = true
			}
		}
		listed := map[cardrail.DeclineReason]bool{}
		for _, r := range cardrail.DeclineReasons {
			if listed[r] {
				t.Errorf("%q listed twice", r)
			}
			listed[r] = true
			if !seen[r] {
				t.Errorf("%q is listed but no case gives it", r)
			}
		}
		for r := range seen {
			if !listed[r] {
				t.Errorf("Decide gives %q, which DeclineReasons leaves out", r)
			}
		}
	})
	t.Run("an approval lowers what the next attempt sees", func(t *testing.T) {
		p := base.Apply(cardrail.AuthorizationAttempt{Amount: 700})
		if p.Available != 300 || p.DailyUsed != 700 || p.MonthlyUsed != 700 {
			t.Fatalf("after Apply: %+v", p)
		}
		if got := cardrail.Decide(p, shop); got != "" {
			t.Fatalf("100 more: %q", got)
		}
		if got := cardrail.Decide(p, cardrail.AuthorizationAttempt{Amount: 101, Currency: "USD", Merchant: shop.Merchant}); got != cardrail.DeclineDailyLimit {
			t.Fatalf("101 more: %q", got)
		}
	})
}

func TestCardTransitions(t *testing.T) {
	cases := []struct {
		from, to cardrail.CardStatus
		by       cardrail.Actor
		ok       bool
	}{
		{cardrail.CardActive, cardrail.CardFrozen, cardrail.ActorOwner, true},
		{cardrail.CardActive, cardrail.CardFrozen, cardrail.ActorOperator, false},
		{cardrail.CardFrozen, cardrail.CardActive, cardrail.ActorOwner, true},
		{cardrail.CardBlocked, cardrail.CardActive, cardrail.ActorOwner, false},
		{cardrail.CardBlocked, cardrail.CardActive, cardrail.ActorOperator, true},
		{cardrail.CardFrozen, cardrail.CardBlocked, cardrail.ActorOperator, true},
		{cardrail.CardBlocked, cardrail.CardTerminated, cardrail.ActorOwner, true},
		{cardrail.CardTerminated, cardrail.CardActive, cardrail.ActorOperator, false},
		{cardrail.CardExpired, cardrail.CardActive, cardrail.ActorOperator, false},
		{cardrail.CardUnderReview, cardrail.CardActive, cardrail.ActorOperator, true},
		{cardrail.CardUnderReview, cardrail.CardActive, cardrail.ActorOwner, false},
		{cardrail.CardUnderReview, cardrail.CardFailed, cardrail.ActorOperator, true},
		{cardrail.CardFailed, cardrail.CardActive, cardrail.ActorOperator, false},
		{cardrail.CardActive, cardrail.CardExpired, cardrail.ActorSystem, true},
		{cardrail.CardActive, cardrail.CardExpired, cardrail.ActorOwner, false},
		{cardrail.CardPending, cardrail.CardActive, cardrail.ActorProvider, true},
	}
	for _, tc := range cases {
		if got := cardrail.CanTransition(tc.from, tc.to, tc.by); got != tc.ok {
			t.Errorf("%s → %s by %s = %v, want %v", tc.from, tc.to, tc.by, got, tc.ok)
		}
	}
	for _, s := range []cardrail.CardStatus{cardrail.CardTerminated, cardrail.CardExpired, cardrail.CardFailed} {
		for _, to := range cardrail.CardStatuses {
			for _, by := range []cardrail.Actor{cardrail.ActorOwner, cardrail.ActorOperator, cardrail.ActorSystem, cardrail.ActorProvider} {
				if cardrail.CanTransition(s, to, by) {
					t.Errorf("final status %s can become %s by %s", s, to, by)
				}
			}
		}
	}
}

func TestDisputeTransitions(t *testing.T) {
	cases := []struct {
		from, to cardrail.DisputeStatus
		by       cardrail.Actor
		ok       bool
	}{
		{cardrail.DisputeOpen, cardrail.DisputeSubmitted, cardrail.ActorOperator, true},
		{cardrail.DisputeOpen, cardrail.DisputeCanceled, cardrail.ActorOwner, true},
		{cardrail.DisputeOpen, cardrail.DisputeWon, cardrail.ActorOperator, false},
		{cardrail.DisputeSubmitted, cardrail.DisputeCanceled, cardrail.ActorOwner, false},
		{cardrail.DisputeSubmitted, cardrail.DisputeWon, cardrail.ActorOperator, true},
		{cardrail.DisputeSubmitted, cardrail.DisputeLost, cardrail.ActorOperator, true},
		{cardrail.DisputeWon, cardrail.DisputeLost, cardrail.ActorOperator, false},
	}
	for _, tc := range cases {
		if got := cardrail.CanMoveDispute(tc.from, tc.to, tc.by); got != tc.ok {
			t.Errorf("%s → %s by %s = %v, want %v", tc.from, tc.to, tc.by, got, tc.ok)
		}
	}
}

func TestMoney(t *testing.T) {
	cases := []struct {
		m    cardrail.Money
		want string
	}{
		{cardrail.Money{Amount: 1050, Currency: "USD"}, "10.50 USD"},
		{cardrail.Money{Amount: -5, Currency: "USD"}, "-0.05 USD"},
		{cardrail.Money{Amount: 1050, Currency: "JPY"}, "1050 JPY"},
		{cardrail.Money{Amount: 1050, Currency: "KWD"}, "1.050 KWD"},
	}
	for _, tc := range cases {
		if got := tc.m.String(); got != tc.want {
			t.Errorf("%+v = %q, want %q", tc.m, got, tc.want)
		}
	}
	if _, err := (cardrail.Money{Amount: 1, Currency: "USD"}).Add(cardrail.Money{Amount: 1, Currency: "EUR"}); err == nil {
		t.Error("adding USD to EUR succeeded")
	}
	if _, err := (cardrail.Money{Amount: 1<<63 - 1, Currency: "USD"}).Add(cardrail.Money{Amount: 1, Currency: "USD"}); err == nil {
		t.Error("overflow went unnoticed")
	}
	for a, ok := range map[int64]bool{0: false, 1: true, cardrail.MaxAmount: true, cardrail.MaxAmount + 1: false, -1: false} {
		if cardrail.ValidAmount(a) != ok {
			t.Errorf("ValidAmount(%d) = %v", a, !ok)
		}
	}
	for code, ok := range map[string]bool{"USD": true, "usd": false, "XXX": false, "KWD": true} {
		if cardrail.ValidCurrency(code) != ok {
			t.Errorf("ValidCurrency(%q) = %v", code, !ok)
		}
	}
}

func TestSpendingControlsValidate(t *testing.T) {
	limits := cardrail.Limits{PerAuthorization: 1000, Daily: 5000}
	cases := []struct {
		name   string
		c      cardrail.SpendingControls
		fields int
	}{
		{"within the program", cardrail.SpendingControls{PerAuthorization: ptr(int64(1000)), Monthly: ptr(int64(9_999_999))}, 0},
		{"looser than the program", cardrail.SpendingControls{Daily: ptr(int64(5001))}, 1},
		{"zero", cardrail.SpendingControls{PerAuthorization: ptr(int64(0))}, 1},
		{"allow and block together", cardrail.SpendingControls{AllowedMCCs: []string{"5411"}, BlockedMCCs: []string{"7995"}}, 1},
		{"a bad MCC and a bad country", cardrail.SpendingControls{BlockedMCCs: []string{"54a1"}, AllowedCountries: []string{"ZZ"}}, 2},
		{"an entry twice", cardrail.SpendingControls{BlockedCountries: []string{"US", "GB", "US"}}, 1},
		{"an entry three times", cardrail.SpendingControls{AllowedMCCs: []string{"5411", "5411", "5411"}}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.c.Validate("spending_controls", limits); len(got) != tc.fields {
				t.Fatalf("%d field errors, want %d: %v", len(got), tc.fields, got)
			}
		})
	}
}

func TestNewReferencesAt(t *testing.T) {
	at := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	before := cardrail.NewReference(cardrail.PrefixAuthorization)
	refs, now := cardrail.NewReferencesAt(func() time.Time { return at }, cardrail.PrefixAuthorization, cardrail.PrefixEvent, cardrail.PrefixAuthorization)
	after := cardrail.NewReference(cardrail.PrefixAuthorization)
	if !now.Equal(at) || len(refs) != 3 {
		t.Fatalf("NewReferencesAt = %v, %v", refs, now)
	}
	for i, prefix := range []string{cardrail.PrefixAuthorization, cardrail.PrefixEvent, cardrail.PrefixAuthorization} {
		if !cardrail.HasPrefix(refs[i], prefix) {
			t.Fatalf("reference %d is %q, want the prefix %q", i, refs[i], prefix)
		}
	}
	// One sequence with NewReference: what is minted between two calls
	// sorts between them.
	if !(before < refs[0] && refs[0] < refs[2] && refs[2] < after) {
		t.Fatalf("%s, %v, %s are out of order", before, refs, after)
	}
}

func TestReferenceTime(t *testing.T) {
	before := time.Now().Truncate(time.Millisecond)
	ref := cardrail.NewReference(cardrail.PrefixCard)
	after := time.Now()
	at, ok := cardrail.ReferenceTime(ref)
	if !ok || at.Before(before) || at.After(after) {
		t.Fatalf("ReferenceTime(%s) = %v, %v; minted between %v and %v", ref, at, ok, before, after)
	}
	for _, bad := range []string{"", "card", "card_", "card_01" + strings.Repeat("!", 24), "card_" + strings.Repeat("z", 26)} {
		if at, ok := cardrail.ReferenceTime(bad); ok {
			t.Errorf("ReferenceTime(%q) = %v, want no time", bad, at)
		}
	}
}

func TestReferences(t *testing.T) {
	a := cardrail.NewReference(cardrail.PrefixCard)
	time.Sleep(time.Millisecond)
	b := cardrail.NewReference(cardrail.PrefixCard)
	if !cardrail.HasPrefix(a, cardrail.PrefixCard) || cardrail.HasPrefix(a, cardrail.PrefixAuthorization) || !(a < b) {
		t.Fatalf("references %q, %q", a, b)
	}
	body := strings.TrimPrefix(a, "card_")
	for _, bad := range []string{"card_" + strings.ToUpper(body), "card_" + body[:25] + "%", "card_" + body[:25] + "_", "card_" + body + "0", "card_" + body[:25], "CARD_" + body, "card" + body} {
		if cardrail.HasPrefix(bad, cardrail.PrefixCard) {
			t.Errorf("HasPrefix(%q, card) = true, want false", bad)
		}
	}
	prev := ""
	for range 1000 {
		r := cardrail.NewReference(cardrail.PrefixEvent)
		if r <= prev {
			t.Fatalf("%q does not sort after %q", r, prev)
		}
		if body := strings.TrimPrefix(r, "evt_"); len(body) != 26 || strings.Trim(body, "0123456789abcdefghjkmnpqrstvwxyz") != "" {
			t.Fatalf("%q is not a lowercase ULID after its prefix", r)
		}
		prev = r
	}
}

// TestEventAppendJSON checks that the hand-framed event payload is exactly
// what json.Marshal renders, for awkward strings and an empty object too.
func TestEventAppendJSON(t *testing.T) {
	at := time.Date(2026, 11, 24, 5, 0, 0, 123456000, time.UTC)
	obj := map[string]any{"name": "Tom & Jerry <café>\u2028", "n": 1}
	withObj, err := cardrail.NewEvent(cardrail.EventAuthorizationCreated, true, "auth_1", obj, at)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []cardrail.Event{
		withObj,
		{ID: "evt_\"quoted\"", Object: "event", Type: "x<y>", CreatedAt: at, Livemode: false},
		{ID: "evt_2", Object: "event", Type: "card.created", CreatedAt: time.Time{}, Data: cardrail.EventData{Object: []byte(`{"a":[1,2]}`)}},
	} {
		want, err := json.Marshal(&e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.AppendJSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("AppendJSON = %s\njson.Marshal = %s", got, want)
		}
	}
}
