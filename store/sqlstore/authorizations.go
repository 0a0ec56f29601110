package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/cardrail/cardrail"
)

const authColumns = `reference, livemode, owner, card, status, amount, currency, held_amount, settled_amount,
	reversed_amount, refunded_amount, merchant, decline_reason, expires_at, created_at, updated_at`

func scanAuthorization(r Row) (*cardrail.Authorization, error) {
	var a cardrail.Authorization
	var merchant string
	var reason *string
	var expires *int64
	var created, updated int64
	if err := r.Scan(&a.Reference, &a.Livemode, &a.Owner, &a.Card, &a.Status, &a.Amount, &a.Currency, &a.HeldAmount,
		&a.SettledAmount, &a.ReversedAmount, &a.RefundedAmount, &merchant, &reason, &expires, &created, &updated); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(merchant), &a.Merchant); err != nil {
		return nil, fmt.Errorf("authorization %s: %w", a.Reference, err)
	}
	if reason != nil {
		d := cardrail.DeclineReason(*reason)
		a.DeclineReason = &d
	}
	if expires != nil {
		t := fromMicros(*expires)
		a.ExpiresAt = &t
	}
	a.Object = "authorization"
	a.CreatedAt, a.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &a, nil
}

// Authorization implements cardrail.Reader.
func (q *queries) Authorization(ctx context.Context, livemode bool, owner, ref string) (*cardrail.Authorization, error) {
	return q.authorization(ctx, livemode, owner, ref, "")
}

// AuthorizationForUpdate implements cardrail.Tx.
func (q *queries) AuthorizationForUpdate(ctx context.Context, livemode bool, owner, ref string) (*cardrail.Authorization, error) {
	return q.authorization(ctx, livemode, owner, ref, q.d.ForUpdate)
}

func (q *queries) authorization(ctx context.Context, livemode bool, owner, ref, lock string) (*cardrail.Authorization, error) {
	oc, oa := ownerClause("owner", owner, 3)
	args := append([]any{livemode, ref}, oa...)
	return scanAuthorization(q.q.QueryRow(ctx, `SELECT `+authColumns+` FROM authorizations WHERE livemode = $1 AND reference = $2`+oc+lock, args...))
}

// Authorizations implements cardrail.Reader.
func (q *queries) Authorizations(ctx context.Context, f cardrail.AuthorizationFilter) (cardrail.Page[cardrail.Authorization], error) {
	where, args := newList("livemode = $%d", f.Livemode).add("owner = $%d", f.Owner).add("card = $%d", f.Card).
		sql("reference", f.Cursor, f.Limit)
	rows, err := q.q.Query(ctx, `SELECT `+authColumns+` FROM authorizations`+where, args...)
	if err != nil {
		return cardrail.Page[cardrail.Authorization]{}, fmt.Errorf("authorizations: %w", err)
	}
	items, err := collect(rows, scanAuthorization)
	if err != nil {
		return cardrail.Page[cardrail.Authorization]{}, err
	}
	return page(items, f.Limit, func(a *cardrail.Authorization) string { return a.Reference }), nil
}

// StaleAuthorizations implements cardrail.Reader.
func (q *queries) StaleAuthorizations(ctx context.Context, now time.Time, limit int) ([]cardrail.Authorization, error) {
	rows, err := q.q.Query(ctx, `SELECT `+authColumns+` FROM authorizations WHERE status = 'pending' AND expires_at <= $1
		ORDER BY expires_at LIMIT $2`, micros(now), limit)
	if err != nil {
		return nil, fmt.Errorf("stale authorizations: %w", err)
	}
	return collect(rows, scanAuthorization)
}

// UpdateAuthorization implements cardrail.Tx.
func (q *queries) UpdateAuthorization(ctx context.Context, a *cardrail.Authorization, from cardrail.AuthorizationStatus) error {
	n, err := q.q.Exec(ctx, `UPDATE authorizations SET status = $1, held_amount = $2, settled_amount = $3,
		reversed_amount = $4, refunded_amount = $5, updated_at = $6
		WHERE reference = $7 AND livemode = $8 AND status = $9`,
		string(a.Status), a.HeldAmount, a.SettledAmount, a.ReversedAmount, a.RefundedAmount, micros(a.UpdatedAt),
		a.Reference, a.Livemode, string(from))
	if err != nil {
		return fmt.Errorf("update authorization %s: %w", a.Reference, err)
	}
	if n != 1 {
		return fmt.Errorf("update authorization %s: %w", a.Reference, cardrail.ErrStale)
	}
	return nil
}

// SpendUsed implements cardrail.Tx.
func (q *queries) SpendUsed(ctx context.Context, card string, windows ...string) (map[string]int64, error) {
	out := make(map[string]int64, len(windows))
	for _, w := range windows {
		var v int64
		err := q.q.QueryRow(ctx, `SELECT amount FROM card_spend WHERE card = $1 AND period = $2`, card, w).Scan(&v)
		if err != nil && !notFound(err) {
			return nil, fmt.Errorf("spend %s %s: %w", card, w, err)
		}
		out[w] = v
	}
	return out, nil
}

// AddSpend implements cardrail.Tx.
func (q *queries) AddSpend(ctx context.Context, card, window string, delta int64) error {
	// A release only ever lowers a window an approval already raised, so it
	// is a plain update; an insert candidate with a negative amount would
	// trip the CHECK before the conflict is seen.
	query := `INSERT INTO card_spend (card, period, amount) VALUES ($1, $2, $3)
		ON CONFLICT (card, period) DO UPDATE SET amount = card_spend.amount + excluded.amount`
	if delta < 0 {
		query = `UPDATE card_spend SET amount = amount + $3 WHERE card = $1 AND period = $2`
	}
	_, err := q.q.Exec(ctx, query, card, window, delta)
	if err != nil {
		return fmt.Errorf("add spend %s %s: %w", card, window, err)
	}
	return nil
}
