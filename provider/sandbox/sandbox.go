// Package sandbox is the sandbox issuing partner: an in-process
// cardrail.Provider that issues test cards at once, so a new user can issue
// and spend a card without a real partner, and tests can make it fail, stall
// or hold cards for review on demand to exercise routing and failover.
package sandbox

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cardrail/cardrail"
)

// panLength is the length of every PAN the sandbox issues; 16 digits is what
// Visa, Mastercard and Verve test cards use.
const panLength = 16

// DefaultBIN is used when Config.BIN is empty. It sits in the range card
// networks reserve for test cards, so a sandbox PAN can never be a real one.
const DefaultBIN = "400000"

// ErrSimulated is returned (wrapped) by Issue in FailError mode, so tests can
// tell the injected failure from a real bug.
var ErrSimulated = errors.New("sandbox: simulated partner failure")

// Config describes one sandbox partner. Several can be registered side by
// side under different names to exercise a route with more than one step.
type Config struct {
	// Name is the routing name programs list.
	Name string
	// Countries are the ISO 3166-1 alpha-2 codes the partner serves; empty
	// means all.
	Countries []string
	// Currencies are the ISO 4217 codes the partner serves; empty means all.
	Currencies []string
	// BIN is the 6 to 8 digit prefix of every issued PAN (default DefaultBIN).
	// The adapter does not care which brand it belongs to.
	BIN string
	// Secret keys the HMAC that derives CVVs. It lives in configuration, never
	// with the card, so a stolen database does not yield CVVs.
	Secret []byte
}

// FailMode selects how the sandbox answers, so tests and demos can exercise
// every outcome of a partner call.
type FailMode int

// The failure modes.
const (
	// FailNone issues cards normally.
	FailNone FailMode = iota
	// FailError refuses every request with ErrSimulated and issues nothing.
	FailError
	// FailTimeout records the card, then blocks until the caller's context
	// ends: a partner that issued but whose answer never arrived. A retry
	// with the same idempotency key then gets that card.
	FailTimeout
	// FailReview issues cards held for manual review (UnderReview set).
	FailReview
)

// String names the mode for test and log output.
func (m FailMode) String() string {
	switch m {
	case FailNone:
		return "none"
	case FailError:
		return "error"
	case FailTimeout:
		return "timeout"
	case FailReview:
		return "review"
	default:
		return "FailMode(" + strconv.Itoa(int(m)) + ")"
	}
}

// Adapter is a sandbox partner. It implements cardrail.Provider and
// cardrail.CVVComputer, and is safe for concurrent use.
type Adapter struct {
	name       string
	countries  map[string]bool
	currencies map[string]bool
	bin        string
	secret     []byte

	calls atomic.Int64

	mu    sync.Mutex
	mode  FailMode
	delay time.Duration
	cards map[string]cardrail.IssuedCard // by idempotency key
	pans  map[string]bool                // every PAN issued, to keep them unique
}

var (
	_ cardrail.Provider    = (*Adapter)(nil)
	_ cardrail.CVVComputer = (*Adapter)(nil)
)

// New returns a sandbox partner configured by cfg. It panics when cfg has no
// Name or Secret, or a BIN that is not 6 to 8 digits, because that is a wiring
// mistake to catch at start-up, not a condition to handle per request.
func New(cfg Config) *Adapter {
	if cfg.Name == "" {
		panic("sandbox: Config.Name is required")
	}
	if len(cfg.Secret) == 0 {
		panic("sandbox: Config.Secret is required to derive CVVs")
	}
	bin := cfg.BIN
	if bin == "" {
		bin = DefaultBIN
	}
	if len(bin) < 6 || len(bin) > 8 || !allDigits(bin) {
		panic(fmt.Sprintf("sandbox: BIN %q must be 6 to 8 digits", bin))
	}
	return &Adapter{
		name:       cfg.Name,
		countries:  upperSet(cfg.Countries),
		currencies: upperSet(cfg.Currencies),
		bin:        bin,
		secret:     append([]byte(nil), cfg.Secret...),
		cards:      make(map[string]cardrail.IssuedCard),
		pans:       make(map[string]bool),
	}
}

// SetFailure switches how the adapter answers from now on. Delay is latency
// added to every call before it answers (the caller's context still ends the
// wait); it lets tests model a slow partner that misses the router's timeout.
// It is safe to call while Issue runs.
func (a *Adapter) SetFailure(mode FailMode, delay time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.mode = mode
	a.delay = delay
}

// Outcomes name the failure modes for the operators' simulation endpoint,
// in FailMode order.
var Outcomes = []string{"normal", "error", "timeout", "review"}

// Simulate is SetFailure by name (one of Outcomes): how the partner answers
// card requests on this server from now on.
func (a *Adapter) Simulate(outcome string, delay time.Duration) error {
	i := slices.Index(Outcomes, outcome)
	if i < 0 {
		return fmt.Errorf("sandbox %s: no outcome %q", a.name, outcome)
	}
	a.SetFailure(FailMode(i), delay)
	return nil
}

// Outcomes lists the names Simulate takes.
func (a *Adapter) Outcomes() []string { return Outcomes }

// Simulation reports what Simulate (or SetFailure) last set.
func (a *Adapter) Simulation() (string, time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if int(a.mode) < len(Outcomes) {
		return Outcomes[a.mode], a.delay
	}
	return a.mode.String(), a.delay
}

// Calls returns how many Issue calls reached the adapter, replays included,
// so tests can assert which providers routing tried.
func (a *Adapter) Calls() int { return int(a.calls.Load()) }

// Issued returns how many distinct cards the adapter has issued: a call
// replayed under an idempotency key it already saw issues none.
func (a *Adapter) Issued() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.cards)
}

// Name returns the routing name.
func (a *Adapter) Name() string { return a.name }

// Sandbox reports true: this partner issues test cards only.
func (a *Adapter) Sandbox() bool { return true }

// Supports reports whether country and currency are among the configured
// ones, ignoring case; an empty list supports everything.
func (a *Adapter) Supports(country, currency string) bool {
	return (len(a.countries) == 0 || a.countries[strings.ToUpper(country)]) &&
		(len(a.currencies) == 0 || a.currencies[strings.ToUpper(currency)])
}

// Issue issues a test card: a unique, Luhn-valid 16-digit PAN starting with
// the BIN, expiring three years from now. It is idempotent on
// req.IdempotencyKey, as a real partner is, so a caller retrying after a
// timeout gets the card the first call issued instead of a second one; an
// empty key is refused for the same reason. The failure mode set by
// SetFailure decides whether it answers at all.
func (a *Adapter) Issue(ctx context.Context, req cardrail.IssueRequest) (cardrail.IssuedCard, error) {
	a.calls.Add(1)
	if req.IdempotencyKey == "" {
		return cardrail.IssuedCard{}, fmt.Errorf("sandbox %s: idempotency key is required", a.name)
	}

	a.mu.Lock()
	mode, delay := a.mode, a.delay
	var card cardrail.IssuedCard
	var err error
	if mode != FailError {
		// The card is recorded before any wait, so a call that times out
		// has still issued, as a slow real partner would have.
		card, err = a.issueLocked(req.IdempotencyKey, mode == FailReview)
	}
	a.mu.Unlock()
	if err != nil {
		return cardrail.IssuedCard{}, err
	}

	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return cardrail.IssuedCard{}, a.timeout(ctx)
		}
	}
	switch mode {
	case FailError:
		return cardrail.IssuedCard{}, fmt.Errorf("sandbox %s: %w", a.name, ErrSimulated)
	case FailTimeout:
		<-ctx.Done()
		return cardrail.IssuedCard{}, a.timeout(ctx)
	}
	if err := ctx.Err(); err != nil {
		return cardrail.IssuedCard{}, a.timeout(ctx)
	}
	return card, nil
}

// timeout is the error for a call whose context ended before the answer.
func (a *Adapter) timeout(ctx context.Context) error {
	return fmt.Errorf("sandbox %s: %w: %w", a.name, cardrail.ErrProviderTimeout, ctx.Err())
}

// issueLocked returns the card already issued for key, or issues and records
// a new one. a.mu must be held.
func (a *Adapter) issueLocked(key string, underReview bool) (cardrail.IssuedCard, error) {
	if card, ok := a.cards[key]; ok {
		return card, nil
	}
	var pan string
	for {
		var err error
		if pan, err = a.newPAN(); err != nil {
			return cardrail.IssuedCard{}, err
		}
		if !a.pans[pan] {
			break
		}
	}
	id := make([]byte, 12)
	rand.Read(id)
	now := time.Now().UTC()
	card := cardrail.IssuedCard{
		ProviderCardID: "sbx_" + hex.EncodeToString(id),
		PAN:            pan,
		ExpMonth:       int(now.Month()),
		ExpYear:        now.Year() + 3,
		UnderReview:    underReview,
	}
	a.cards[key] = card
	a.pans[pan] = true
	return card, nil
}

// newPAN returns the BIN, random digits, and the Luhn check digit.
func (a *Adapter) newPAN() (string, error) {
	digits := []byte(a.bin)
	ten := big.NewInt(10)
	for len(digits) < panLength-1 {
		n, err := rand.Int(rand.Reader, ten)
		if err != nil {
			return "", fmt.Errorf("sandbox %s: random PAN digits: %w", a.name, err)
		}
		digits = append(digits, byte('0'+n.Int64()))
	}
	return string(append(digits, luhnCheckDigit(digits))), nil
}

// CVV derives the card's three-digit CVV from the secret, the PAN and the
// expiry, so it can be revealed on demand without ever being stored. The
// same inputs always give the same CVV.
func (a *Adapter) CVV(pan string, expMonth, expYear int) string {
	mac := hmac.New(sha256.New, a.secret)
	fmt.Fprintf(mac, "%s|%02d|%04d", pan, expMonth, expYear)
	// Reducing 64 bits modulo 1000 leaves a bias far too small to matter.
	n := binary.BigEndian.Uint64(mac.Sum(nil)) % 1000
	return fmt.Sprintf("%03d", n)
}

// LuhnValid reports whether pan is all digits, at least two of them, and
// passes the Luhn check that card networks and checkout forms apply.
func LuhnValid(pan string) bool {
	if len(pan) < 2 || !allDigits(pan) {
		return false
	}
	return luhnCheckDigit([]byte(pan[:len(pan)-1])) == pan[len(pan)-1]
}

// luhnCheckDigit returns the digit that makes payload followed by it pass the
// Luhn check.
func luhnCheckDigit(payload []byte) byte {
	sum := 0
	// Walking from the right, the digit next to the check digit is doubled.
	for i := len(payload) - 1; i >= 0; i-- {
		d := int(payload[i] - '0')
		if (len(payload)-1-i)%2 == 0 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return byte('0' + (10-sum%10)%10)
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func upperSet(codes []string) map[string]bool {
	set := make(map[string]bool, len(codes))
	for _, c := range codes {
		set[strings.ToUpper(strings.TrimSpace(c))] = true
	}
	return set
}
