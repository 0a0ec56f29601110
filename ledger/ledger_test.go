package ledger_test

import (
	"testing"

	"github.com/cardrail/cardrail/ledger"
)

func TestEntryValidate(t *testing.T) {
	card := "card_01m85pzhch41z3xs03np47j63w"
	cases := []struct {
		name string
		e    ledger.Entry
		ok   bool
	}{
		{"a balanced move", ledger.Move(ledger.TypeHold, false, "USD", ledger.CardAvailableAccount(card), ledger.CardHeldAccount(card), 100), true},
		{"three lines summing to zero", ledger.Entry{Lines: []ledger.Line{{ledger.CardHeldAccount(card), -100}, {ledger.SystemAccount(false, "USD", ledger.NetworkSettlement), 60}, {ledger.CardAvailableAccount(card), 40}}}, true},
		{"unbalanced", ledger.Entry{Lines: []ledger.Line{{ledger.CardHeldAccount(card), -100}, {ledger.CardAvailableAccount(card), 99}}}, false},
		{"a single line", ledger.Entry{Lines: []ledger.Line{{ledger.CardHeldAccount(card), 0}}}, false},
		{"a zero line", ledger.Entry{Lines: []ledger.Line{{ledger.CardHeldAccount(card), 0}, {ledger.CardAvailableAccount(card), 0}}}, false},
		{"an unknown account", ledger.Entry{Lines: []ledger.Line{{"mystery", -1}, {ledger.CardAvailableAccount(card), 1}}}, false},
		{"a line of the lowest int64, which has no negation", ledger.Entry{Lines: []ledger.Line{{ledger.CardHeldAccount(card), -1 << 63}, {ledger.CardAvailableAccount(card), 1<<63 - 1}, {ledger.SystemAccount(false, "USD", ledger.Funding), 1}}}, false},
		{"an overflowing sum", ledger.Entry{Lines: []ledger.Line{{ledger.CardHeldAccount(card), 1<<63 - 1}, {ledger.CardAvailableAccount(card), 1}, {ledger.SystemAccount(false, "USD", ledger.Funding), -1}}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.e.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestAccountKinds(t *testing.T) {
	cases := map[string]ledger.Kind{
		"wal_01m85pzswsc28aqnpjpn9j1k4b":                          ledger.Wallet,
		"card_01m85pzhch41z3xs03np47j63w.available":               ledger.CardAvailable,
		"card_01m85pzhch41z3xs03np47j63w.held":                    ledger.CardHeld,
		ledger.SystemAccount(true, "NGN", ledger.DisputeRecovery): ledger.DisputeRecovery,
		"something": "",
	}
	for account, want := range cases {
		if got := ledger.KindOf(account); got != want {
			t.Errorf("KindOf(%q) = %q, want %q", account, got, want)
		}
	}
	for _, k := range ledger.SystemKinds {
		if k.Floored() {
			t.Errorf("system account %s is floored", k)
		}
	}
	for _, k := range []ledger.Kind{ledger.Wallet, ledger.CardAvailable, ledger.CardHeld} {
		if !k.Floored() {
			t.Errorf("%s is not floored", k)
		}
	}
}
