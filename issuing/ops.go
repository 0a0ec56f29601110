package issuing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/provider"
)

// audit records an operator action in the transaction that performs it, so
// the record exists exactly when the change does.
func (s *Service) audit(ctx context.Context, tx cardrail.Tx, c cardrail.Caller, action, target string, before, after any) error {
	render := func(v any) (json.RawMessage, error) {
		if v == nil {
			return nil, nil
		}
		return json.Marshal(v)
	}
	b, err := render(before)
	if err != nil {
		return err
	}
	a, err := render(after)
	if err != nil {
		return err
	}
	ref, now := cardrail.NewReferenceAt(s.now, cardrail.PrefixAudit)
	return tx.InsertAudit(ctx, &cardrail.AuditRecord{Reference: ref, Actor: c.Subject,
		Action: action, Target: target, Before: b, After: a, Livemode: c.Livemode, RequestID: cardrail.RequestID(ctx), CreatedAt: now})
}

// CardAction is an operator's action on a card: the status it leads to and
// the one status it must start from (empty: any the transition table allows).
type CardAction struct {
	Name string
	To   cardrail.CardStatus
	From cardrail.CardStatus
}

// Operator card actions.
var (
	ActionBlock     = CardAction{"block", cardrail.CardBlocked, ""}
	ActionUnblock   = CardAction{"unblock", cardrail.CardActive, cardrail.CardBlocked}
	ActionTerminate = CardAction{"terminate", cardrail.CardTerminated, ""}
	ActionApprove   = CardAction{"approve", cardrail.CardActive, cardrail.CardUnderReview}
	ActionReject    = CardAction{"reject", cardrail.CardFailed, cardrail.CardUnderReview}
)

// OperateCard applies an operator action to any card of the operator's mode,
// audited.
func (s *Service) OperateCard(ctx context.Context, c cardrail.Caller, ref string, act CardAction) (*cardrail.Card, error) {
	var out *cardrail.Card
	err := s.store.Tx(ctx, func(tx cardrail.Tx) error {
		card, err := s.lockCard(ctx, tx, c, ref, true)
		if err != nil {
			return err
		}
		before := *card
		if act.From != "" && card.Status != act.From {
			return cardrail.Errorf(cardrail.CodeInvalidCardState, "Card %s is %s; %s applies to %s cards.", ref, card.Status, act.Name, act.From)
		}
		if out, err = s.transition(ctx, tx, card, act.To, cardrail.ActorOperator); err != nil {
			return err
		}
		return s.audit(ctx, tx, c, "card."+act.Name, ref, before, out)
	})
	return out, cardrail.WithOp("ops.Card", err)
}

// SetProgramEnabled turns a program on or off.
func (s *Service) SetProgramEnabled(ctx context.Context, c cardrail.Caller, code string, enabled bool) (*cardrail.Program, error) {
	status, action := cardrail.ProgramDisabled, "program.disabled"
	if enabled {
		status, action = cardrail.ProgramEnabled, "program.enabled"
	}
	return s.changeProgram(ctx, c, code, action, func(p *cardrail.Program) error {
		p.Status = status
		return nil
	})
}

// SetProgramCountries activates and deactivates a program's markets.
func (s *Service) SetProgramCountries(ctx context.Context, c cardrail.Caller, code string, activate, deactivate []string) (*cardrail.Program, error) {
	var errs []cardrail.FieldError
	for field, list := range map[string][]string{"activate": activate, "deactivate": deactivate} {
		for i, cc := range list {
			if !cardrail.ValidCountry(cc) {
				errs = append(errs, cardrail.FieldError{Field: fmt.Sprintf("%s[%d]", field, i), Message: "must be an ISO 3166-1 alpha-2 country code"})
			}
			if slices.Contains(activate, cc) && slices.Contains(deactivate, cc) && field == "activate" {
				errs = append(errs, cardrail.FieldError{Field: fmt.Sprintf("activate[%d]", i), Message: "cannot also be deactivated"})
			}
		}
	}
	if len(activate)+len(deactivate) == 0 {
		errs = append(errs, cardrail.FieldError{Field: "activate", Message: "activate or deactivate at least one country"})
	}
	if len(errs) > 0 {
		return nil, cardrail.Invalid(errs...)
	}
	return s.changeProgram(ctx, c, code, "program.countries", func(p *cardrail.Program) error {
		for _, cc := range activate {
			if !slices.Contains(p.Markets, cc) {
				p.Markets = append(p.Markets, cc)
			}
		}
		p.Markets = slices.DeleteFunc(p.Markets, func(cc string) bool { return slices.Contains(deactivate, cc) })
		slices.Sort(p.Markets)
		return nil
	})
}

// maxRoute bounds a program's route: failover past a handful of partners
// would only add their timeouts to a card request.
const maxRoute = 8

// SetProgramProviders replaces a program's route: the issuing partners
// card creation tries, in order. Each must be a partner of the operator's
// mode (a sandbox adapter never serves production), named once.
func (s *Service) SetProgramProviders(ctx context.Context, c cardrail.Caller, code string, providers []string) (*cardrail.Program, error) {
	var errs []cardrail.FieldError
	if len(providers) == 0 || len(providers) > maxRoute {
		errs = append(errs, cardrail.FieldError{Field: "providers", Message: fmt.Sprintf(
			"must name 1 to %d issuing partners, in the order to try them (to stop issuing, disable the program)", maxRoute)})
	}
	for i, name := range providers {
		field := fmt.Sprintf("providers[%d]", i)
		if p, ok := s.registry.Lookup(name); !ok || p.Sandbox() == c.Livemode {
			errs = append(errs, cardrail.FieldError{Field: field, Message: fmt.Sprintf("no issuing partner named %q serves %s", name, cardrail.ModeName(c.Livemode))})
		} else if slices.Index(providers, name) < i {
			errs = append(errs, cardrail.FieldError{Field: field, Message: fmt.Sprintf("%q is already on the route", name)})
		}
	}
	if len(errs) > 0 {
		return nil, cardrail.Invalid(errs...)
	}
	return s.changeProgram(ctx, c, code, "program.providers", func(p *cardrail.Program) error {
		// A partner that issues the program's currency nowhere could
		// never issue one of its cards: routing would skip it for good.
		var errs []cardrail.FieldError
		for i, name := range providers {
			if !s.issuesCurrency(name, p.Currency) {
				errs = append(errs, cardrail.FieldError{Field: fmt.Sprintf("providers[%d]", i),
					Message: fmt.Sprintf("issuing partner %q issues no %s cards, the program's currency", name, p.Currency)})
			}
		}
		if len(errs) > 0 {
			return cardrail.Invalid(errs...)
		}
		p.Providers = slices.Clone(providers)
		return nil
	})
}

// issuesCurrency reports whether the registered partner name issues cards
// in currency for a cardholder in some country.
func (s *Service) issuesCurrency(name, currency string) bool {
	p, ok := s.registry.Lookup(name)
	if !ok {
		return false
	}
	for _, cc := range cardrail.Countries() {
		if p.Supports(cc, currency) {
			return true
		}
	}
	return false
}

func (s *Service) changeProgram(ctx context.Context, c cardrail.Caller, code, action string, change func(*cardrail.Program) error) (*cardrail.Program, error) {
	var out *cardrail.Program
	err := s.store.Tx(ctx, func(tx cardrail.Tx) error {
		p, err := tx.ProgramForUpdate(ctx, c.Livemode, code)
		if err != nil {
			_, err = lookup(p, err, "program", code)
			return err
		}
		before := *p
		before.Markets, before.Providers = slices.Clone(p.Markets), slices.Clone(p.Providers)
		if err := change(p); err != nil {
			return err
		}
		if err := tx.SaveProgram(ctx, p); err != nil {
			return err
		}
		out = p
		return s.audit(ctx, tx, c, action, code, before, p)
	})
	return out, cardrail.WithOp("ops.Program", err)
}

// SetProviderEnabled switches a provider on or off for routing in the
// operator's mode. The provider must be registered or named by a program.
func (s *Service) SetProviderEnabled(ctx context.Context, c cardrail.Caller, name string, enabled bool) (*cardrail.ProviderState, error) {
	known, err := s.providerNames(ctx, c.Livemode)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(known, name) {
		return nil, cardrail.NotFound("provider", name)
	}
	st := &cardrail.ProviderState{Name: name, Enabled: enabled, Livemode: c.Livemode}
	err = s.store.Tx(ctx, func(tx cardrail.Tx) error {
		states, err := tx.ProviderStates(ctx, c.Livemode)
		if err != nil {
			return err
		}
		on, touched := states[name]
		before := cardrail.ProviderState{Name: name, Enabled: on || !touched, Livemode: c.Livemode}
		if err := tx.SetProviderState(ctx, *st); err != nil {
			return err
		}
		action := map[bool]string{true: "provider.enabled", false: "provider.disabled"}[enabled]
		return s.audit(ctx, tx, c, action, name, before, st)
	})
	return st, cardrail.WithOp("ops.Provider", err)
}

// providerNames are the partners known to a mode, sorted: those with an
// adapter for the mode registered under the name (sandbox adapters never
// serve production), and those one of the mode's programs routes to.
func (s *Service) providerNames(ctx context.Context, livemode bool) ([]string, error) {
	var names []string
	for _, name := range s.registry.Names() {
		if p, ok := s.registry.Lookup(name); ok && p.Sandbox() != livemode {
			names = append(names, name)
		}
	}
	programs, err := s.store.Programs(ctx, livemode)
	if err != nil {
		return nil, err
	}
	for _, p := range programs {
		names = append(names, p.Providers...)
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// ProviderStatus is a partner as operators see it: whether routing may use
// it in the mode, and this server's circuit breaker for it.
type ProviderStatus struct {
	cardrail.ProviderState
	// Circuit is closed (calls go through), open (calls are skipped
	// after repeated failures until the cooldown passes) or half_open
	// (one trial call may go through). Each server keeps its own.
	Circuit provider.BreakerState `json:"circuit"`
}

// Providers lists the partners known to the operator's mode, by name.
func (s *Service) Providers(ctx context.Context, c cardrail.Caller) ([]ProviderStatus, error) {
	names, err := s.providerNames(ctx, c.Livemode)
	if err != nil {
		return nil, cardrail.WithOp("ops.Providers", err)
	}
	states, err := s.store.ProviderStates(ctx, c.Livemode)
	if err != nil {
		return nil, cardrail.WithOp("ops.Providers", err)
	}
	circuits := map[string]provider.BreakerState{}
	for _, st := range s.router.Stats() {
		circuits[st.Name] = st.Breaker
	}
	out := make([]ProviderStatus, 0, len(names))
	for _, name := range names {
		on, touched := states[name]
		circuit, ok := circuits[name]
		if !ok {
			circuit = provider.BreakerClosed // never called by this server
		}
		out = append(out, ProviderStatus{ProviderState: cardrail.ProviderState{Name: name, Enabled: on || !touched, Livemode: c.Livemode}, Circuit: circuit})
	}
	return out, nil
}

// simulator is a sandbox partner whose answers operators can script
// (provider/sandbox.Adapter).
type simulator interface {
	Outcomes() []string
	Simulate(outcome string, delay time.Duration) error
	Simulation() (string, time.Duration)
}

// MaxSimulatedDelay bounds a simulated partner's added latency: past the
// router's 5 s attempt timeout it shows nothing more.
const MaxSimulatedDelay = 10 * time.Second

// DelayRange says what a simulated delay may be.
var DelayRange = fmt.Sprintf("must be an integer from 0 to %d (milliseconds)", MaxSimulatedDelay.Milliseconds())

// ProviderSimulation is how a sandbox partner answers card requests on
// this server.
type ProviderSimulation struct {
	Object   string `json:"object"`
	Name     string `json:"name"`
	Outcome  string `json:"outcome"`
	DelayMS  int64  `json:"delay_ms"`
	Livemode bool   `json:"livemode"`
}

// SimulateProvider scripts a sandbox partner, so that failover, a partner
// timing out, a card held for review and a card no partner issued can all
// be rehearsed through the API. Audited; it applies to this server
// process, whose adapters are in memory, once the audit record commits.
func (s *Service) SimulateProvider(ctx context.Context, c cardrail.Caller, name, outcome string, delayMS int64) (*ProviderSimulation, error) {
	if c.Livemode {
		return nil, cardrail.Errorf(cardrail.CodeSandboxOnly, "Partner simulation exists in sandbox only.")
	}
	p, ok := s.registry.Lookup(name)
	sim, scriptable := p.(simulator)
	if !ok || !p.Sandbox() || !scriptable {
		return nil, cardrail.NotFound("provider", name)
	}
	var errs []cardrail.FieldError
	if !slices.Contains(sim.Outcomes(), outcome) {
		errs = append(errs, cardrail.FieldError{Field: "outcome", Message: "must be one of " + strings.Join(sim.Outcomes(), ", ")})
	}
	if delayMS < 0 || delayMS > MaxSimulatedDelay.Milliseconds() {
		errs = append(errs, cardrail.FieldError{Field: "delay_ms", Message: DelayRange})
	}
	if len(errs) > 0 {
		return nil, cardrail.Invalid(errs...)
	}
	was, wasDelay := sim.Simulation()
	before := ProviderSimulation{Object: "provider_simulation", Name: name, Outcome: was, DelayMS: wasDelay.Milliseconds()}
	after := ProviderSimulation{Object: "provider_simulation", Name: name, Outcome: outcome, DelayMS: delayMS}
	if err := s.store.Tx(ctx, func(tx cardrail.Tx) error {
		return s.audit(ctx, tx, c, "provider.simulated", name, before, after)
	}); err != nil {
		return nil, cardrail.WithOp("ops.SimulateProvider", err)
	}
	if err := sim.Simulate(outcome, time.Duration(delayMS)*time.Millisecond); err != nil {
		return nil, cardrail.WithOp("ops.SimulateProvider", err)
	}
	return &after, nil
}

// AllPrograms lists every program of the operator's mode, enabled or not,
// in any market.
func (s *Service) AllPrograms(ctx context.Context, c cardrail.Caller) ([]cardrail.Program, error) {
	ps, err := s.store.Programs(ctx, c.Livemode)
	return ps, cardrail.WithOp("ops.Programs", err)
}

// AnyProgram returns one program of the operator's mode, enabled or not.
func (s *Service) AnyProgram(ctx context.Context, c cardrail.Caller, code string) (*cardrail.Program, error) {
	p, err := s.store.Program(ctx, c.Livemode, code)
	return lookup(p, err, "program", code)
}

// Verdicts are the values an operator may set as a cardholder's kyc. Only
// verified lets a production cardholder be issued cards; the others say
// why not. A closed set, so that a typo ("Verified", "verifed") is refused
// rather than silently leaving the cardholder unverified.
var Verdicts = []string{cardrail.KYCVerified, "pending", "rejected", "unverified"}

// SetVerification records an operator's verdict on a cardholder; it
// overrides the token's kyc claim from then on.
func (s *Service) SetVerification(ctx context.Context, c cardrail.Caller, subject, kyc string) (*cardrail.Cardholder, error) {
	if err := checkSubject(subject); err != nil {
		return nil, err
	}
	if !slices.Contains(Verdicts, kyc) {
		return nil, cardrail.Invalid(cardrail.FieldError{Field: "kyc", Message: "must be one of verified, pending, rejected or unverified"})
	}
	ch := &cardrail.Cardholder{Subject: subject, KYC: kyc, Livemode: c.Livemode, UpdatedAt: s.now()}
	err := s.store.Tx(ctx, func(tx cardrail.Tx) error {
		before, err := tx.Cardholder(ctx, c.Livemode, subject)
		if err != nil && !errors.Is(err, cardrail.ErrNoRows) {
			return err
		}
		if err := tx.SetCardholder(ctx, ch); err != nil {
			return err
		}
		var b any
		if before != nil {
			b = before
		}
		return s.audit(ctx, tx, c, "cardholder.verification", subject, b, ch)
	})
	return ch, cardrail.WithOp("ops.Verification", err)
}

// ClearVerification removes an operator's verdict on a cardholder, so the
// token's kyc claim decides again. A cardholder with no verdict is not
// found.
func (s *Service) ClearVerification(ctx context.Context, c cardrail.Caller, subject string) error {
	if err := checkSubject(subject); err != nil {
		return err
	}
	err := s.store.Tx(ctx, func(tx cardrail.Tx) error {
		before, err := tx.Cardholder(ctx, c.Livemode, subject)
		if errors.Is(err, cardrail.ErrNoRows) {
			return cardrail.Errorf(cardrail.CodeNotFound, "No operator verdict on cardholder %q: the token's kyc claim decides.", subject)
		}
		if err != nil {
			return err
		}
		if _, err := tx.DeleteCardholder(ctx, c.Livemode, subject); err != nil {
			return err
		}
		return s.audit(ctx, tx, c, "cardholder.verification_cleared", subject, before, nil)
	})
	return cardrail.WithOp("ops.ClearVerification", err)
}

// checkSubject holds an operator's sub to the rule a token's sub is held
// to, so no wallet or cardholder is made for a user no token can name.
func checkSubject(subject string) error {
	if !cardrail.ValidSubject(subject) {
		return cardrail.Invalid(cardrail.FieldError{Field: "sub", Message: "must be 1 to 255 characters of text without control characters"})
	}
	return nil
}

// CreditWallet is the operators' funding path: money enters a wallet from
// the mode's funding account, audited.
func (s *Service) CreditWallet(ctx context.Context, c cardrail.Caller, subject string, amount int64, currency string) (*cardrail.Wallet, error) {
	if err := checkSubject(subject); err != nil {
		return nil, err
	}
	return s.deposit(ctx, c, subject, amount, currency, true)
}

// AccountBalances sums the ledger of the operator's mode.
func (s *Service) AccountBalances(ctx context.Context, c cardrail.Caller) ([]cardrail.AccountBalance, error) {
	return s.store.AccountBalances(ctx, c.Livemode)
}

// AuditLog lists operator actions, newest first.
func (s *Service) AuditLog(ctx context.Context, c cardrail.Caller, p cardrail.ListParams) (cardrail.Page[cardrail.AuditRecord], error) {
	return s.store.AuditLog(ctx, c.Livemode, p)
}

// eventObjects are the prefixes of the objects events are about.
var eventObjects = []string{cardrail.PrefixCard, cardrail.PrefixAuthorization, cardrail.PrefixDispute, cardrail.PrefixWallet}

// Events lists stored events, newest first, for reconciliation.
func (s *Service) Events(ctx context.Context, c cardrail.Caller, typ, object string, p cardrail.ListParams) (cardrail.Page[cardrail.Event], error) {
	if typ != "" && !slices.Contains(cardrail.EventTypes, typ) {
		return cardrail.Page[cardrail.Event]{}, cardrail.Errorf(cardrail.CodeUnknownEventType, "Unknown event type %q.", typ)
	}
	if object != "" && !slices.ContainsFunc(eventObjects, func(prefix string) bool { return cardrail.HasPrefix(object, prefix) }) {
		return cardrail.Page[cardrail.Event]{}, cardrail.Invalid(cardrail.FieldError{Field: "object",
			Message: "must be the reference of a card, authorization, dispute or wallet"})
	}
	return s.store.Events(ctx, cardrail.EventFilter{Livemode: c.Livemode, Type: typ, Object: object, ListParams: p})
}
