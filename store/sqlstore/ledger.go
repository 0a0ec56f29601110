package sqlstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/ledger"
)

func scanWallet(r Row) (*cardrail.Wallet, error) {
	var w cardrail.Wallet
	var owner *string
	var created int64
	if err := r.Scan(&w.Reference, &owner, &w.Currency, &w.Balance.Available, &w.Livemode, &created); err != nil {
		return nil, err
	}
	if owner != nil {
		w.Owner = *owner
	}
	w.Object = "wallet"
	w.CreatedAt = fromMicros(created)
	return &w, nil
}

const walletSelect = `SELECT id, owner, currency, balance, livemode, created_at FROM accounts`

// Wallets implements cardrail.Reader.
func (q *queries) Wallets(ctx context.Context, livemode bool, owner string) ([]cardrail.Wallet, error) {
	rows, err := q.q.Query(ctx, walletSelect+` WHERE kind = 'wallet' AND livemode = $1 AND owner = $2 ORDER BY currency`, livemode, owner)
	if err != nil {
		return nil, fmt.Errorf("wallets: %w", err)
	}
	w, err := collect(rows, scanWallet)
	return nonNil(w), err
}

// Wallet implements cardrail.Tx: the wallet is created on first use, and a
// concurrent creator's row wins harmlessly.
func (q *queries) Wallet(ctx context.Context, livemode bool, owner, currency string) (*cardrail.Wallet, error) {
	const find = walletSelect + ` WHERE kind = 'wallet' AND livemode = $1 AND owner = $2 AND currency = $3`
	w, err := scanWallet(q.q.QueryRow(ctx, find, livemode, owner, currency))
	if err == nil || !notFound(err) {
		return w, err
	}
	ref, now := cardrail.NewReferenceAt(q.now, cardrail.PrefixWallet)
	if _, err := q.q.Exec(ctx, `INSERT INTO accounts (id, kind, livemode, currency, owner, balance, created_at)
		VALUES ($1, 'wallet', $2, $3, $4, 0, $5) ON CONFLICT DO NOTHING`,
		ref, livemode, currency, owner, micros(now)); err != nil {
		return nil, fmt.Errorf("create wallet: %w", err)
	}
	return scanWallet(q.q.QueryRow(ctx, find, livemode, owner, currency))
}

// Post implements cardrail.Tx. Lines are applied in account order, so that
// two entries touching the same accounts always lock them in the same order
// and cannot deadlock each other. Each balance change is conditional: a
// floored account that would go negative matches no row, and the entry fails.
// The entry runs under a savepoint that a failure rolls back, because the
// lines before the failing one are already applied and the caller may go on
// to commit (a declined authorization is recorded after a shortfall).
func (q *queries) Post(ctx context.Context, e *ledger.Entry) error {
	if err := e.Validate(); err != nil {
		return err
	}
	if _, err := q.q.Exec(ctx, `SAVEPOINT post_entry`); err != nil {
		return fmt.Errorf("post %s: %w", e.Type, err)
	}
	err := q.post(ctx, e)
	if err != nil {
		if _, rerr := q.q.Exec(ctx, `ROLLBACK TO SAVEPOINT post_entry`); rerr != nil {
			return errors.Join(err, fmt.Errorf("post %s: undo: %w", e.Type, rerr))
		}
	}
	if _, rerr := q.q.Exec(ctx, `RELEASE SAVEPOINT post_entry`); rerr != nil {
		return errors.Join(err, fmt.Errorf("post %s: release: %w", e.Type, rerr))
	}
	return err
}

func (q *queries) post(ctx context.Context, e *ledger.Entry) error {
	lines := slices.Clone(e.Lines)
	slices.SortStableFunc(lines, func(a, b ledger.Line) int { return cmp.Compare(a.Account, b.Account) })
	afters := make([]int64, len(lines))
	for i, l := range lines {
		kind := ledger.KindOf(l.Account)
		if !kind.Floored() {
			if _, err := q.q.Exec(ctx, `INSERT INTO accounts (id, kind, livemode, currency, balance, created_at)
				VALUES ($1, $2, $3, $4, 0, $5) ON CONFLICT (id) DO NOTHING`, l.Account, string(kind), e.Livemode, e.Currency, micros(q.now())); err != nil {
				return fmt.Errorf("ensure system account: %w", err)
			}
		}
		// The conditions hold no arithmetic, so that no balance can be
		// carried past int64: PostgreSQL would fail the statement and
		// SQLite would turn the sum into a float.
		lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
		if l.Amount > 0 {
			hi -= l.Amount
		} else {
			lo -= l.Amount
		}
		err := q.q.QueryRow(ctx, `UPDATE accounts SET balance = balance + $1
			WHERE id = $2 AND currency = $3 AND livemode = $4 AND balance >= $5 AND balance <= $6
			AND (balance >= $7 OR kind NOT IN ('wallet', 'card_available', 'card_held'))
			RETURNING balance`, l.Amount, l.Account, e.Currency, e.Livemode, lo, hi, -l.Amount).Scan(&afters[i])
		if notFound(err) {
			var balance int64
			if err2 := q.q.QueryRow(ctx, `SELECT balance FROM accounts WHERE id = $1 AND currency = $2 AND livemode = $3`,
				l.Account, e.Currency, e.Livemode).Scan(&balance); err2 != nil {
				return fmt.Errorf("post %s: no account %s in %s", e.Type, l.Account, e.Currency)
			}
			if balance < lo || balance > hi {
				return cardrail.Errorf(cardrail.CodeMaxBalanceExceeded, "The amount would take a balance beyond what the ledger can hold.")
			}
			return &ledger.InsufficientFunds{Account: l.Account}
		}
		if err != nil {
			return fmt.Errorf("post %s line %s: %w", e.Type, l.Account, err)
		}
	}
	// Every account is locked now, so this stamp comes after any other
	// transaction's on them: an account's lines list in the order they were
	// applied, and in created_at order (see insertLines).
	prefixes := make([]string, 1+len(lines))
	prefixes[0] = cardrail.PrefixEntry
	for i := range lines {
		prefixes[1+i] = cardrail.PrefixTransaction
	}
	refs, at := cardrail.NewReferencesAt(q.now, prefixes...)
	now := micros(at)
	e.Reference = refs[0]
	if _, err := q.q.Exec(ctx, `INSERT INTO journal_entries (reference, livemode, type, currency, card, authorization_ref, dispute, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, e.Reference, e.Livemode, e.Type, e.Currency,
		nullable(e.Card), nullable(e.Authorization), nullable(e.Dispute), now); err != nil {
		return fmt.Errorf("insert entry: %w", err)
	}
	for i, l := range lines {
		if _, err := q.q.Exec(ctx, `INSERT INTO journal_lines (reference, entry, account, amount, balance_after, created_at)
			VALUES ($1, $2, $3, $4, $5, $6)`, refs[1+i], e.Reference, l.Account, l.Amount, afters[i], now); err != nil {
			return fmt.Errorf("insert line: %w", err)
		}
	}
	return nil
}

// CardTransactions implements cardrail.Reader: the lines on the card's two
// accounts, newest first.
func (q *queries) CardTransactions(ctx context.Context, livemode bool, card string, p cardrail.ListParams) (cardrail.Page[cardrail.CardTransaction], error) {
	cc, ca := cursorClause("l.reference", p.Cursor, 4)
	args := append([]any{livemode, ledger.CardAvailableAccount(card), ledger.CardHeldAccount(card)}, ca...)
	args = append(args, p.Limit+1)
	rows, err := q.q.Query(ctx, `SELECT l.reference, e.type, l.account, l.amount, l.balance_after, e.currency,
		e.authorization_ref, e.dispute, e.livemode, l.created_at
		FROM journal_lines l JOIN journal_entries e ON e.reference = l.entry
		WHERE e.livemode = $1 AND l.account IN ($2, $3)`+cc+fmt.Sprintf(` ORDER BY l.reference DESC LIMIT $%d`, len(args)), args...)
	if err != nil {
		return cardrail.Page[cardrail.CardTransaction]{}, fmt.Errorf("card transactions: %w", err)
	}
	items, err := collect(rows, func(r Row) (*cardrail.CardTransaction, error) {
		var t cardrail.CardTransaction
		var created int64
		if err := r.Scan(&t.Reference, &t.Type, &t.Account, &t.Amount, &t.BalanceAfter, &t.Currency,
			&t.Authorization, &t.Dispute, &t.Livemode, &created); err != nil {
			return nil, err
		}
		t.Object = "card_transaction"
		t.Account = string(ledger.KindOf(t.Account))[len("card_"):]
		t.CreatedAt = fromMicros(created)
		return &t, nil
	})
	if err != nil {
		return cardrail.Page[cardrail.CardTransaction]{}, err
	}
	return page(items, p.Limit, func(t *cardrail.CardTransaction) string { return t.Reference }), nil
}

// AccountBalances implements cardrail.Reader.
func (q *queries) AccountBalances(ctx context.Context, livemode bool) ([]cardrail.AccountBalance, error) {
	rows, err := q.q.Query(ctx, `SELECT currency, kind, CAST(SUM(balance) AS BIGINT), COUNT(*) FROM accounts WHERE livemode = $1
		GROUP BY currency, kind ORDER BY currency, kind`, livemode)
	if err != nil {
		return nil, fmt.Errorf("account balances: %w", err)
	}
	out, err := collect(rows, func(r Row) (*cardrail.AccountBalance, error) {
		var b cardrail.AccountBalance
		var kind string
		if err := r.Scan(&b.Currency, &kind, &b.Balance, &b.Accounts); err != nil {
			return nil, err
		}
		b.Kind = ledger.Kind(kind)
		return &b, nil
	})
	return nonNil(out), err
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
