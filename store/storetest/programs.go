package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/store/sqlstore"
)

var programContracts = []contract{
	{"save inserts then updates keeping created_at", testSaveProgram},
	{"a program is seen only in its own mode", testProgramMode},
	{"programs are listed by code", testProgramsOrder},
	{"provider states default to none and switch on and off", testProviderStates},
}

func newProgram(code string, livemode bool) *cardrail.Program {
	return &cardrail.Program{
		Object:    "program",
		Code:      code,
		Name:      "Standard " + code,
		Brand:     "visa",
		CardType:  cardrail.CardTypeVirtual,
		Currency:  "USD",
		Markets:   []string{"FR", "US"},
		Limits:    cardrail.Limits{MaxBalance: 1_000_000, PerAuthorization: 50_000, Daily: 100_000, Monthly: 500_000},
		Status:    cardrail.ProgramEnabled,
		Providers: []string{"sandbox", "acme"},
		Livemode:  livemode,
		CreatedAt: base,
	}
}

func saveProgram(t *testing.T, s *sqlstore.Store, p *cardrail.Program) {
	t.Helper()
	inTx(t, s, func(tx cardrail.Tx) error { return tx.SaveProgram(t.Context(), p) })
}

func testSaveProgram(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	p := newProgram("std", false)
	saveProgram(t, s, p)
	got, err := s.Program(ctx, false, "std")
	if err != nil {
		t.Fatalf("Program after insert: %v", err)
	}
	equal(t, "inserted program", *got, *p)

	changed := *p
	changed.Name = "Standard, renamed"
	changed.Status = cardrail.ProgramDisabled
	changed.Markets = []string{"DE"}
	changed.Limits.Daily = 7_500
	changed.Providers = []string{"acme"}
	changed.CreatedAt = base.Add(time.Hour)
	saveProgram(t, s, &changed)

	got, err = s.Program(ctx, false, "std")
	if err != nil {
		t.Fatalf("Program after update: %v", err)
	}
	want := changed
	want.CreatedAt = p.CreatedAt // an update never moves the creation time
	equal(t, "updated program", *got, want)

	inTx(t, s, func(tx cardrail.Tx) error {
		locked, err := tx.ProgramForUpdate(ctx, false, "std")
		if err != nil {
			return err
		}
		equal(t, "program read for update", *locked, want)
		return nil
	})
}

func testProgramMode(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	saveProgram(t, s, newProgram("std", false))

	_, err := s.Program(ctx, true, "std")
	mustNotFind(t, "live lookup of a sandbox program", err)
	_, err = s.Program(ctx, false, "missing")
	mustNotFind(t, "lookup of an unknown code", err)
	live, err := s.Programs(ctx, true)
	if err != nil {
		t.Fatalf("Programs(live): %v", err)
	}
	if len(live) != 0 {
		t.Errorf("Programs(live) = %d programs, want none (only a sandbox one exists)", len(live))
	}
	if _, err := s.Program(ctx, false, "std"); err != nil {
		t.Errorf("sandbox lookup of a sandbox program: %v", err)
	}
}

func testProgramsOrder(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	for _, code := range []string{"zeta", "alpha", "mid"} {
		saveProgram(t, s, newProgram(code, false))
	}
	saveProgram(t, s, newProgram("beta", true))

	for _, tc := range []struct {
		livemode bool
		want     []string
	}{
		{false, []string{"alpha", "mid", "zeta"}},
		{true, []string{"beta"}},
	} {
		ps, err := s.Programs(ctx, tc.livemode)
		if err != nil {
			t.Fatalf("Programs(livemode=%v): %v", tc.livemode, err)
		}
		var codes []string
		for _, p := range ps {
			codes = append(codes, p.Code)
		}
		if !slices.Equal(codes, tc.want) {
			t.Errorf("Programs(livemode=%v) codes = %q, want %q", tc.livemode, codes, tc.want)
		}
	}
}

func testProviderStates(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	states := func(livemode bool) map[string]bool {
		t.Helper()
		m, err := s.ProviderStates(ctx, livemode)
		if err != nil {
			t.Fatalf("ProviderStates(livemode=%v): %v", livemode, err)
		}
		return m
	}
	if m := states(false); len(m) != 0 {
		t.Errorf("ProviderStates on a new store = %v, want empty", m)
	}

	for _, step := range []struct {
		set  cardrail.ProviderState
		want map[string]bool
	}{
		{cardrail.ProviderState{Name: "sandbox", Enabled: false}, map[string]bool{"sandbox": false}},
		{cardrail.ProviderState{Name: "acme", Enabled: true}, map[string]bool{"sandbox": false, "acme": true}},
		{cardrail.ProviderState{Name: "sandbox", Enabled: true}, map[string]bool{"sandbox": true, "acme": true}},
		{cardrail.ProviderState{Name: "acme", Enabled: false}, map[string]bool{"sandbox": true, "acme": false}},
	} {
		inTx(t, s, func(tx cardrail.Tx) error { return tx.SetProviderState(ctx, step.set) })
		equal(t, "provider states after setting "+step.set.Name, states(false), step.want)
	}
	if m := states(true); len(m) != 0 {
		t.Errorf("live ProviderStates = %v, want empty (only sandbox states were set)", m)
	}
}
