package cardrail

import (
	"slices"
	"time"
)

// AuthorizationStatus is an authorization's place in its lifecycle.
type AuthorizationStatus string

// Authorization statuses.
const (
	AuthPending  AuthorizationStatus = "pending"
	AuthDeclined AuthorizationStatus = "declined"
	AuthSettled  AuthorizationStatus = "settled"
	AuthReversed AuthorizationStatus = "reversed"
	AuthExpired  AuthorizationStatus = "expired"
)

// DeclineReason says why an authorization was declined.
type DeclineReason string

// Decline reasons, in the order Decide checks them: the first that applies
// is the one reported.
const (
	DeclineProgramDisabled   DeclineReason = "program_disabled"
	DeclineCardNotActive     DeclineReason = "card_not_active"
	DeclineCurrencyMismatch  DeclineReason = "currency_mismatch"
	DeclineMCCBlocked        DeclineReason = "merchant_category_blocked"
	DeclineCountryBlocked    DeclineReason = "merchant_country_blocked"
	DeclinePerAuthorization  DeclineReason = "exceeds_per_authorization_limit"
	DeclineDailyLimit        DeclineReason = "exceeds_daily_limit"
	DeclineMonthlyLimit      DeclineReason = "exceeds_monthly_limit"
	DeclineInsufficientFunds DeclineReason = "insufficient_funds"
)

// DeclineReasons lists every decline reason, in the order Decide checks
// them, for callers that must know the whole set in advance (metrics keep
// one series per reason).
var DeclineReasons = []DeclineReason{
	DeclineProgramDisabled, DeclineCardNotActive, DeclineCurrencyMismatch, DeclineMCCBlocked, DeclineCountryBlocked,
	DeclinePerAuthorization, DeclineDailyLimit, DeclineMonthlyLimit, DeclineInsufficientFunds,
}

// Merchant is where a card is used.
type Merchant struct {
	Name    string `json:"name"`
	MCC     string `json:"mcc"`
	Country string `json:"country"`
	City    string `json:"city,omitempty"`
}

// Authorization is a card-network request to spend: approved ones hold card
// balance until settled, reversed or expired. For approved authorizations
// Amount = HeldAmount + SettledAmount + ReversedAmount always holds; whatever
// settlement or expiry releases counts as reversed.
type Authorization struct {
	Object         string              `json:"object"`
	Reference      string              `json:"reference"`
	Card           string              `json:"card"`
	Status         AuthorizationStatus `json:"status"`
	Amount         int64               `json:"amount"`
	Currency       string              `json:"currency"`
	HeldAmount     int64               `json:"held_amount"`
	SettledAmount  int64               `json:"settled_amount"`
	ReversedAmount int64               `json:"reversed_amount"`
	RefundedAmount int64               `json:"refunded_amount"`
	Merchant       Merchant            `json:"merchant"`
	DeclineReason  *DeclineReason      `json:"decline_reason"`
	ExpiresAt      *time.Time          `json:"expires_at"`
	Livemode       bool                `json:"livemode"`
	CreatedAt      time.Time           `json:"created_at"`
	UpdatedAt      time.Time           `json:"updated_at"`

	Owner string `json:"-"`
}

// AuthorizationAttempt is what a merchant asks of a card.
type AuthorizationAttempt struct {
	Amount   int64
	Currency string
	Merchant Merchant
}

// CardPosition is everything the decision needs to know about a card at the
// instant of an authorization, read under the card's lock.
type CardPosition struct {
	ProgramEnabled bool
	Status         CardStatus
	Currency       string
	Limits         Limits // program limits
	Controls       SpendingControls
	Available      int64
	DailyUsed      int64 // approved amount − reversed in the attempt's UTC day
	MonthlyUsed    int64 // likewise for the UTC month
}

// Decide is the whole authorization decision: a pure function of the card's
// position and the attempt, returning "" to approve or the first decline
// reason that applies. Keeping it pure lets storage evaluate many attempts in
// one transaction, feeding each approved one's effect into the next.
func Decide(c CardPosition, a AuthorizationAttempt) DeclineReason {
	lim := EffectiveLimits(c.Limits, c.Controls)
	within := func(used, limit int64) bool {
		if limit == 0 {
			return true
		}
		s, ok := AddAmounts(used, a.Amount)
		return ok && s <= limit
	}
	switch {
	case !c.ProgramEnabled:
		return DeclineProgramDisabled
	case c.Status != CardActive:
		return DeclineCardNotActive
	case a.Currency != c.Currency:
		return DeclineCurrencyMismatch
	case c.Controls.AllowedMCCs != nil && !slices.Contains(c.Controls.AllowedMCCs, a.Merchant.MCC),
		slices.Contains(c.Controls.BlockedMCCs, a.Merchant.MCC):
		return DeclineMCCBlocked
	case c.Controls.AllowedCountries != nil && !slices.Contains(c.Controls.AllowedCountries, a.Merchant.Country),
		slices.Contains(c.Controls.BlockedCountries, a.Merchant.Country):
		return DeclineCountryBlocked
	case lim.PerAuthorization > 0 && a.Amount > lim.PerAuthorization:
		return DeclinePerAuthorization
	case !within(c.DailyUsed, lim.Daily):
		return DeclineDailyLimit
	case !within(c.MonthlyUsed, lim.Monthly):
		return DeclineMonthlyLimit
	case a.Amount > c.Available:
		return DeclineInsufficientFunds
	}
	return ""
}

// Apply returns the position after an approved attempt, so a batch can decide
// the next attempt on the same card.
func (c CardPosition) Apply(a AuthorizationAttempt) CardPosition {
	c.Available -= a.Amount
	c.DailyUsed += a.Amount
	c.MonthlyUsed += a.Amount
	return c
}

// DayWindow and MonthWindow name the UTC spending windows t falls in.
func DayWindow(t time.Time) string   { return "d" + t.UTC().Format("20060102") }
func MonthWindow(t time.Time) string { return "m" + t.UTC().Format("200601") }
