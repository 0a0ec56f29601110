package cardrail

import (
	"context"
	"errors"
)

// Provider is an issuing partner behind a card program's route. Implementations
// sit side by side (provider/sandbox today, one package per real partner) and
// are picked by name from a registry, so routing never knows which partner it
// talks to.
type Provider interface {
	// Name is the provider's routing name, as programs list it.
	Name() string
	// Sandbox reports whether the provider issues test cards only; sandbox
	// programs route to sandbox providers only and production programs never
	// do.
	Sandbox() bool
	// Supports reports whether the provider can issue a card for a cardholder
	// in country (ISO 3166-1 alpha-2) denominated in currency (ISO 4217).
	Supports(country, currency string) bool
	// Issue asks the partner for a card. Calls carry IssueRequest.IdempotencyKey
	// so that a retried call after a timeout never yields a second card.
	Issue(ctx context.Context, req IssueRequest) (IssuedCard, error)
}

// CVVComputer is implemented by providers that can derive a card's CVV on
// demand (the sandbox reveal). A CVV is never stored.
type CVVComputer interface {
	CVV(pan string, expMonth, expYear int) string
}

// IssueRequest is what routing sends a provider.
type IssueRequest struct {
	IdempotencyKey string
	CardReference  string
	Program        string
	Brand          string
	Type           string
	Currency       string
	Country        string
	Livemode       bool
}

// IssuedCard is a provider's answer. The PAN is sealed before it is stored and
// never leaves the service except through the audited sandbox reveal.
type IssuedCard struct {
	ProviderCardID string
	PAN            string
	ExpMonth       int
	ExpYear        int
	// UnderReview is set when the partner accepted the request but holds the
	// card for manual review; the card starts under_review instead of active.
	UnderReview bool
}

// ErrProviderTimeout is returned (wrapped) by providers whose call did not
// answer in time.
var ErrProviderTimeout = errors.New("provider timed out")
