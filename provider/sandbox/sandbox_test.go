package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/provider/sandbox"
)

func newAdapter(t *testing.T, cfg sandbox.Config) *sandbox.Adapter {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "sandbox_test"
	}
	if cfg.Secret == nil {
		cfg.Secret = []byte("test-cvv-secret")
	}
	return sandbox.New(cfg)
}

func request(key string) cardrail.IssueRequest {
	return cardrail.IssueRequest{
		IdempotencyKey: key,
		CardReference:  "card_" + key,
		Program:        "visa_usd_virtual",
		Brand:          "visa",
		Type:           "virtual",
		Currency:       "USD",
		Country:        "US",
	}
}

func TestIssuedCards(t *testing.T) {
	for _, bin := range []string{"400000", "5500001", "50610000"} {
		t.Run("issues unique Luhn-valid PANs under BIN "+bin, func(t *testing.T) {
			a := newAdapter(t, sandbox.Config{BIN: bin})
			seen := make(map[string]bool)
			for i := range 500 {
				card, err := a.Issue(context.Background(), request(fmt.Sprintf("%s-%d", bin, i)))
				if err != nil {
					t.Fatalf("Issue: %v", err)
				}
				if len(card.PAN) != 16 {
					t.Fatalf("PAN %q has %d digits, want 16", card.PAN, len(card.PAN))
				}
				if !strings.HasPrefix(card.PAN, bin) {
					t.Fatalf("PAN %q does not start with BIN %s", card.PAN, bin)
				}
				if !sandbox.LuhnValid(card.PAN) {
					t.Fatalf("PAN %q fails the Luhn check", card.PAN)
				}
				if seen[card.PAN] {
					t.Fatalf("PAN %q issued twice", card.PAN)
				}
				seen[card.PAN] = true
			}
		})
	}

	t.Run("defaults the BIN to a test range", func(t *testing.T) {
		a := newAdapter(t, sandbox.Config{})
		card, err := a.Issue(context.Background(), request("k"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(card.PAN, sandbox.DefaultBIN) {
			t.Errorf("PAN %q does not start with %s", card.PAN, sandbox.DefaultBIN)
		}
	})

	t.Run("expires three years from now and has a sandbox id", func(t *testing.T) {
		a := newAdapter(t, sandbox.Config{})
		before := time.Now().UTC()
		card, err := a.Issue(context.Background(), request("k"))
		if err != nil {
			t.Fatal(err)
		}
		after := time.Now().UTC()
		okMonth := card.ExpMonth == int(before.Month()) || card.ExpMonth == int(after.Month())
		okYear := card.ExpYear == before.Year()+3 || card.ExpYear == after.Year()+3
		if !okMonth || !okYear {
			t.Errorf("expiry %02d/%d, want %02d/%d", card.ExpMonth, card.ExpYear, before.Month(), before.Year()+3)
		}
		if !strings.HasPrefix(card.ProviderCardID, "sbx_") || len(card.ProviderCardID) <= len("sbx_") {
			t.Errorf("ProviderCardID = %q, want sbx_ followed by hex", card.ProviderCardID)
		}
		if card.UnderReview {
			t.Error("card is under review in FailNone mode")
		}
	})
}

func TestLuhnValid(t *testing.T) {
	for _, tc := range []struct {
		name string
		pan  string
		want bool
	}{
		{"accepts the classic Visa test card", "4111111111111111", true},
		{"accepts the classic Mastercard test card", "5555555555554444", true},
		{"accepts the textbook example", "79927398713", true},
		{"rejects a wrong check digit", "4111111111111112", false},
		{"rejects transposed digits", "4111111111111141", false},
		{"rejects an empty string", "", false},
		{"rejects a single digit", "0", false},
		{"rejects spaces", "4111 1111 1111 1111", false},
		{"rejects letters", "411111111111111a", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sandbox.LuhnValid(tc.pan); got != tc.want {
				t.Errorf("LuhnValid(%q) = %v, want %v", tc.pan, got, tc.want)
			}
		})
	}
}

func TestIdempotency(t *testing.T) {
	ctx := context.Background()

	t.Run("returns the same card for the same key", func(t *testing.T) {
		a := newAdapter(t, sandbox.Config{})
		first, err := a.Issue(ctx, request("same"))
		if err != nil {
			t.Fatal(err)
		}
		again, err := a.Issue(ctx, request("same"))
		if err != nil {
			t.Fatal(err)
		}
		if again != first {
			t.Errorf("replay returned %+v, want %+v", again, first)
		}
		if a.Calls() != 2 {
			t.Errorf("Calls = %d, want 2", a.Calls())
		}
	})

	t.Run("returns different cards for different keys", func(t *testing.T) {
		a := newAdapter(t, sandbox.Config{})
		x, _ := a.Issue(ctx, request("x"))
		y, _ := a.Issue(ctx, request("y"))
		if x.PAN == y.PAN || x.ProviderCardID == y.ProviderCardID {
			t.Errorf("two keys gave the same card: %+v", x)
		}
	})

	t.Run("issues one card for concurrent calls with one key", func(t *testing.T) {
		a := newAdapter(t, sandbox.Config{})
		cards := make([]cardrail.IssuedCard, 20)
		var wg sync.WaitGroup
		for i := range cards {
			wg.Go(func() {
				cards[i], _ = a.Issue(ctx, request("race"))
			})
		}
		wg.Wait()
		for _, c := range cards[1:] {
			if c != cards[0] {
				t.Fatalf("concurrent calls gave different cards: %+v and %+v", c, cards[0])
			}
		}
	})

	t.Run("hands a retry after a timeout the card the partner issued", func(t *testing.T) {
		a := newAdapter(t, sandbox.Config{})
		a.SetFailure(sandbox.FailTimeout, 0)
		tctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		if _, err := a.Issue(tctx, request("slow")); !errors.Is(err, cardrail.ErrProviderTimeout) {
			t.Fatalf("Issue error = %v, want ErrProviderTimeout", err)
		}
		// Had the timed-out call issued nothing, the retry in review mode
		// would issue a new card held for review.
		a.SetFailure(sandbox.FailReview, 0)
		retried, err := a.Issue(ctx, request("slow"))
		if err != nil {
			t.Fatal(err)
		}
		if retried.PAN == "" || retried.UnderReview {
			t.Errorf("retry got %+v; want the active card recorded during the timed-out call", retried)
		}
	})

	t.Run("issues nothing when it refuses", func(t *testing.T) {
		a := newAdapter(t, sandbox.Config{})
		a.SetFailure(sandbox.FailError, 0)
		if _, err := a.Issue(ctx, request("refused")); !errors.Is(err, sandbox.ErrSimulated) {
			t.Fatalf("Issue error = %v, want ErrSimulated", err)
		}
		a.SetFailure(sandbox.FailNone, 0)
		card, err := a.Issue(ctx, request("refused"))
		if err != nil || card.PAN == "" {
			t.Fatalf("Issue after recovery = %+v, %v", card, err)
		}
	})

	t.Run("refuses a call without an idempotency key", func(t *testing.T) {
		a := newAdapter(t, sandbox.Config{})
		if _, err := a.Issue(ctx, request("")); err == nil || !strings.Contains(err.Error(), "idempotency key") {
			t.Errorf("Issue error = %v, want a missing idempotency key error", err)
		}
	})
}

func TestFailureModes(t *testing.T) {
	for _, tc := range []struct {
		name       string
		mode       sandbox.FailMode
		delay      time.Duration
		timeout    time.Duration
		wantErr    []error
		wantReview bool
	}{
		{name: "issues an active card normally", mode: sandbox.FailNone, timeout: time.Second},
		{name: "holds the card for review", mode: sandbox.FailReview, timeout: time.Second, wantReview: true},
		{name: "refuses in error mode", mode: sandbox.FailError, timeout: time.Second, wantErr: []error{sandbox.ErrSimulated}},
		{name: "blocks until the deadline in timeout mode", mode: sandbox.FailTimeout, timeout: 30 * time.Millisecond,
			wantErr: []error{cardrail.ErrProviderTimeout, context.DeadlineExceeded}},
		{name: "answers late when slower than the deadline", mode: sandbox.FailNone, delay: time.Minute, timeout: 30 * time.Millisecond,
			wantErr: []error{cardrail.ErrProviderTimeout, context.DeadlineExceeded}},
		{name: "answers after a delay within the deadline", mode: sandbox.FailNone, delay: 5 * time.Millisecond, timeout: time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAdapter(t, sandbox.Config{})
			a.SetFailure(tc.mode, tc.delay)
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			card, err := a.Issue(ctx, request("k"))
			for _, want := range tc.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("Issue error = %v, want it to match %v", err, want)
				}
			}
			if len(tc.wantErr) > 0 {
				if card.PAN != "" {
					t.Errorf("failed Issue returned a PAN")
				}
				return
			}
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			if card.UnderReview != tc.wantReview {
				t.Errorf("UnderReview = %v, want %v", card.UnderReview, tc.wantReview)
			}
		})
	}
}

func TestCVV(t *testing.T) {
	a := newAdapter(t, sandbox.Config{Secret: []byte("one secret")})
	b := newAdapter(t, sandbox.Config{Secret: []byte("another secret")})
	const pan = "4000001234567899"

	t.Run("is three digits and deterministic", func(t *testing.T) {
		cvv := a.CVV(pan, 4, 2029)
		if len(cvv) != 3 || strings.Trim(cvv, "0123456789") != "" {
			t.Fatalf("CVV = %q, want three digits", cvv)
		}
		for range 10 {
			if again := a.CVV(pan, 4, 2029); again != cvv {
				t.Fatalf("CVV changed from %q to %q", cvv, again)
			}
		}
		same := newAdapter(t, sandbox.Config{Name: "restarted", Secret: []byte("one secret")})
		if got := same.CVV(pan, 4, 2029); got != cvv {
			t.Errorf("another adapter with the same secret gives %q, want %q", got, cvv)
		}
	})

	t.Run("differs per PAN", func(t *testing.T) {
		distinct := make(map[string]bool)
		for i := range 200 {
			card, err := a.Issue(context.Background(), request(fmt.Sprintf("cvv-%d", i)))
			if err != nil {
				t.Fatal(err)
			}
			cvv := a.CVV(card.PAN, card.ExpMonth, card.ExpYear)
			if len(cvv) != 3 {
				t.Fatalf("CVV = %q, want three digits", cvv)
			}
			distinct[cvv] = true
		}
		// 200 draws from 1000 values give about 180 distinct ones; a CVV
		// that ignored the PAN would give one.
		if len(distinct) < 100 {
			t.Errorf("200 PANs gave only %d distinct CVVs", len(distinct))
		}
	})

	t.Run("depends on the expiry and the secret", func(t *testing.T) {
		base := a.CVV(pan, 4, 2029)
		changed := 0
		for _, other := range []string{a.CVV(pan, 5, 2029), a.CVV(pan, 4, 2030), b.CVV(pan, 4, 2029)} {
			if other != base {
				changed++
			}
		}
		if changed == 0 {
			t.Error("CVV ignores the expiry and the secret")
		}
	})
}

func TestSupports(t *testing.T) {
	a := newAdapter(t, sandbox.Config{Countries: []string{"NG", "gh"}, Currencies: []string{"NGN", "USD"}})
	all := newAdapter(t, sandbox.Config{})
	for _, tc := range []struct {
		name     string
		adapter  *sandbox.Adapter
		country  string
		currency string
		want     bool
	}{
		{"supports a listed pair", a, "NG", "NGN", true},
		{"ignores case", a, "Gh", "usd", true},
		{"refuses an unlisted country", a, "US", "USD", false},
		{"refuses an unlisted currency", a, "NG", "EUR", false},
		{"supports everything when unrestricted", all, "FR", "EUR", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.adapter.Supports(tc.country, tc.currency); got != tc.want {
				t.Errorf("Supports(%s, %s) = %v, want %v", tc.country, tc.currency, got, tc.want)
			}
		})
	}
	if !a.Sandbox() {
		t.Error("Sandbox() = false, want true")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  sandbox.Config
	}{
		{"without a name", sandbox.Config{Secret: []byte("s")}},
		{"without a secret", sandbox.Config{Name: "n"}},
		{"with a 5-digit BIN", sandbox.Config{Name: "n", Secret: []byte("s"), BIN: "40000"}},
		{"with a 9-digit BIN", sandbox.Config{Name: "n", Secret: []byte("s"), BIN: "400000000"}},
		{"with a non-numeric BIN", sandbox.Config{Name: "n", Secret: []byte("s"), BIN: "4000a0"}},
	} {
		t.Run("panics "+tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("New did not panic")
				}
			}()
			sandbox.New(tc.cfg)
		})
	}
}
