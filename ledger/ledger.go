// Package ledger is Cardrail's double-entry journal: account naming, journal
// entries and the rules they obey. Every movement of money is one Entry whose
// lines sum to zero; storage applies an entry atomically with the state change
// it belongs to and refuses any line that would take a floored account below
// zero.
package ledger

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// Kind is what an account holds.
type Kind string

// Account kinds. Wallet and card accounts are floored at zero; system accounts
// record where money came from or went to and may go negative.
const (
	Wallet            Kind = "wallet"
	CardAvailable     Kind = "card_available"
	CardHeld          Kind = "card_held"
	Funding           Kind = "funding"
	NetworkSettlement Kind = "network_settlement"
	DisputeRecovery   Kind = "dispute_recovery"
)

// SystemKinds are the per-mode, per-currency system accounts.
var SystemKinds = []Kind{Funding, NetworkSettlement, DisputeRecovery}

// Floored reports whether accounts of kind k may never go below zero.
func (k Kind) Floored() bool { return k == Wallet || k == CardAvailable || k == CardHeld }

// Entry types.
const (
	TypeDeposit        = "deposit"         // funding → wallet (sandbox top-up, operator credit)
	TypeCardFunding    = "card_funding"    // wallet → card available
	TypeCardWithdrawal = "card_withdrawal" // card available → wallet
	TypeHold           = "authorization_hold"
	TypeHoldRelease    = "hold_release" // reversal, expiry, or settlement remainder
	TypeSettlement     = "settlement"   // card held → network_settlement
	TypeRefund         = "refund"       // network_settlement → card
	TypeDisputeWon     = "dispute_won"  // dispute_recovery → card
	TypeCardSweep      = "card_sweep"   // a closed card's balance → wallet
)

// CardAvailableAccount and CardHeldAccount name a card's two accounts.
func CardAvailableAccount(card string) string { return card + ".available" }

// CardHeldAccount names the account holding a card's pending authorizations.
func CardHeldAccount(card string) string { return card + ".held" }

// SystemAccount names a system account of a mode and currency.
func SystemAccount(livemode bool, currency string, k Kind) string {
	mode := "test"
	if livemode {
		mode = "live"
	}
	return "sys." + mode + "." + currency + "." + string(k)
}

// KindOf tells an account's kind from its id.
func KindOf(account string) Kind {
	switch {
	case strings.HasPrefix(account, "wal_"):
		return Wallet
	case strings.HasSuffix(account, ".available"):
		return CardAvailable
	case strings.HasSuffix(account, ".held"):
		return CardHeld
	case strings.HasPrefix(account, "sys."):
		return Kind(account[strings.LastIndexByte(account, '.')+1:])
	}
	return ""
}

// Line moves Amount (signed, minor units) into Account.
type Line struct {
	Account string
	Amount  int64
}

// Entry is one balanced journal entry. The references tie it to the objects
// whose state change it belongs to.
type Entry struct {
	Reference     string
	Type          string
	Livemode      bool
	Currency      string
	Card          string
	Authorization string
	Dispute       string
	Lines         []Line
}

// Validate checks that the entry is balanced, non-trivial and overflow-free.
func (e *Entry) Validate() error {
	if len(e.Lines) < 2 {
		return fmt.Errorf("entry %s: %d lines, want at least 2", e.Type, len(e.Lines))
	}
	var sum int64
	for _, l := range e.Lines {
		// MinInt64 has no negation, which the storage's balance checks need.
		if l.Amount == 0 || l.Amount == math.MinInt64 || l.Account == "" || KindOf(l.Account) == "" {
			return fmt.Errorf("entry %s: bad line %+v", e.Type, l)
		}
		next := sum + l.Amount
		if (l.Amount > 0 && next < sum) || (l.Amount < 0 && next > sum) {
			return fmt.Errorf("entry %s: overflow", e.Type)
		}
		sum = next
	}
	if sum != 0 {
		return fmt.Errorf("entry %s: lines sum to %d, not zero", e.Type, sum)
	}
	return nil
}

// Move is the common two-line entry: amount from one account to another.
func Move(typ string, livemode bool, currency, from, to string, amount int64) Entry {
	return Entry{Type: typ, Livemode: livemode, Currency: currency,
		Lines: []Line{{Account: from, Amount: -amount}, {Account: to, Amount: amount}}}
}

// InsufficientFunds is returned by storage when a line would take a floored
// account below zero; nothing of the entry is applied.
type InsufficientFunds struct {
	Account string
}

func (e *InsufficientFunds) Error() string {
	return "insufficient funds in " + e.Account
}

// IsInsufficientFunds reports whether err is an *InsufficientFunds, and for
// which account.
func IsInsufficientFunds(err error) (string, bool) {
	var e *InsufficientFunds
	if errors.As(err, &e) {
		return e.Account, true
	}
	return "", false
}
