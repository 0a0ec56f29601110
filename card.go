package cardrail

import (
	"slices"
	"time"
)

// CardStatus is a managed card's place in its lifecycle.
type CardStatus string

// Card statuses, as the SPEC lists them.
const (
	CardPending     CardStatus = "pending"
	CardActive      CardStatus = "active"
	CardFrozen      CardStatus = "frozen"
	CardBlocked     CardStatus = "blocked"
	CardExpired     CardStatus = "expired"
	CardTerminated  CardStatus = "terminated"
	CardFailed      CardStatus = "failed"
	CardUnderReview CardStatus = "under_review"
)

// CardStatuses lists every status, for validating filters.
var CardStatuses = []CardStatus{CardPending, CardActive, CardFrozen, CardBlocked, CardExpired, CardTerminated, CardFailed, CardUnderReview}

// Actor is who asks for a card transition.
type Actor string

// Actors.
const (
	ActorProvider Actor = "provider"
	ActorOwner    Actor = "owner"
	ActorOperator Actor = "operator"
	ActorSystem   Actor = "system" // the expiry job
)

// cardTransitions is the whole card lifecycle: the only moves there are, and
// who may make each. Anything not listed is 409 invalid_card_state.
var cardTransitions = []struct {
	from []CardStatus
	to   CardStatus
	by   []Actor
}{
	{[]CardStatus{CardPending}, CardActive, []Actor{ActorProvider}},
	{[]CardStatus{CardPending}, CardFailed, []Actor{ActorProvider}},
	{[]CardStatus{CardPending}, CardUnderReview, []Actor{ActorProvider}},
	{[]CardStatus{CardUnderReview}, CardActive, []Actor{ActorOperator}},
	{[]CardStatus{CardUnderReview}, CardFailed, []Actor{ActorOperator}},
	{[]CardStatus{CardActive}, CardFrozen, []Actor{ActorOwner}},
	{[]CardStatus{CardFrozen}, CardActive, []Actor{ActorOwner}},
	{[]CardStatus{CardActive, CardFrozen}, CardBlocked, []Actor{ActorOperator}},
	{[]CardStatus{CardBlocked}, CardActive, []Actor{ActorOperator}},
	{[]CardStatus{CardActive, CardFrozen, CardBlocked}, CardTerminated, []Actor{ActorOwner, ActorOperator}},
	{[]CardStatus{CardActive, CardFrozen, CardBlocked}, CardExpired, []Actor{ActorSystem}},
}

// CanTransition reports whether actor may move a card from one status to
// another.
func CanTransition(from, to CardStatus, by Actor) bool {
	for _, t := range cardTransitions {
		if t.to == to && slices.Contains(t.from, from) && slices.Contains(t.by, by) {
			return true
		}
	}
	return false
}

// Final reports whether no transition leaves s.
func (s CardStatus) Final() bool {
	return s == CardTerminated || s == CardExpired || s == CardFailed
}

// Closed reports whether the card no longer keeps money: every credit to a
// closed card is swept to the owner's wallet in the same journal entry.
func (s CardStatus) Closed() bool { return s == CardTerminated || s == CardExpired }

// CanMoveMoney reports whether the owner may fund or withdraw the card.
func (s CardStatus) CanMoveMoney() bool { return s == CardActive || s == CardFrozen }

// Balance is a card's money: available to spend, and held by pending
// authorizations.
type Balance struct {
	Available int64 `json:"available"`
	Held      int64 `json:"held"`
}

// Card is a managed card. It never carries the PAN or CVV; only the last four
// digits and expiry leave the service outside the audited sandbox reveal.
type Card struct {
	Object           string            `json:"object"`
	Reference        string            `json:"reference"`
	Program          string            `json:"program"`
	Provider         *string           `json:"provider"`
	Status           CardStatus        `json:"status"`
	StatusReason     *string           `json:"status_reason"`
	Type             string            `json:"type"`
	Brand            string            `json:"brand"`
	Currency         string            `json:"currency"`
	Last4            *string           `json:"last4"`
	ExpMonth         *int              `json:"exp_month"`
	ExpYear          *int              `json:"exp_year"`
	Balance          Balance           `json:"balance"`
	Nickname         *string           `json:"nickname"`
	SpendingControls SpendingControls  `json:"spending_controls"`
	Metadata         map[string]string `json:"metadata"`
	Livemode         bool              `json:"livemode"`
	CreatedAt        time.Time         `json:"created_at"`
	UpdatedAt        time.Time         `json:"updated_at"`

	// Owner is the subject of the cardholder; it is not rendered because
	// a caller only ever sees their own cards.
	Owner string `json:"-"`
}

// CardSecret is the sealed card data kept beside a card: the PAN sealed under
// a key whose id travels with the ciphertext, and the partner's own id.
type CardSecret struct {
	KeyID          string
	SealedPAN      []byte
	ProviderCardID string
}

// SealedCard is a card's sealed number with the id of the key sealing it.
type SealedCard struct {
	Reference string
	KeyID     string
	SealedPAN []byte
}

// CardDetails is the sandbox reveal of a card's number.
type CardDetails struct {
	Object    string `json:"object"`
	Reference string `json:"reference"`
	Number    string `json:"number"`
	CVC       string `json:"cvc"`
	ExpMonth  int    `json:"exp_month"`
	ExpYear   int    `json:"exp_year"`
	Livemode  bool   `json:"livemode"`
}
