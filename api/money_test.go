package api_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/config"
	"github.com/cardrail/cardrail/internal/apptest"
	"github.com/cardrail/cardrail/internal/testdb"
)

// balance reads a card's balance and the caller's USD wallet.
func balances(t *testing.T, c *apptest.Client, card string) (available, held, wallet int64) {
	t.Helper()
	var cd cardrail.Card
	if err := c.Must(200, "GET", "/managed-cards/"+card+"/", nil).Decode(&cd); err != nil {
		t.Fatal(err)
	}
	var ws struct {
		Data []cardrail.Wallet `json:"data"`
	}
	if err := c.Must(200, "GET", "/wallets/", nil).Decode(&ws); err != nil {
		t.Fatal(err)
	}
	for _, w := range ws.Data {
		if w.Currency == cd.Currency {
			wallet = w.Balance.Available
		}
	}
	return cd.Balance.Available, cd.Balance.Held, wallet
}

func TestFundAndWithdraw(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		alice := env.Client("alice", "US")
		card := alice.NewCard("usd_visa_virtual")
		alice.Must(200, "POST", "/sandbox/wallets/deposit/", map[string]any{"amount": 2_000_000, "currency": "USD"})
		r := alice.Must(200, "POST", "/managed-cards/"+card+"/fund/", map[string]any{"amount": 10_000, "currency": "USD"})
		if r.JSON()["balance"].(map[string]any)["available"].(float64) != 10_000 {
			t.Fatalf("fund answered %s", r.Body)
		}
		if a, h, w := balances(t, alice, card); a != 10_000 || h != 0 || w != 1_990_000 {
			t.Fatalf("balances %d %d %d", a, h, w)
		}
		refused := []struct {
			name   string
			path   string
			body   any
			status int
			code   string
		}{
			{"a float amount", "fund", `{"amount": 10.0}`, 422, "validation_failed"},
			{"a string amount", "fund", `{"amount": "100"}`, 422, "validation_failed"},
			{"zero", "fund", `{"amount": 0}`, 422, "validation_failed"},
			{"a negative amount", "fund", `{"amount": -5}`, 422, "validation_failed"},
			{"an amount above 10^13", "fund", `{"amount": 10000000000001}`, 422, "validation_failed"},
			{"an exponent", "fund", `{"amount": 1e3}`, 422, "validation_failed"},
			{"lowercase currency", "fund", `{"amount": 100, "currency": "usd"}`, 422, "validation_failed"},
			{"the amount named in capitals", "fund", `{"AMOUNT": 100}`, 422, "validation_failed"},
			{"the amount named twice", "fund", `{"amount": 1, "Amount": 2}`, 422, "validation_failed"},
			{"another currency", "fund", `{"amount": 100, "currency": "NGN"}`, 422, "currency_mismatch"},
			{"beyond max_balance", "fund", `{"amount": 990001}`, 422, "max_balance_exceeded"},
			{"beyond the wallet", "withdraw", `{"amount": 10001}`, 422, "insufficient_card_funds"},
			{"a withdrawal of zero", "withdraw", `{"amount": 0}`, 422, "validation_failed"},
		}
		for _, tc := range refused {
			t.Run("refuses "+tc.name+" and moves nothing", func(t *testing.T) {
				r := alice.Do("POST", "/managed-cards/"+card+"/"+tc.path+"/", tc.body)
				if r.Status != tc.status || r.Code() != tc.code {
					t.Fatalf("%d %q, want %d %q: %s", r.Status, r.Code(), tc.status, tc.code, r.Body)
				}
				if a, h, w := balances(t, alice, card); a != 10_000 || h != 0 || w != 1_990_000 {
					t.Fatalf("balances moved: %d %d %d", a, h, w)
				}
			})
		}
		t.Run("the message says what is wrong with the number", func(t *testing.T) {
			for body, want := range map[string]string{
				`{"amount": 10.5}`:                 "not a fraction or exponent",
				`{"amount": 1e3}`:                  "not a fraction or exponent",
				`{"amount": 99999999999999999999}`: "from 1 to 10000000000000",
				`{"amount": 10000000000001}`:       "from 1 to 10000000000000",
				`{"currency": "USD"}`:              `"amount","message":"is required, an integer from 1 to 10000000000000 minor units"`,
				`{"amount": -3}`:                   `"must be an integer from 1 to 10000000000000 minor units"`,
				`{"amount": 0}`:                    `"must be an integer from 1 to 10000000000000 minor units"`,
			} {
				r := alice.Do("POST", "/managed-cards/"+card+"/fund/", body)
				if r.Status != 422 || !strings.Contains(string(r.Body), want) {
					t.Errorf("%s: %d %s; want a message saying %q", body, r.Status, r.Body, want)
				}
			}
		})
		t.Run("max_balance is inclusive", func(t *testing.T) {
			alice.Must(200, "POST", "/managed-cards/"+card+"/fund/", map[string]any{"amount": 990_000})
			alice.Must(200, "POST", "/managed-cards/"+card+"/withdraw/", map[string]any{"amount": 990_000})
		})
		t.Run("an empty wallet refuses funding", func(t *testing.T) {
			bob := env.Client("bob", "US")
			bc := bob.NewCard("usd_visa_virtual")
			r := bob.Do("POST", "/managed-cards/"+bc+"/fund/", map[string]any{"amount": 1})
			if r.Status != 422 || r.Code() != "insufficient_wallet_funds" {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
		})
		t.Run("frozen cards move money; terminated ones do not", func(t *testing.T) {
			alice.Must(200, "POST", "/managed-cards/"+card+"/freeze/", nil)
			alice.Must(200, "POST", "/managed-cards/"+card+"/fund/", map[string]any{"amount": 100})
			alice.Must(200, "POST", "/managed-cards/"+card+"/withdraw/", map[string]any{"amount": 100})
			other := alice.NewCard("usd_visa_virtual")
			alice.Must(200, "POST", "/managed-cards/"+other+"/terminate/", nil)
			if r := alice.Do("POST", "/managed-cards/"+other+"/fund/", map[string]any{"amount": 1}); r.Code() != "invalid_card_state" {
				t.Fatalf("fund terminated: %s", r.Body)
			}
		})
		t.Run("the card's transactions are its ledger lines, newest first", func(t *testing.T) {
			var page struct {
				Data []cardrail.CardTransaction `json:"data"`
			}
			if err := alice.Must(200, "GET", "/managed-cards/"+card+"/transactions/?limit=100", nil).Decode(&page); err != nil {
				t.Fatal(err)
			}
			types := ""
			for _, tx := range page.Data {
				types += fmt.Sprintf("%s:%d:%d ", tx.Type, tx.Amount, tx.BalanceAfter)
			}
			want := "card_withdrawal:-100:10000 card_funding:100:10100 card_withdrawal:-990000:10000 card_funding:990000:1000000 card_funding:10000:10000 "
			if types != want {
				t.Fatalf("transactions\n got %s\nwant %s", types, want)
			}
		})
		env.CheckLedger()
	})
}

func TestAuthorizationDeclines(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		alice := env.Client("alice", "US")
		card := alice.FundedCard(10_000)
		controls := func(c map[string]any) {
			alice.Must(200, "PATCH", "/managed-cards/"+card+"/", map[string]any{"spending_controls": c})
		}
		auth := func(amount int64, currency, mcc, country string) *apptest.Response {
			return alice.Must(201, "POST", "/managed-cards/"+card+"/authorize/", map[string]any{"amount": amount, "currency": currency,
				"merchant": map[string]any{"name": "M", "mcc": mcc, "country": country}})
		}
		expect := func(t *testing.T, r *apptest.Response, reason string) {
			t.Helper()
			got := ""
			if r.JSON()["decline_reason"] != nil {
				got = r.Str("decline_reason")
			}
			if got != reason {
				t.Fatalf("decline %q, want %q: %s", got, reason, r.Body)
			}
			if reason != "" && (r.Str("status") != "declined" || r.Int("held_amount") != 0 || r.JSON()["expires_at"] != nil) {
				t.Fatalf("declined authorization holds: %s", r.Body)
			}
		}
		t.Run("currency mismatch", func(t *testing.T) { expect(t, auth(100, "NGN", "5411", "US"), "currency_mismatch") })
		t.Run("blocked category", func(t *testing.T) {
			controls(map[string]any{"blocked_mccs": []string{"7995"}})
			expect(t, auth(100, "USD", "7995", "US"), "merchant_category_blocked")
			controls(map[string]any{"allowed_mccs": []string{"5411"}})
			expect(t, auth(100, "USD", "5812", "US"), "merchant_category_blocked")
		})
		t.Run("blocked country", func(t *testing.T) {
			controls(map[string]any{"blocked_countries": []string{"RU"}})
			expect(t, auth(100, "USD", "5411", "RU"), "merchant_country_blocked")
			controls(map[string]any{"allowed_countries": []string{"US"}})
			expect(t, auth(100, "USD", "5411", "GB"), "merchant_country_blocked")
		})
		t.Run("per-authorization limit is inclusive", func(t *testing.T) {
			controls(map[string]any{"per_authorization": 1000})
			expect(t, auth(1001, "USD", "5411", "US"), "exceeds_per_authorization_limit")
			a := auth(1000, "USD", "5411", "US")
			expect(t, a, "")
			alice.Must(200, "POST", "/authorizations/"+a.Str("reference")+"/reverse/", nil)
		})
		t.Run("daily limit counts approved minus reversed", func(t *testing.T) {
			controls(map[string]any{"daily": 2000})
			a := auth(1500, "USD", "5411", "US")
			expect(t, a, "")
			expect(t, auth(600, "USD", "5411", "US"), "exceeds_daily_limit")
			alice.Must(200, "POST", "/authorizations/"+a.Str("reference")+"/reverse/", map[string]any{"amount": 1000})
			expect(t, auth(600, "USD", "5411", "US"), "")
		})
		t.Run("monthly limit", func(t *testing.T) {
			controls(map[string]any{"monthly": 1500}) // 1100 used this month
			expect(t, auth(600, "USD", "5411", "US"), "exceeds_monthly_limit")
		})
		t.Run("insufficient funds", func(t *testing.T) {
			controls(map[string]any{})
			expect(t, auth(9_000, "USD", "5411", "US"), "insufficient_funds")
		})
		t.Run("the first reason in the SPEC's order wins", func(t *testing.T) {
			controls(map[string]any{"blocked_mccs": []string{"7995"}, "per_authorization": 10})
			expect(t, auth(50_000, "USD", "7995", "US"), "merchant_category_blocked")
			alice.Must(200, "POST", "/managed-cards/"+card+"/freeze/", nil)
			expect(t, auth(50_000, "NGN", "7995", "US"), "card_not_active")
			alice.Must(200, "POST", "/managed-cards/"+card+"/unfreeze/", nil)
		})
		t.Run("a disabled program declines first", func(t *testing.T) {
			ctx := context.Background()
			setStatus := func(s string) {
				if err := env.App.Store.Tx(ctx, func(tx cardrail.Tx) error {
					p, err := tx.ProgramForUpdate(ctx, false, "usd_visa_virtual")
					if err != nil {
						return err
					}
					p.Status = s
					return tx.SaveProgram(ctx, p)
				}); err != nil {
					t.Fatal(err)
				}
			}
			setStatus(cardrail.ProgramDisabled)
			defer setStatus(cardrail.ProgramEnabled)
			alice.Must(200, "POST", "/managed-cards/"+card+"/freeze/", nil)
			expect(t, auth(100, "NGN", "7995", "US"), "program_disabled")
			alice.Must(200, "POST", "/managed-cards/"+card+"/unfreeze/", nil)
		})
		t.Run("declines are listed and moved nothing", func(t *testing.T) {
			page := alice.Must(200, "GET", "/authorizations/?card="+card+"&limit=100", nil).JSON()["data"].([]any)
			declined := 0
			for _, a := range page {
				if a.(map[string]any)["status"] == "declined" {
					declined++
				}
			}
			if declined != 12 {
				t.Fatalf("%d declined authorizations listed", declined)
			}
			env.CheckLedger()
		})
	})
}

func TestSettleReverseRefundExpire(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		alice := env.Client("alice", "US")
		card := alice.FundedCard(10_000)
		authorize := func(amount int64) string {
			r := alice.Must(201, "POST", "/managed-cards/"+card+"/authorize/", apptest.Purchase(amount))
			if r.Str("status") != "pending" || r.Int("held_amount") != amount {
				t.Fatalf("authorize: %s", r.Body)
			}
			return r.Str("reference")
		}
		amounts := func(r *apptest.Response) string {
			return fmt.Sprintf("%s held=%d settled=%d reversed=%d refunded=%d", r.Str("status"), r.Int("held_amount"),
				r.Int("settled_amount"), r.Int("reversed_amount"), r.Int("refunded_amount"))
		}
		steps := []struct {
			name   string
			amount int64 // authorization amount; 0 continues the previous one
			action string
			body   any
			status int
			want   string // amounts after, or the problem code
			avail  int64
			held   int64
		}{
			{"hold", 3000, "", nil, 0, "", 7000, 3000},
			{"partial settle releases the rest", 0, "settle", map[string]any{"amount": 2000}, 200, "settled held=0 settled=2000 reversed=1000 refunded=0", 8000, 0},
			{"settling again conflicts", 0, "settle", nil, 409, "invalid_authorization_state", 8000, 0},
			{"reversing a settled one conflicts", 0, "reverse", nil, 409, "invalid_authorization_state", 8000, 0},
			{"partial refund", 0, "refund", map[string]any{"amount": 500}, 200, "settled held=0 settled=2000 reversed=1000 refunded=500", 8500, 0},
			{"refund beyond what is left", 0, "refund", map[string]any{"amount": 1501}, 422, "amount_exceeds_refundable", 8500, 0},
			{"refund the rest", 0, "refund", nil, 200, "settled held=0 settled=2000 reversed=1000 refunded=2000", 10000, 0},
			{"nothing left to refund", 0, "refund", nil, 422, "amount_exceeds_refundable", 10000, 0},
			{"second hold", 4000, "", nil, 0, "", 6000, 4000},
			{"partial reversal stays pending", 0, "reverse", map[string]any{"amount": 1500}, 200, "pending held=2500 settled=0 reversed=1500 refunded=0", 7500, 2500},
			{"settle more than held", 0, "settle", map[string]any{"amount": 2501}, 422, "amount_exceeds_held", 7500, 2500},
			{"refund a pending one", 0, "refund", nil, 409, "invalid_authorization_state", 7500, 2500},
			{"full reversal", 0, "reverse", nil, 200, "reversed held=0 settled=0 reversed=4000 refunded=0", 10000, 0},
			{"third hold", 1000, "", nil, 0, "", 9000, 1000},
			{"sandbox expiry", 0, "expire", nil, 200, "expired held=0 settled=0 reversed=1000 refunded=0", 10000, 0},
			{"settling an expired one conflicts", 0, "settle", nil, 409, "invalid_authorization_state", 10000, 0},
			{"amounts are validated", 0, "settle", `{"amount": 0}`, 422, "validation_failed", 10000, 0},
		}
		var ref string
		for _, st := range steps {
			t.Run(st.name, func(t *testing.T) {
				if st.amount > 0 {
					ref = authorize(st.amount)
				} else {
					path := "/authorizations/" + ref + "/" + st.action + "/"
					if st.action == "expire" {
						path = "/sandbox/authorizations/" + ref + "/expire/"
					}
					r := alice.Do("POST", path, st.body)
					got := r.Code()
					if r.Status == 200 {
						got = amounts(r)
					}
					if r.Status != st.status || got != st.want {
						t.Fatalf("%d %q, want %d %q: %s", r.Status, got, st.status, st.want, r.Body)
					}
				}
				if a, h, _ := balances(t, alice, card); a != st.avail || h != st.held {
					t.Fatalf("card available %d held %d, want %d %d", a, h, st.avail, st.held)
				}
				env.CheckLedger()
			})
		}
	})
}

func TestTerminationSweeps(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		alice := env.Client("alice", "US")
		card := alice.FundedCard(10_000)
		hold := alice.Must(201, "POST", "/managed-cards/"+card+"/authorize/", apptest.Purchase(3000)).Str("reference")
		settled := alice.Must(201, "POST", "/managed-cards/"+card+"/authorize/", apptest.Purchase(1000)).Str("reference")
		reversed := alice.Must(201, "POST", "/managed-cards/"+card+"/authorize/", apptest.Purchase(500)).Str("reference")
		alice.Must(200, "POST", "/authorizations/"+settled+"/settle/", nil)
		ops := env.Client("ops-1", "US", "ops")
		walletCredits := func() []any {
			return ops.Must(200, "GET", "/ops/events/?type=wallet.credited&limit=100", nil).JSON()["data"].([]any)
		}
		credits := len(walletCredits()) // the deposit that funded the card
		r := alice.Must(200, "POST", "/managed-cards/"+card+"/terminate/", nil)
		if r.JSON()["balance"].(map[string]any)["available"].(float64) != 0 {
			t.Fatalf("terminated card keeps money: %s", r.Body)
		}
		check := func(wantWallet, wantHeld int64) {
			t.Helper()
			a, h, w := balances(t, alice, card)
			if a != 0 || h != wantHeld || w != wantWallet {
				t.Fatalf("available %d held %d wallet %d; want 0 %d %d", a, h, w, wantHeld, wantWallet)
			}
			env.CheckLedger()
			// Every credit that reached the wallet has its wallet.credited
			// event, the newest showing the balance it left.
			events := walletCredits()
			credits++
			if len(events) != credits {
				t.Fatalf("%d wallet.credited events after %d credits", len(events), credits)
			}
			newest := events[0].(map[string]any)["data"].(map[string]any)["object"].(map[string]any)
			if got := newest["balance"].(map[string]any)["available"].(float64); got != float64(wantWallet) {
				t.Fatalf("the newest wallet.credited shows %v, want %d", got, wantWallet)
			}
		}
		check(5500, 3500)
		t.Run("a hold settled later releases its remainder to the wallet", func(t *testing.T) {
			alice.Must(200, "POST", "/authorizations/"+hold+"/settle/", map[string]any{"amount": 1000})
			check(7500, 500)
		})
		t.Run("a refund after termination goes to the wallet", func(t *testing.T) {
			alice.Must(200, "POST", "/authorizations/"+settled+"/refund/", map[string]any{"amount": 400})
			check(7900, 500)
		})
		t.Run("a reversal after termination goes to the wallet", func(t *testing.T) {
			alice.Must(200, "POST", "/authorizations/"+reversed+"/reverse/", nil)
			check(8400, 0)
		})
		t.Run("a won dispute after termination goes to the wallet", func(t *testing.T) {
			dispute := alice.Must(201, "POST", "/disputes/", map[string]any{"authorization": settled, "reason": "not_received"}).Str("reference")
			alice.Must(200, "POST", "/sandbox/disputes/"+dispute+"/submit/", nil)
			alice.Must(200, "POST", "/sandbox/disputes/"+dispute+"/win/", nil)
			check(9000, 0)
		})
	})
}

func TestHoldExpiryJob(t *testing.T) {
	env := apptest.New(t, testdb.URL(t, "sqlite"), func(c *config.Config) { c.HoldWindow = time.Millisecond })
	alice := env.Client("alice", "US")
	card := alice.FundedCard(5000)
	ref := alice.Must(201, "POST", "/managed-cards/"+card+"/authorize/", apptest.Purchase(2000)).Str("reference")
	time.Sleep(5 * time.Millisecond)
	env.App.Tick(context.Background())
	r := alice.Must(200, "GET", "/authorizations/"+ref+"/", nil)
	if r.Str("status") != "expired" || r.Int("reversed_amount") != 2000 {
		t.Fatalf("after the job: %s", r.Body)
	}
	if a, h, _ := balances(t, alice, card); a != 5000 || h != 0 {
		t.Fatalf("available %d held %d", a, h)
	}
	env.CheckLedger()
}

// TestOverdueHoldsExpire: once its expires_at has passed an authorization
// is expired, whether or not the expiry job has run: reading it shows it
// expired with its hold released, and a settle or reversal is refused 409
// while the expiry commits. Before, it stayed pending and settled until the
// job got to it (every --worker-interval).
func TestOverdueHoldsExpire(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url, func(c *config.Config) { c.HoldWindow = 300 * time.Millisecond })
		alice := env.Client("alice", "US")
		card := alice.FundedCard(5000)
		var refs []string
		for range 3 {
			refs = append(refs, alice.Must(201, "POST", "/managed-cards/"+card+"/authorize/", apptest.Purchase(1000)).Str("reference"))
		}
		read, settle, reverse := refs[0], refs[1], refs[2]
		time.Sleep(350 * time.Millisecond) // past expires_at; no job runs in these tests
		if r := alice.Must(200, "GET", "/authorizations/"+read+"/", nil); r.Str("status") != "expired" || r.Int("held_amount") != 0 || r.Int("reversed_amount") != 1000 {
			t.Fatalf("an overdue authorization read as %s", r.Body)
		}
		for ref, action := range map[string]string{settle: "settle", reverse: "reverse"} {
			r := alice.Do("POST", "/authorizations/"+ref+"/"+action+"/", nil)
			if r.Status != 409 || r.Code() != "invalid_authorization_state" || !strings.Contains(r.Str("detail"), "expired at") {
				t.Fatalf("%s of an overdue authorization: %d %s", action, r.Status, r.Body)
			}
			if got := alice.Must(200, "GET", "/authorizations/"+ref+"/", nil); got.Str("status") != "expired" || got.Int("reversed_amount") != 1000 {
				t.Fatalf("after the refused %s: %s", action, got.Body)
			}
		}
		if a, h, _ := balances(t, alice, card); a != 5000 || h != 0 {
			t.Fatalf("available %d held %d after every hold expired", a, h)
		}
		ops := env.Client("op", "US", "ops")
		for _, ref := range refs {
			evs := ops.Must(200, "GET", "/ops/events/?object="+ref, nil).JSON()["data"].([]any)
			if len(evs) != 2 || evs[0].(map[string]any)["type"] != "card.authorization.updated" {
				t.Fatalf("events of %s: %v", ref, evs)
			}
		}
		if n, err := env.App.Service.ExpireStale(context.Background(), 100); err != nil || n != 0 {
			t.Fatalf("the job found %d still to expire (%v)", n, err)
		}
		env.CheckLedger()
	})
}

// TestIdempotencyResponseLost plays a server that stopped after a request's
// effect committed and before its response was stored: a retry with the key
// is refused, and names the object the request created.
func TestIdempotencyResponseLost(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		alice := env.Client("alice", "US")
		ops := env.Client("op", "US", "ops")
		card := alice.FundedCard(10_000)
		auth := alice.Must(201, "POST", "/managed-cards/"+card+"/authorize/", apptest.Purchase(500)).Str("reference")
		alice.Must(200, "POST", "/authorizations/"+auth+"/settle/", nil)
		// lose leaves key as the crash would: applied, no response, and older
		// than the two minutes after which its holder counts as gone.
		lose := func(t *testing.T, key string) {
			t.Helper()
			n, err := env.App.Store.Conn().Exec(context.Background(), `UPDATE idempotency_keys SET response_status = NULL,
				response_type = NULL, response_body = NULL, created_at = created_at - 180000000 WHERE key = $1 AND applied`, key)
			if err != nil || n != 1 {
				t.Fatalf("lose %s: %d rows, %v", key, n, err)
			}
		}
		for _, tc := range []struct {
			name   string
			client *apptest.Client
			path   string
			body   any
		}{
			{"card", alice, "/managed-cards/", map[string]any{"program": "usd_visa_virtual"}},
			{"authorization", alice, "/managed-cards/" + card + "/authorize/", apptest.Purchase(100)},
			{"dispute", alice, "/disputes/", map[string]any{"authorization": auth, "reason": "not_received"}},
			{"webhook endpoint", ops, "/ops/webhook-endpoints/", map[string]any{"url": "http://127.0.0.1:9/hooks", "events": []string{"*"}}},
		} {
			t.Run("a lost response names the "+tc.name+" the request created", func(t *testing.T) {
				key := "lost-" + tc.name
				created := tc.client.Must(201, "POST", tc.path, tc.body, "Idempotency-Key", key).Str("reference")
				lose(t, key)
				r := tc.client.Do("POST", tc.path, tc.body, "Idempotency-Key", key)
				if r.Status != 409 || r.Code() != "idempotency_response_lost" || created == "" || r.Str("reference") != created ||
					!strings.Contains(r.Str("detail"), created) {
					t.Fatalf("retry after the lost response of %s: %d %s", created, r.Status, r.Body)
				}
			})
		}
		t.Run("a lost response of an action names no object", func(t *testing.T) {
			alice.Must(200, "POST", "/managed-cards/"+card+"/freeze/", nil, "Idempotency-Key", "lost-freeze")
			lose(t, "lost-freeze")
			r := alice.Do("POST", "/managed-cards/"+card+"/freeze/", nil, "Idempotency-Key", "lost-freeze")
			if _, named := r.JSON()["reference"]; r.Status != 409 || r.Code() != "idempotency_response_lost" || named {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
		})
	})
}

func TestIdempotency(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		alice := env.Client("alice", "US")
		card := alice.FundedCard(10_000)
		path := "/managed-cards/" + card + "/authorize/"
		t.Run("the first response is replayed byte for byte", func(t *testing.T) {
			first := alice.Must(201, "POST", path, apptest.Purchase(100), "Idempotency-Key", "k1")
			again := alice.Must(201, "POST", path, apptest.Purchase(100), "Idempotency-Key", "k1")
			if string(first.Body) != string(again.Body) || again.Header.Get("Idempotent-Replayed") != "true" || first.Header.Get("Idempotent-Replayed") != "" {
				t.Fatalf("replay differs:\n%s\n%s", first.Body, again.Body)
			}
		})
		t.Run("the same key with another body is refused", func(t *testing.T) {
			r := alice.Do("POST", path, apptest.Purchase(101), "Idempotency-Key", "k1")
			if r.Status != 422 || r.Code() != "idempotency_key_reused" {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
		})
		t.Run("keys are scoped to the caller", func(t *testing.T) {
			bob := env.Client("bob", "US")
			bcard := bob.FundedCard(1000)
			r := bob.Must(201, "POST", "/managed-cards/"+bcard+"/authorize/", apptest.Purchase(100), "Idempotency-Key", "k1")
			if r.Header.Get("Idempotent-Replayed") != "" {
				t.Fatalf("bob got alice's response")
			}
		})
		t.Run("declines are stored too; a retry after funding needs a new key", func(t *testing.T) {
			d := alice.Must(201, "POST", path, apptest.Purchase(20_000), "Idempotency-Key", "big")
			if d.Str("status") != "declined" {
				t.Fatalf("%s", d.Body)
			}
			again := alice.Must(201, "POST", path, apptest.Purchase(20_000), "Idempotency-Key", "big")
			if again.Str("reference") != d.Str("reference") {
				t.Fatalf("decline not replayed")
			}
		})
		t.Run("errors that are not stored run afresh", func(t *testing.T) {
			r := alice.Do("POST", path, apptest.Purchase(100), "Idempotency-Key", "bad-token", "Authorization", "Bearer nope")
			if r.Status != 401 {
				t.Fatalf("%d", r.Status)
			}
			alice.Must(201, "POST", path, apptest.Purchase(100), "Idempotency-Key", "bad-token")
		})
		t.Run("a key longer than 255 characters is refused", func(t *testing.T) {
			long := make([]byte, 256)
			for i := range long {
				long[i] = 'k'
			}
			if r := alice.Do("POST", path, apptest.Purchase(100), "Idempotency-Key", string(long)); r.Status != 422 {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
		})
		t.Run("64 identical racing requests take effect once", func(t *testing.T) {
			before := countAuthorizations(t, alice, card)
			var wg sync.WaitGroup
			var created, replayed, inProgress, other atomic.Int32
			refs := sync.Map{}
			for range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := alice.Do("POST", path, apptest.Purchase(7), "Idempotency-Key", "race")
					switch {
					case r.Status == 201 && r.Header.Get("Idempotent-Replayed") == "true":
						replayed.Add(1)
						refs.Store(r.Str("reference"), true)
					case r.Status == 201:
						created.Add(1)
						refs.Store(r.Str("reference"), true)
					case r.Status == 409 && r.Code() == "idempotency_request_in_progress":
						inProgress.Add(1)
					default:
						other.Add(1)
					}
				}()
			}
			wg.Wait()
			n := 0
			refs.Range(func(any, any) bool { n++; return true })
			if created.Load() != 1 || other.Load() != 0 || n != 1 {
				t.Fatalf("created %d replayed %d in-progress %d other %d distinct %d", created.Load(), replayed.Load(), inProgress.Load(), other.Load(), n)
			}
			if after := countAuthorizations(t, alice, card); after != before+1 {
				t.Fatalf("%d authorizations made", after-before)
			}
			env.CheckLedger()
		})
	})
}

func countAuthorizations(t *testing.T, c *apptest.Client, card string) int {
	t.Helper()
	n := 0
	cursor := ""
	for {
		r := c.Must(200, "GET", "/authorizations/?limit=100&card="+card+cursor, nil).JSON()
		n += len(r["data"].([]any))
		if r["has_more"] != true {
			return n
		}
		cursor = "&cursor=" + r["next_cursor"].(string)
	}
}

func TestConcurrentMoney(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		t.Run("50 racing authorizations on a card funded for 10 approve exactly 10", func(t *testing.T) {
			alice := env.Client("alice", "US")
			card := alice.FundedCard(1000)
			var wg sync.WaitGroup
			var approved, declined, failed atomic.Int32
			for range 50 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := alice.Do("POST", "/managed-cards/"+card+"/authorize/", apptest.Purchase(100))
					switch {
					case r.Status == 201 && r.Str("status") == "pending":
						approved.Add(1)
					case r.Status == 201 && r.Str("decline_reason") == "insufficient_funds":
						declined.Add(1)
					default:
						failed.Add(1)
						t.Errorf("unexpected answer %d %s", r.Status, r.Body)
					}
				}()
			}
			wg.Wait()
			if approved.Load() != 10 || declined.Load() != 40 || failed.Load() != 0 {
				t.Fatalf("approved %d declined %d failed %d", approved.Load(), declined.Load(), failed.Load())
			}
			if a, h, _ := balances(t, alice, card); a != 0 || h != 1000 {
				t.Fatalf("available %d held %d", a, h)
			}
			env.CheckLedger()
		})
		t.Run("racing funds from one wallet never overdraw it", func(t *testing.T) {
			bob := env.Client("bob", "US")
			bob.Must(200, "POST", "/sandbox/wallets/deposit/", map[string]any{"amount": 1000, "currency": "USD"})
			cards := []string{bob.NewCard("usd_visa_virtual"), bob.NewCard("usd_visa_virtual"), bob.NewCard("usd_visa_virtual"), bob.NewCard("usd_visa_virtual")}
			var wg sync.WaitGroup
			var ok, refused atomic.Int32
			for i := range 40 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := bob.Do("POST", "/managed-cards/"+cards[i%4]+"/fund/", map[string]any{"amount": 100})
					switch {
					case r.Status == 200:
						ok.Add(1)
					case r.Code() == "insufficient_wallet_funds":
						refused.Add(1)
					default:
						t.Errorf("unexpected answer %d %s", r.Status, r.Body)
					}
				}()
			}
			wg.Wait()
			if ok.Load() != 10 || refused.Load() != 30 {
				t.Fatalf("funded %d refused %d", ok.Load(), refused.Load())
			}
			var total int64
			for _, c := range cards {
				a, _, w := balances(t, bob, c)
				total += a
				if w != 0 {
					t.Fatalf("wallet %d", w)
				}
			}
			if total != 1000 {
				t.Fatalf("cards hold %d", total)
			}
			env.CheckLedger()
		})
		t.Run("racing settle and reverse: exactly one wins", func(t *testing.T) {
			carol := env.Client("carol", "US")
			card := carol.FundedCard(5000)
			for range 5 {
				ref := carol.Must(201, "POST", "/managed-cards/"+card+"/authorize/", apptest.Purchase(100)).Str("reference")
				var wg sync.WaitGroup
				var wins, conflicts atomic.Int32
				for i := range 8 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						action := []string{"settle", "reverse", "refund"}[i%2]
						r := carol.Do("POST", "/authorizations/"+ref+"/"+action+"/", nil)
						switch {
						case r.Status == http.StatusOK:
							wins.Add(1)
						case r.Code() == "invalid_authorization_state":
							conflicts.Add(1)
						default:
							t.Errorf("unexpected %d %s", r.Status, r.Body)
						}
					}()
				}
				wg.Wait()
				if wins.Load() != 1 || conflicts.Load() != 7 {
					t.Fatalf("wins %d conflicts %d", wins.Load(), conflicts.Load())
				}
			}
			env.CheckLedger()
		})
	})
}

func TestCardExpiryJob(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		alice := env.Client("alice", "US")
		old := alice.FundedCard(5000)
		hold := alice.Must(201, "POST", "/managed-cards/"+old+"/authorize/", apptest.Purchase(1000)).Str("reference")
		current := alice.NewCard("usd_visa_virtual")
		now := time.Now().UTC()
		setExpiry := func(card string, year, month int) {
			if _, err := env.App.Store.Conn().Exec(context.Background(), `UPDATE cards SET exp_year = $1, exp_month = $2 WHERE reference = $3`,
				year, month, card); err != nil {
				t.Fatal(err)
			}
		}
		last := now.AddDate(0, -1, 0)
		setExpiry(old, last.Year(), int(last.Month()))
		setExpiry(current, now.Year(), int(now.Month()))
		env.App.Tick(context.Background())

		if s := alice.Must(200, "GET", "/managed-cards/"+current+"/", nil).Str("status"); s != "active" {
			t.Fatalf("a card expiring this month is %s before the month ends", s)
		}
		a, h, w := balances(t, alice, old)
		if s := alice.Must(200, "GET", "/managed-cards/"+old+"/", nil).Str("status"); s != "expired" || a != 0 || h != 1000 || w != 4000 {
			t.Fatalf("after expiry: status %s available %d held %d wallet %d", s, a, h, w)
		}
		t.Run("an expired card's released hold goes to the wallet", func(t *testing.T) {
			alice.Must(200, "POST", "/authorizations/"+hold+"/reverse/", nil)
			if a, h, w := balances(t, alice, old); a != 0 || h != 0 || w != 5000 {
				t.Fatalf("available %d held %d wallet %d", a, h, w)
			}
		})
		t.Run("expired is final", func(t *testing.T) {
			if r := alice.Do("POST", "/managed-cards/"+old+"/unfreeze/", nil); r.Code() != "invalid_card_state" {
				t.Fatalf("%s", r.Body)
			}
			if d := alice.Must(201, "POST", "/managed-cards/"+old+"/authorize/", apptest.Purchase(1)); d.Str("decline_reason") != "card_not_active" {
				t.Fatalf("%s", d.Body)
			}
		})
		env.CheckLedger()
	})
}

// TestTwoServersOneDatabase races authorizations through two servers on the
// same database, each with its own engine: the database, not either
// process's memory, must keep the balance and the daily limit exact.
func TestTwoServersOneDatabase(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		// One server decides with one executor, the other spreads cards
		// over three, so the race crosses both engines' partitions.
		envs := []*apptest.Env{apptest.New(t, url), apptest.New(t, url, func(c *config.Config) { c.AuthExecutors = 3 })}
		owners := []*apptest.Client{envs[0].Client("dana", "US"), envs[1].Client("dana", "US")}
		race := func(t *testing.T, card string, n int) (approved, declined map[string]int) {
			var mu sync.Mutex
			approved, declined = map[string]int{}, map[string]int{}
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := owners[i%2].Do("POST", "/managed-cards/"+card+"/authorize/", apptest.Purchase(100))
					mu.Lock()
					defer mu.Unlock()
					switch {
					case r.Status == 201 && r.Str("status") == "pending":
						approved["pending"]++
					case r.Status == 201:
						declined[r.Str("decline_reason")]++
					default:
						t.Errorf("unexpected answer %d %s", r.Status, r.Body)
					}
				}()
			}
			wg.Wait()
			return approved, declined
		}
		for round := range 3 {
			t.Run(fmt.Sprintf("round %d: a card funded for 10 approves exactly 10", round), func(t *testing.T) {
				card := owners[0].FundedCard(1000)
				approved, declined := race(t, card, 40)
				if approved["pending"] != 10 || declined["insufficient_funds"] != 30 {
					t.Fatalf("approved %v declined %v", approved, declined)
				}
			})
			t.Run(fmt.Sprintf("round %d: a daily limit of 10 approves exactly 10", round), func(t *testing.T) {
				card := owners[0].FundedCard(100_000)
				owners[1].Must(200, "PATCH", "/managed-cards/"+card+"/", map[string]any{"spending_controls": map[string]any{"daily": 1000}})
				approved, declined := race(t, card, 40)
				if approved["pending"] != 10 || declined["exceeds_daily_limit"] != 30 {
					t.Fatalf("approved %v declined %v", approved, declined)
				}
			})
		}
		envs[0].CheckLedger()
	})
}
