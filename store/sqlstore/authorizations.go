package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
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

// spendColumns names the card columns that hold a window's kind: day
// windows ("d20261124") or month windows ("m202611").
func spendColumns(window string) (period, amount string, err error) {
	switch {
	case strings.HasPrefix(window, "d"):
		return "spend_day", "spend_day_amount", nil
	case strings.HasPrefix(window, "m"):
		return "spend_month", "spend_month_amount", nil
	}
	return "", "", fmt.Errorf("spend window %q is neither a day nor a month", window)
}

// SpendUsed implements cardrail.Tx. A card keeps its current day and month
// windows on its own row; any other window reads as zero.
func (q *queries) SpendUsed(ctx context.Context, card string, windows ...string) (map[string]int64, error) {
	var day, month string
	var dayAmount, monthAmount int64
	err := q.q.QueryRow(ctx, `SELECT spend_day, spend_day_amount, spend_month, spend_month_amount FROM cards WHERE reference = $1`, card).
		Scan(&day, &dayAmount, &month, &monthAmount)
	if err != nil && !notFound(err) {
		return nil, fmt.Errorf("spend %s: %w", card, err)
	}
	out := make(map[string]int64, len(windows))
	for _, w := range windows {
		switch w {
		case day:
			out[w] = dayAmount
		case month:
			out[w] = monthAmount
		default:
			out[w] = 0
		}
	}
	return out, nil
}

// raiseSpend renders the SET clause that raises a card's window (the
// period and amount columns of one kind) by delta, where window and delta
// are SQL expressions: the current window grows, any other restarts at
// delta.
func raiseSpend(period, amount, window, delta string) string {
	return amount + ` = CASE WHEN cards.` + period + ` = ` + window + ` THEN cards.` + amount + ` + ` + delta + ` ELSE ` + delta + ` END, ` +
		period + ` = ` + window
}

// AddSpend implements cardrail.Tx. A raise in a window other than the
// card's current one starts that window afresh; a release (negative delta)
// only ever lowers the window its approval raised, and is nothing once that
// window has been replaced.
func (q *queries) AddSpend(ctx context.Context, card, window string, delta int64) error {
	period, amount, err := spendColumns(window)
	if err != nil {
		return err
	}
	query := `UPDATE cards SET ` + raiseSpend(period, amount, "$2", "$3") + ` WHERE reference = $1`
	if delta < 0 {
		query = `UPDATE cards SET ` + amount + ` = ` + amount + ` + $3 WHERE reference = $1 AND ` + period + ` = $2`
	}
	if _, err := q.q.Exec(ctx, query, card, window, delta); err != nil {
		return fmt.Errorf("add spend %s %s: %w", card, window, err)
	}
	return nil
}
