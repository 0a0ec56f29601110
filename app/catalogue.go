package app

import (
	"context"
	"errors"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/provider"
	"github.com/cardrail/cardrail/provider/sandbox"
)

// sandboxPartners are the sandbox issuing partners every instance registers.
// Their country and currency coverage is deliberately uneven so that
// routing, failover and provider_unsupported can be seen in sandbox.
var sandboxPartners = []sandbox.Config{
	{Name: "sandbox_alpha", Countries: []string{"US", "GB", "NG", "KE", "GH"}, Currencies: []string{"USD", "NGN"}, BIN: "400000"},
	{Name: "sandbox_beta", Countries: []string{"US", "GB", "NG", "KE", "GH"}, Currencies: []string{"USD", "KES"}, BIN: "424242"},
	{Name: "sandbox_naija", Countries: []string{"NG"}, Currencies: []string{"NGN"}, BIN: "506099"},
	{Name: "sandbox_savanna", Countries: []string{"KE"}, Currencies: []string{"KES"}, BIN: "510510"},
}

// sandboxCatalogue is the programs a new sandbox starts with.
var sandboxCatalogue = []cardrail.Program{
	{
		Code: "usd_visa_virtual", Name: "USD Visa Virtual", Brand: "visa", CardType: cardrail.CardTypeVirtual, Currency: "USD",
		Markets:   []string{"US", "GB", "NG", "KE", "GH"},
		Limits:    cardrail.Limits{MaxBalance: 1_000_000, PerAuthorization: 250_000, Daily: 500_000, Monthly: 2_000_000},
		Providers: []string{"sandbox_alpha", "sandbox_beta"},
	},
	{
		Code: "ngn_verve_virtual", Name: "NGN Verve Virtual", Brand: "verve", CardType: cardrail.CardTypeVirtual, Currency: "NGN",
		Markets:   []string{"NG"},
		Limits:    cardrail.Limits{MaxBalance: 500_000_000, PerAuthorization: 100_000_000, Daily: 200_000_000, Monthly: 1_000_000_000},
		Providers: []string{"sandbox_naija", "sandbox_alpha"},
	},
	{
		Code: "kes_mastercard_virtual", Name: "KES Mastercard Virtual", Brand: "mastercard", CardType: cardrail.CardTypeVirtual, Currency: "KES",
		Markets:   []string{"KE"},
		Limits:    cardrail.Limits{MaxBalance: 100_000_000, PerAuthorization: 20_000_000, Daily: 50_000_000, Monthly: 200_000_000},
		Providers: []string{"sandbox_savanna", "sandbox_beta"},
	},
}

// registerSandboxPartners adds the sandbox partners to reg; secret derives
// their CVVs.
func registerSandboxPartners(reg *provider.Registry, secret []byte) map[string]*sandbox.Adapter {
	out := map[string]*sandbox.Adapter{}
	for _, cfg := range sandboxPartners {
		cfg.Secret = secret
		a := sandbox.New(cfg)
		reg.Register(a)
		out[cfg.Name] = a
	}
	return out
}

// seedCatalogue writes each catalogue program that does not exist yet, so
// an operator's later changes to a program are never overwritten by a
// restart. Sandbox gets the catalogue enabled, as it is. Once production is
// configured it gets the same programs too, but disabled, in no market and
// routed to no partner: Cardrail ships no production partner, so an
// operator enables a program and activates its markets (ops API), and
// issuing answers provider_unsupported until a partner adapter is
// registered and named in the program (docs/operations.md, Sandbox and
// production).
func seedCatalogue(ctx context.Context, store cardrail.Store, production bool) error {
	return store.Tx(ctx, func(tx cardrail.Tx) error {
		for _, p := range sandboxCatalogue {
			live := p
			live.Status, live.Livemode, live.Markets, live.Providers = cardrail.ProgramDisabled, true, []string{}, []string{}
			p.Status, p.Livemode = cardrail.ProgramEnabled, false
			seeds := []cardrail.Program{p}
			if production {
				seeds = append(seeds, live)
			}
			for _, p := range seeds {
				_, err := tx.Program(ctx, p.Livemode, p.Code)
				if err == nil {
					continue
				}
				if !errors.Is(err, cardrail.ErrNoRows) {
					return err
				}
				if err := tx.SaveProgram(ctx, &p); err != nil {
					return err
				}
			}
		}
		return nil
	})
}
