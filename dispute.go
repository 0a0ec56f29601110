package cardrail

import (
	"slices"
	"time"
)

// DisputeStatus is a dispute case's place in its lifecycle.
type DisputeStatus string

// Dispute statuses.
const (
	DisputeOpen      DisputeStatus = "open"
	DisputeSubmitted DisputeStatus = "submitted"
	DisputeWon       DisputeStatus = "won"
	DisputeLost      DisputeStatus = "lost"
	DisputeCanceled  DisputeStatus = "canceled"
)

// Active reports whether a dispute still claims part of its authorization's
// settled amount: open and submitted cases may yet be won, and won ones were.
func (s DisputeStatus) Active() bool {
	return s == DisputeOpen || s == DisputeSubmitted || s == DisputeWon
}

// Pending reports whether the case is still undecided; one such case at a
// time per authorization.
func (s DisputeStatus) Pending() bool { return s == DisputeOpen || s == DisputeSubmitted }

// DisputeReasons are the reasons a cardholder can give.
var DisputeReasons = []string{"fraudulent", "duplicate", "not_received", "canceled", "product_not_as_described", "other"}

// disputeTransitions is the dispute lifecycle: the only moves there are and
// who may make each.
var disputeTransitions = []struct {
	from DisputeStatus
	to   DisputeStatus
	by   Actor
}{
	{DisputeOpen, DisputeSubmitted, ActorOperator},
	{DisputeOpen, DisputeCanceled, ActorOwner},
	{DisputeSubmitted, DisputeWon, ActorOperator},
	{DisputeSubmitted, DisputeLost, ActorOperator},
}

// CanMoveDispute reports whether actor may move a dispute from one status to
// another.
func CanMoveDispute(from, to DisputeStatus, by Actor) bool {
	return slices.ContainsFunc(disputeTransitions, func(t struct {
		from DisputeStatus
		to   DisputeStatus
		by   Actor
	}) bool {
		return t.from == from && t.to == to && t.by == by
	})
}

// Dispute is a cardholder's case against a settled authorization.
type Dispute struct {
	Object        string        `json:"object"`
	Reference     string        `json:"reference"`
	Authorization string        `json:"authorization"`
	Card          string        `json:"card"`
	Status        DisputeStatus `json:"status"`
	Reason        string        `json:"reason"`
	Amount        int64         `json:"amount"`
	Currency      string        `json:"currency"`
	Description   *string       `json:"description"`
	Livemode      bool          `json:"livemode"`
	CreatedAt     time.Time     `json:"created_at"`
	UpdatedAt     time.Time     `json:"updated_at"`

	Owner string `json:"-"`
}

// DisputeFilter selects disputes.
type DisputeFilter struct {
	Livemode      bool
	Owner         string
	Authorization string
	ListParams
}

// EventFilter selects stored events.
type EventFilter struct {
	Livemode bool
	Type     string
	Object   string
	ListParams
}
