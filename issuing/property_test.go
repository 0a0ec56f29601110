package issuing_test

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/internal/apptest"
	"github.com/cardrail/cardrail/internal/ledgercheck"
	"github.com/cardrail/cardrail/internal/testdb"
	"github.com/cardrail/cardrail/issuing"
	"github.com/cardrail/cardrail/store/sqlstore"
)

// propertyRuns is how many random histories TestLedgerProperties plays per
// backend. The default keeps CI fast; to hunt for rarer bugs run longer, e.g.
//
//	CARDRAIL_PROPERTY_RUNS=2000 go test -run TestLedgerProperties -timeout 1h ./issuing/
//	go test -run TestLedgerProperties ./issuing/ -args -property.runs=2000
//
// An explicit -rapid.checks wins over both; a failure prints the
// -rapid.seed (or -rapid.failfile) that replays it.
var propertyRuns = flag.Int("property.runs", envInt("CARDRAIL_PROPERTY_RUNS", 30),
	"random histories per backend in TestLedgerProperties (env CARDRAIL_PROPERTY_RUNS)")

// maxPropertySteps bounds one history, so a run stays short and a failure
// shrinks quickly.
const maxPropertySteps = 40

// propertyDatabases is how many databases (each with its own running
// application) a run spreads its histories over: the ledger checks scan
// whole tables after every step, and smaller tables keep them cheap (SQLite
// under -race especially) while a long run still creates only a few
// databases.
const propertyDatabases = 6

// maxPropertyCards bounds the cards of one history, so that actions keep
// landing on cards that already have money and authorizations.
const maxPropertyCards = 4

// blockedMCC is the merchant category the spending-controls action blocks.
const blockedMCC = "7995"

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestLedgerProperties plays random histories of cardholder actions against
// the issuing service and, after every step, holds the service to a simple
// model of the money (wallet, per-card available and held, per-authorization
// amounts and status) and to every ledger invariant checked straight from the
// database. Invalid actions are drawn on purpose: each must fail with its
// error code and change nothing.
//
// It drives the service directly, the fast path (HTTP is covered
// elsewhere): each backend runs the real application, one history per fresh
// cardholder ("prop-N"), spreading the histories over propertyDatabases
// databases.
func TestLedgerProperties(t *testing.T) {
	useRapidChecks(t, *propertyRuns)
	testdb.Each(t, func(t *testing.T, url string) {
		// SQLite keeps the test process busy while PostgreSQL mostly waits
		// on the server, so the two backends overlap well.
		t.Parallel()
		backend := "postgres"
		if strings.HasPrefix(url, "sqlite:") {
			backend = "sqlite"
		}
		ctx := context.Background()
		var (
			env    *apptest.Env
			db     sqlstore.Querier
			limits cardrail.Limits
			dbs    int
		)
		checks, _ := strconv.Atoi(flag.Lookup("rapid.checks").Value.String())
		perDatabase := max(5, (checks+propertyDatabases-1)/propertyDatabases)
		stats := &propertyStats{outcomes: map[string]int{}}
		start := time.Now()
		rapid.Check(t, func(rt *rapid.T) {
			if stats.runs%perDatabase == 0 {
				if stats.runs > 0 {
					url = testdb.URL(t, backend)
				}
				env = apptest.New(t, url)
				db = preparedReads(t, env.App.Store.Conn())
				prog, err := env.App.Store.Program(ctx, false, "usd_visa_virtual")
				if err != nil {
					t.Fatalf("program: %v", err)
				}
				limits = prog.Limits
				dbs++
			}
			stats.runs++
			p := &propertyRun{
				rt: rt, ctx: ctx, db: db, svc: env.App.Service, limits: limits, stats: stats,
				caller: cardrail.Caller{Subject: fmt.Sprintf("prop-%d", stats.runs), Country: "US"},
			}
			p.fp = p.footprint()
			// Every history starts with money on a card, so that the
			// random steps spend rather than mostly bounce off empty cards.
			for _, name := range []string{"deposit", "create", "fund"} {
				p.step(name)
			}
			steps := rapid.IntRange(maxPropertySteps/4, maxPropertySteps-3).Draw(rt, "steps")
			for range steps {
				p.step(rapid.SampledFrom(p.actions()).Draw(rt, "action"))
			}
		})
		t.Logf("%d histories, %d steps, %d database(s), %v; outcomes: %s", stats.runs, stats.steps, dbs,
			time.Since(start).Round(time.Millisecond), stats)
	})
}

// useRapidChecks sets rapid's number of runs from -property.runs unless
// -rapid.checks (or RAPID_CHECKS) was given.
func useRapidChecks(t *testing.T, runs int) {
	t.Helper()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "rapid.checks" })
	if _, env := os.LookupEnv("RAPID_CHECKS"); explicit || env {
		return
	}
	if err := flag.Set("rapid.checks", strconv.Itoa(runs)); err != nil {
		t.Fatalf("set -rapid.checks: %v", err)
	}
}

// propertyStats counts what the histories did, for the log.
type propertyStats struct {
	runs, steps int
	outcomes    map[string]int
}

func (s *propertyStats) count(action, outcome string) {
	if outcome == "" {
		outcome = "ok"
	}
	s.outcomes[action+"="+outcome]++
}

func (s *propertyStats) String() string {
	keys := make([]string, 0, len(s.outcomes))
	for k := range s.outcomes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s:%d", k, s.outcomes[k])
	}
	return strings.Join(parts, " ")
}

// The model: what a cardholder should see, computed without the service.
type cardModel struct {
	ref       string
	status    cardrail.CardStatus
	available int64
	held      int64
	blocked   []string
}

type authModel struct {
	ref                                       string
	card                                      *cardModel
	status                                    cardrail.AuthorizationStatus
	amount, held, settled, reversed, refunded int64
	decline                                   cardrail.DeclineReason
	created                                   time.Time
}

type moneyModel struct {
	wallet int64
	cards  []*cardModel
	auths  []*authModel
}

// credit is where money given back to a card lands: the card, or the wallet
// once the card is closed.
func (m *moneyModel) credit(c *cardModel, amount int64) {
	if c.status == cardrail.CardTerminated || c.status == cardrail.CardExpired {
		m.wallet += amount
		return
	}
	c.available += amount
}

// spent is the card's approved spend, amount − reversed, in the window of at.
func (m *moneyModel) spent(c *cardModel, window func(time.Time) string, at time.Time) int64 {
	var sum int64
	for _, a := range m.auths {
		if a.card == c && a.status != cardrail.AuthDeclined && window(a.created) == window(at) {
			sum += a.amount - a.reversed
		}
	}
	return sum
}

// propertyRun is one history: one fresh cardholder and its model.
type propertyRun struct {
	rt      *rapid.T
	ctx     context.Context
	db      sqlstore.Querier // the database, for the checks
	svc     *issuing.Service
	caller  cardrail.Caller
	limits  cardrail.Limits
	stats   *propertyStats
	m       moneyModel
	touched []string  // objects the step acted on, re-read one by one
	fp      footprint // as of the end of the last step
}

// propertyActions are the steps a history is made of.
var propertyActions = map[string]func(*propertyRun){
	"deposit":   (*propertyRun).deposit,
	"create":    (*propertyRun).createCard,
	"fund":      (*propertyRun).fund,
	"withdraw":  (*propertyRun).withdraw,
	"authorize": (*propertyRun).authorize,
	"controls":  (*propertyRun).controls,
	"freeze":    func(p *propertyRun) { p.transition("freeze", cardrail.CardFrozen) },
	"unfreeze":  func(p *propertyRun) { p.transition("unfreeze", cardrail.CardActive) },
	"terminate": func(p *propertyRun) { p.transition("terminate", cardrail.CardTerminated) },
	"settle":    (*propertyRun).settle,
	"reverse":   (*propertyRun).reverse,
	"refund":    (*propertyRun).refund,
	"expire":    (*propertyRun).expire,
}

// actions lists the actions possible now. Repeats weight the draw towards
// the money paths; rapid favours both ends of a list, so they hold the most
// common actions.
func (p *propertyRun) actions() []string {
	cards, auths := len(p.m.cards) > 0, len(p.m.auths) > 0
	var as []string
	add := func(ok bool, names ...string) {
		if ok {
			as = append(as, names...)
		}
	}
	add(cards, "authorize", "fund", "authorize")
	add(auths, "settle", "reverse", "refund")
	add(true, "deposit")
	add(len(p.m.cards) < maxPropertyCards, "create")
	add(cards, "withdraw", "controls", "freeze", "fund", "unfreeze", "authorize")
	add(cards, "terminate")
	add(auths, "expire", "settle", "reverse")
	add(cards, "withdraw", "deposit", "freeze", "unfreeze")
	add(auths, "refund", "settle", "reverse", "refund")
	add(cards, "fund", "authorize", "authorize")
	return as
}

// step runs one action and checks everything after it.
func (p *propertyRun) step(name string) {
	p.touched = p.touched[:0]
	propertyActions[name](p)
	p.stats.steps++
	p.verify(name)
}

// drawCard draws one of the history's cards, mostly one that usable says
// the action can apply to; rapid favours the front of a list, and a
// history's first card is often frozen or terminated early.
func (p *propertyRun) drawCard(usable func(*cardModel) bool) *cardModel {
	ref := drawRefOf(p, "card", p.m.cards, func(c *cardModel) string { return c.ref }, usable)
	c := p.m.cards[slices.IndexFunc(p.m.cards, func(c *cardModel) bool { return c.ref == ref })]
	p.touched = append(p.touched, c.ref)
	return c
}

// drawAuth draws one of the history's authorizations, mostly one that
// usable says the action can apply to.
func (p *propertyRun) drawAuth(usable func(*authModel) bool) *authModel {
	ref := drawRefOf(p, "authorization", p.m.auths, func(a *authModel) string { return a.ref }, usable)
	a := p.m.auths[slices.IndexFunc(p.m.auths, func(a *authModel) bool { return a.ref == ref })]
	p.touched = append(p.touched, a.ref, a.card.ref)
	return a
}

func drawRefOf[T any](p *propertyRun, label string, all []T, ref func(T) string, usable func(T) bool) string {
	var refs, good []string
	for _, x := range all {
		refs = append(refs, ref(x))
		if usable(x) {
			good = append(good, ref(x))
		}
	}
	if len(good) > 0 && p.mostly(label+" usable") {
		return rapid.SampledFrom(good).Draw(p.rt, label)
	}
	return rapid.SampledFrom(refs).Draw(p.rt, label)
}

// mostly is true nine draws in ten. (rapid favours the ends of a range, so
// the odd one out is a value in the middle; shrinking goes to true.)
func (p *propertyRun) mostly(label string) bool {
	return rapid.IntRange(0, 9).Draw(p.rt, label) != 5
}

// drawAmount draws an amount that fits (1..fits) mostly, and anything from
// 1 to ceiling otherwise.
func (p *propertyRun) drawAmount(label string, fits, ceiling int64) int64 {
	if fits >= 1 && p.mostly(label+" fits") {
		return rapid.Int64Range(1, fits).Draw(p.rt, label)
	}
	return rapid.Int64Range(1, ceiling).Draw(p.rt, label)
}

// drawOptionalAmount draws a network event's amount: 0 (all), one within
// limit, or one beyond it.
func (p *propertyRun) drawOptionalAmount(limit int64) int64 {
	switch rapid.IntRange(0, 2).Draw(p.rt, "amount kind") {
	case 0:
		return 0
	case 1:
		if limit >= 1 {
			return rapid.Int64Range(1, limit).Draw(p.rt, "amount")
		}
	}
	return rapid.Int64Range(limit+1, limit+100_000).Draw(p.rt, "amount")
}

// footprint counts rows that every effect adds to: a failed action must
// leave it unchanged, a successful one must add exactly its own rows.
type footprint struct{ entries, events, auths int64 }

func (p *propertyRun) footprint() footprint {
	var f footprint
	err := p.db.QueryRow(p.ctx, `SELECT (SELECT COUNT(*) FROM journal_entries),
		(SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM authorizations)`).Scan(&f.entries, &f.events, &f.auths)
	if err != nil {
		p.rt.Fatalf("footprint: %v", err)
	}
	return f
}

// expect runs call, requires the error code want ("" for success) and, on
// success, exactly the rows in delta; a failure must add nothing.
func (p *propertyRun) expect(action string, want cardrail.Code, delta footprint, call func() error) {
	err := call()
	got := cardrail.ErrorCode(err)
	p.stats.count(action, string(got))
	if got != want {
		p.rt.Fatalf("%s: got code %q (%v), want %q", action, got, err, want)
	}
	p.checkFootprint(action, delta, want == "")
}

// checkFootprint requires the rows added since the last step to be delta
// (nothing unless ok).
func (p *propertyRun) checkFootprint(action string, delta footprint, ok bool) {
	if !ok {
		delta = footprint{}
	}
	before, after := p.fp, p.footprint()
	p.fp = after
	if d := (footprint{after.entries - before.entries, after.events - before.events, after.auths - before.auths}); d != delta {
		p.rt.Fatalf("%s: added %d journal entries, %d events, %d authorizations; want %d, %d, %d",
			action, d.entries, d.events, d.auths, delta.entries, delta.events, delta.auths)
	}
}

func pending(a *authModel) bool { return a.status == cardrail.AuthPending }

func movable(s cardrail.CardStatus) bool { return s == cardrail.CardActive || s == cardrail.CardFrozen }

func (p *propertyRun) deposit() {
	// Large deposits let cards reach their daily and balance limits.
	amount := rapid.Int64Range(1, 600_000).Draw(p.rt, "amount")
	if p.mostly("large deposit") {
		amount = rapid.Int64Range(200_000, 600_000).Draw(p.rt, "large amount")
	}
	p.expect("deposit", "", footprint{1, 1, 0}, func() error {
		w, err := p.svc.Deposit(p.ctx, p.caller, p.caller.Subject, amount, "USD")
		if err == nil {
			p.m.wallet += amount
			if w.Balance.Available != p.m.wallet {
				p.rt.Fatalf("deposit answered wallet %d, model %d", w.Balance.Available, p.m.wallet)
			}
		}
		return err
	})
}

func (p *propertyRun) createCard() {
	p.expect("create", "", footprint{0, 1, 0}, func() error {
		c, err := p.svc.CreateCard(p.ctx, p.caller, issuing.CardParams{Program: "usd_visa_virtual"})
		if err == nil {
			m := &cardModel{ref: c.Reference, status: cardrail.CardActive}
			p.m.cards = append(p.m.cards, m)
			p.touched = append(p.touched, c.Reference)
			p.checkCard("create", c, m)
		}
		return err
	})
}

func (p *propertyRun) fund() {
	c := p.drawCard(func(c *cardModel) bool { return movable(c.status) })
	amount := p.drawAmount("amount", min(p.m.wallet, p.limits.MaxBalance-c.available-c.held), p.limits.MaxBalance+100_000)
	currency := rapid.SampledFrom([]string{"", "USD", "", "EUR", "", "USD", ""}).Draw(p.rt, "currency")
	var want cardrail.Code
	switch {
	case !movable(c.status):
		want = cardrail.CodeInvalidCardState
	case currency != "" && currency != "USD":
		want = cardrail.CodeCurrencyMismatch
	case c.available+c.held+amount > p.limits.MaxBalance:
		want = cardrail.CodeMaxBalanceExceeded
	case amount > p.m.wallet:
		want = cardrail.CodeInsufficientWalletFunds
	}
	p.expect("fund", want, footprint{1, 2, 0}, func() error {
		got, err := p.svc.Fund(p.ctx, p.caller, c.ref, amount, currency)
		if err == nil {
			p.m.wallet -= amount
			c.available += amount
			p.checkCard("fund", got, c)
		}
		return err
	})
}

func (p *propertyRun) withdraw() {
	c := p.drawCard(func(c *cardModel) bool { return movable(c.status) && c.available > 0 })
	amount := p.drawAmount("amount", c.available, 200_000)
	var want cardrail.Code
	switch {
	case !movable(c.status):
		want = cardrail.CodeInvalidCardState
	case amount > c.available:
		want = cardrail.CodeInsufficientCardFunds
	}
	p.expect("withdraw", want, footprint{1, 2, 0}, func() error {
		got, err := p.svc.Withdraw(p.ctx, p.caller, c.ref, amount, "")
		if err == nil {
			p.m.wallet += amount
			c.available -= amount
			p.checkCard("withdraw", got, c)
		}
		return err
	})
}

// decide is the model's authorization decision, in the SPEC's order.
func (p *propertyRun) decide(c *cardModel, amount int64, mcc, currency string, at time.Time) cardrail.DeclineReason {
	switch {
	case c.status != cardrail.CardActive:
		return cardrail.DeclineCardNotActive
	case currency != "USD":
		return cardrail.DeclineCurrencyMismatch
	case slices.Contains(c.blocked, mcc):
		return cardrail.DeclineMCCBlocked
	case amount > p.limits.PerAuthorization:
		return cardrail.DeclinePerAuthorization
	case p.m.spent(c, cardrail.DayWindow, at)+amount > p.limits.Daily:
		return cardrail.DeclineDailyLimit
	case p.m.spent(c, cardrail.MonthWindow, at)+amount > p.limits.Monthly:
		return cardrail.DeclineMonthlyLimit
	case amount > c.available:
		return cardrail.DeclineInsufficientFunds
	}
	return ""
}

func (p *propertyRun) authorize() {
	c := p.drawCard(func(c *cardModel) bool { return c.status == cardrail.CardActive && c.available > 0 })
	amount := p.drawAmount("amount", c.available, p.limits.PerAuthorization+50_000)
	if rapid.IntRange(0, 3).Draw(p.rt, "large") == 2 {
		// Near the per-authorization limit, so that daily limits bind too.
		amount = rapid.Int64Range(p.limits.PerAuthorization-50_000, p.limits.PerAuthorization+1000).Draw(p.rt, "large amount")
	}
	mcc := rapid.SampledFrom([]string{"5411", "5812", blockedMCC, "5411"}).Draw(p.rt, "mcc")
	currency := rapid.SampledFrom([]string{"USD", "USD", "USD", "EUR", "USD", "USD", "USD"}).Draw(p.rt, "currency")
	got, err := p.svc.Authorize(p.ctx, p.caller, c.ref, cardrail.AuthorizationAttempt{Amount: amount, Currency: currency,
		Merchant: cardrail.Merchant{Name: "Corner Shop", MCC: mcc, Country: "US"}})
	if err != nil {
		p.rt.Fatalf("authorize: %v", err)
	}
	// The decision's spending windows are those of the authorization's own
	// creation time, which only the answer tells.
	reason := p.decide(c, amount, mcc, currency, got.CreatedAt)
	a := &authModel{ref: got.Reference, card: c, amount: amount, decline: reason, created: got.CreatedAt}
	delta := footprint{0, 1, 1}
	if reason == "" {
		a.status, a.held = cardrail.AuthPending, amount
		c.available -= amount
		c.held += amount
		delta.entries = 1
		p.stats.count("authorize", "approved")
	} else {
		a.status = cardrail.AuthDeclined
		p.stats.count("authorize", string(reason))
	}
	p.checkFootprint("authorize", delta, true)
	p.m.auths = append(p.m.auths, a)
	p.touched = append(p.touched, a.ref)
	p.checkAuth("authorize", got, a)
}

func (p *propertyRun) controls() {
	c := p.drawCard(func(c *cardModel) bool { return !c.status.Final() })
	block := rapid.Bool().Draw(p.rt, "block "+blockedMCC)
	sc := &cardrail.SpendingControls{}
	if block {
		sc.BlockedMCCs = []string{blockedMCC}
	}
	var want cardrail.Code
	if c.status.Final() {
		want = cardrail.CodeInvalidCardState
	}
	delta := footprint{0, 1, 0}
	if block == (len(c.blocked) > 0) {
		delta = footprint{} // the same controls again: no card.updated
	}
	p.expect("controls", want, delta, func() error {
		got, err := p.svc.UpdateCard(p.ctx, p.caller, c.ref, issuing.CardUpdate{SpendingControls: sc})
		if err == nil {
			c.blocked = sc.BlockedMCCs
			p.checkCard("controls", got, c)
		}
		return err
	})
}

func (p *propertyRun) transition(action string, to cardrail.CardStatus) {
	allowed := func(c *cardModel) bool {
		switch to {
		case cardrail.CardFrozen:
			return c.status == cardrail.CardActive
		case cardrail.CardActive:
			return c.status == cardrail.CardFrozen
		}
		return movable(c.status) || c.status == cardrail.CardBlocked
	}
	c := p.drawCard(allowed)
	ok := allowed(c)
	var want cardrail.Code
	if !ok {
		want = cardrail.CodeInvalidCardState
	}
	delta := footprint{0, 1, 0}
	if to == cardrail.CardTerminated && c.available > 0 {
		delta = footprint{1, 2, 0} // the sweep and its wallet.credited
	}
	p.expect(action, want, delta, func() error {
		got, err := p.svc.Transition(p.ctx, p.caller, c.ref, to, cardrail.ActorOwner)
		if err == nil {
			c.status = to
			if to == cardrail.CardTerminated {
				p.m.wallet += c.available
				c.available = 0
			}
			p.checkCard(action, got, c)
		}
		return err
	})
}

// drawNetworkEvent draws an authorization and a settle or reverse amount
// for it, with the code the service must refuse them with ("" if none).
func (p *propertyRun) drawNetworkEvent() (a *authModel, amount int64, want cardrail.Code) {
	a = p.drawAuth(pending)
	amount = p.drawOptionalAmount(a.held)
	switch {
	case a.status != cardrail.AuthPending:
		want = cardrail.CodeInvalidAuthorizationState
	case amount > a.held:
		want = cardrail.CodeAmountExceedsHeld
	}
	return a, amount, want
}

func (p *propertyRun) settle() {
	a, amount, want := p.drawNetworkEvent()
	rest := a.held - amount
	if amount == 0 {
		rest = 0
	}
	p.expect("settle", want, creditFootprint(a.card, rest), func() error {
		got, err := p.svc.Settle(p.ctx, p.caller, a.ref, issuing.NetworkEvent{Amount: amount})
		if err == nil {
			captured := amount
			if captured == 0 {
				captured = a.held
			}
			rest := a.held - captured
			a.card.held -= a.held
			p.m.credit(a.card, rest)
			a.status, a.held, a.settled, a.reversed = cardrail.AuthSettled, 0, captured, a.reversed+rest
			p.checkAuth("settle", got, a)
		}
		return err
	})
}

func (p *propertyRun) reverse() {
	a, amount, want := p.drawNetworkEvent()
	p.expect("reverse", want, creditFootprint(a.card, a.held), func() error {
		got, err := p.svc.Reverse(p.ctx, p.caller, a.ref, issuing.NetworkEvent{Amount: amount})
		if err == nil {
			p.release(a, amount, cardrail.AuthReversed)
			p.checkAuth("reverse", got, a)
		}
		return err
	})
}

func (p *propertyRun) expire() {
	a := p.drawAuth(pending)
	var want cardrail.Code
	if a.status != cardrail.AuthPending {
		want = cardrail.CodeInvalidAuthorizationState
	}
	p.expect("expire", want, creditFootprint(a.card, a.held), func() error {
		got, err := p.svc.Expire(p.ctx, p.caller, a.ref, issuing.NetworkEvent{})
		if err == nil {
			p.release(a, 0, cardrail.AuthExpired)
			p.checkAuth("expire", got, a)
		}
		return err
	})
}

// creditFootprint is what an entry crediting amount to card c adds: the
// entry and the authorization's event, and a wallet.credited when the card
// is closed and the money goes to the wallet.
func creditFootprint(c *cardModel, amount int64) footprint {
	f := footprint{1, 1, 0}
	if amount > 0 && c.status.Closed() {
		f.events++
	}
	return f
}

// release gives back amount of a's hold (0: all of it).
func (p *propertyRun) release(a *authModel, amount int64, final cardrail.AuthorizationStatus) {
	if amount == 0 {
		amount = a.held
	}
	a.held -= amount
	a.reversed += amount
	a.card.held -= amount
	p.m.credit(a.card, amount)
	if a.held == 0 {
		a.status = final
	}
}

func (p *propertyRun) refund() {
	a := p.drawAuth(func(a *authModel) bool { return a.settled > a.refunded })
	refundable := a.settled - a.refunded
	amount := p.drawOptionalAmount(refundable)
	var want cardrail.Code
	switch {
	case a.status != cardrail.AuthSettled:
		want = cardrail.CodeInvalidAuthorizationState
	case amount > refundable || (amount == 0 && refundable == 0):
		want = cardrail.CodeAmountExceedsRefundable
	}
	p.expect("refund", want, creditFootprint(a.card, refundable), func() error {
		got, err := p.svc.Refund(p.ctx, p.caller, a.ref, issuing.NetworkEvent{Amount: amount})
		if err == nil {
			if amount == 0 {
				amount = refundable
			}
			a.refunded += amount
			p.m.credit(a.card, amount)
			p.checkAuth("refund", got, a)
		}
		return err
	})
}

func (p *propertyRun) checkCard(what string, got *cardrail.Card, m *cardModel) {
	if got == nil {
		p.rt.Fatalf("%s: card %s: nil", what, m.ref)
		return
	}
	if got.Reference != m.ref || got.Status != m.status || got.Balance.Available != m.available || got.Balance.Held != m.held ||
		!slices.Equal(got.SpendingControls.BlockedMCCs, m.blocked) {
		p.rt.Fatalf("%s: card %s is %s available %d held %d blocked %v; model: %s available %d held %d blocked %v",
			what, m.ref, got.Status, got.Balance.Available, got.Balance.Held, got.SpendingControls.BlockedMCCs,
			m.status, m.available, m.held, m.blocked)
	}
}

func (p *propertyRun) checkAuth(what string, got *cardrail.Authorization, m *authModel) {
	if got == nil {
		p.rt.Fatalf("%s: authorization %s: nil", what, m.ref)
		return
	}
	var reason cardrail.DeclineReason
	if got.DeclineReason != nil {
		reason = *got.DeclineReason
	}
	if got.Reference != m.ref || got.Card != m.card.ref || got.Status != m.status || got.Amount != m.amount ||
		got.HeldAmount != m.held || got.SettledAmount != m.settled || got.ReversedAmount != m.reversed ||
		got.RefundedAmount != m.refunded || reason != m.decline {
		p.rt.Fatalf("%s: authorization %s is %s %q amount %d held %d settled %d reversed %d refunded %d;"+
			" model: %s %q amount %d held %d settled %d reversed %d refunded %d", what, m.ref,
			got.Status, reason, got.Amount, got.HeldAmount, got.SettledAmount, got.ReversedAmount, got.RefundedAmount,
			m.status, m.decline, m.amount, m.held, m.settled, m.reversed, m.refunded)
	}
}

// verify holds the database to the ledger invariants and every read a
// cardholder can make to the model.
func (p *propertyRun) verify(step string) {
	if err := ledgercheck.Check(p.ctx, p.db); err != nil {
		p.rt.Fatalf("after %s, ledger invariants:\n%v", step, err)
	}
	ws, err := p.svc.Wallets(p.ctx, p.caller)
	if err != nil {
		p.rt.Fatalf("wallets: %v", err)
	}
	var wallet int64
	for _, w := range ws {
		if w.Currency != "USD" {
			p.rt.Fatalf("after %s: unexpected %s wallet", step, w.Currency)
		}
		wallet = w.Balance.Available
	}
	if wallet != p.m.wallet {
		p.rt.Fatalf("after %s: wallet %d, model %d", step, wallet, p.m.wallet)
	}
	// Every card and authorization through the lists, then the objects the
	// step acted on one by one.
	cards, err := p.svc.Cards(p.ctx, p.caller, "", cardrail.ListParams{Limit: 100})
	if err != nil {
		p.rt.Fatalf("cards: %v", err)
	}
	if len(cards.Data) != len(p.m.cards) {
		p.rt.Fatalf("after %s: %d cards listed, model has %d", step, len(cards.Data), len(p.m.cards))
	}
	cardByRef := map[string]*cardModel{}
	for _, c := range p.m.cards {
		cardByRef[c.ref] = c
	}
	for i := range cards.Data {
		m, ok := cardByRef[cards.Data[i].Reference]
		if !ok {
			p.rt.Fatalf("after %s: unknown card %s listed", step, cards.Data[i].Reference)
		}
		p.checkCard("after "+step+" (list)", &cards.Data[i], m)
	}
	auths, err := p.svc.Authorizations(p.ctx, p.caller, "", cardrail.ListParams{Limit: 100})
	if err != nil {
		p.rt.Fatalf("authorizations: %v", err)
	}
	if len(auths.Data) != len(p.m.auths) {
		p.rt.Fatalf("after %s: %d authorizations listed, model has %d", step, len(auths.Data), len(p.m.auths))
	}
	authByRef := map[string]*authModel{}
	for _, a := range p.m.auths {
		authByRef[a.ref] = a
	}
	for i := range auths.Data {
		m, ok := authByRef[auths.Data[i].Reference]
		if !ok {
			p.rt.Fatalf("after %s: unknown authorization %s listed", step, auths.Data[i].Reference)
		}
		p.checkAuth("after "+step+" (list)", &auths.Data[i], m)
	}
	for _, ref := range p.touched {
		if m, ok := cardByRef[ref]; ok {
			got, err := p.svc.Card(p.ctx, p.caller, ref, false)
			if err != nil {
				p.rt.Fatalf("card %s: %v", ref, err)
			}
			p.checkCard("after "+step, got, m)
		}
		if m, ok := authByRef[ref]; ok {
			got, err := p.svc.Authorization(p.ctx, p.caller, ref, false)
			if err != nil {
				p.rt.Fatalf("authorization %s: %v", ref, err)
			}
			p.checkAuth("after "+step, got, m)
		}
	}
}

// preparedReads returns conn, reading through statements prepared once when
// conn is SQLite's: under the race detector, parsing SQL is most of the cost
// of the whole-table checks run after every step. (PostgreSQL's driver
// caches statements itself.)
func preparedReads(t *testing.T, conn sqlstore.Conn) sqlstore.Querier {
	c, ok := conn.(*sqlstore.SQLConn)
	if !ok {
		return conn
	}
	p := &stmtCache{Querier: conn, db: c.Reader, stmts: map[string]*sql.Stmt{}}
	t.Cleanup(func() {
		for _, st := range p.stmts {
			st.Close()
		}
	})
	return p
}

// stmtCache is a Querier whose reads use cached prepared statements. It is
// used from one goroutine at a time.
type stmtCache struct {
	sqlstore.Querier
	db    *sql.DB
	stmts map[string]*sql.Stmt
}

func (c *stmtCache) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := c.stmts[query]; ok {
		return st, nil
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.stmts[query] = st
	return st, nil
}

func (c *stmtCache) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	r, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	return stmtRows{r}, nil
}

func (c *stmtCache) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return errRow{err}
	}
	return stmtRow{st.QueryRowContext(ctx, args...)}
}

type stmtRows struct{ *sql.Rows }

func (r stmtRows) Close() { r.Rows.Close() }

type stmtRow struct{ r *sql.Row }

func (r stmtRow) Scan(dest ...any) error {
	err := r.r.Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: %w", cardrail.ErrNoRows, err)
	}
	return err
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }
