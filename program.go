package cardrail

import (
	"slices"
	"time"
)

// Card types and brands.
const (
	CardTypeVirtual  = "virtual"
	CardTypePhysical = "physical"
)

// Program statuses.
const (
	ProgramEnabled  = "enabled"
	ProgramDisabled = "disabled"
)

// Limits are a program's ceilings, in the program currency's minor unit.
// Zero means "no limit" for the spending windows; MaxBalance zero means no
// ceiling on a card's available + held.
type Limits struct {
	MaxBalance       int64 `json:"max_balance"`
	PerAuthorization int64 `json:"per_authorization"`
	Daily            int64 `json:"daily"`
	Monthly          int64 `json:"monthly"`
}

// Program is a card product open in a set of markets and routed to issuing
// partners in priority order. Programs are configuration that operators
// change at run time; every request reads the committed configuration.
type Program struct {
	Object    string    `json:"object"`
	Code      string    `json:"code"`
	Name      string    `json:"name"`
	Brand     string    `json:"brand"`
	CardType  string    `json:"card_type"`
	Currency  string    `json:"currency"`
	Markets   []string  `json:"markets"`
	Limits    Limits    `json:"limits"`
	Status    string    `json:"status"`
	Providers []string  `json:"providers"`
	Livemode  bool      `json:"livemode"`
	CreatedAt time.Time `json:"created_at"`
}

// Enabled reports whether the program accepts new cards and authorizations.
func (p *Program) Enabled() bool { return p.Status == ProgramEnabled }

// OpenIn reports whether country is one of the program's markets.
func (p *Program) OpenIn(country string) bool { return slices.Contains(p.Markets, country) }

// ProviderState is an issuing partner's routing switch in one mode.
type ProviderState struct {
	Name     string `json:"name"`
	Enabled  bool   `json:"enabled"`
	Livemode bool   `json:"livemode"`
}
