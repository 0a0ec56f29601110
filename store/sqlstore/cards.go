package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/ledger"
)

const cardSelect = `SELECT c.reference, c.owner, c.program, c.provider, c.status, c.status_reason, c.type, c.brand,
	c.currency, c.last4, c.exp_month, c.exp_year, c.nickname, c.spending_controls, c.metadata, c.livemode,
	c.created_at, c.updated_at, a.balance, h.balance
	FROM cards c
	JOIN accounts a ON a.id = c.reference || '.available'
	JOIN accounts h ON h.id = c.reference || '.held'`

func scanCard(r Row) (*cardrail.Card, error) {
	var c cardrail.Card
	var controls, metadata string
	var created, updated int64
	if err := r.Scan(&c.Reference, &c.Owner, &c.Program, &c.Provider, &c.Status, &c.StatusReason, &c.Type, &c.Brand,
		&c.Currency, &c.Last4, &c.ExpMonth, &c.ExpYear, &c.Nickname, &controls, &metadata, &c.Livemode,
		&created, &updated, &c.Balance.Available, &c.Balance.Held); err != nil {
		return nil, err
	}
	if err := unmarshalAll(controls, &c.SpendingControls, metadata, &c.Metadata); err != nil {
		return nil, fmt.Errorf("card %s: %w", c.Reference, err)
	}
	c.Object = "card"
	c.CreatedAt, c.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &c, nil
}

// ownerClause restricts to an owner unless owner is "" (operators).
func ownerClause(col, owner string, argN int) (string, []any) {
	if owner == "" {
		return "", nil
	}
	return fmt.Sprintf(" AND %s = $%d", col, argN), []any{owner}
}

// Card implements cardrail.Reader.
func (q *queries) Card(ctx context.Context, livemode bool, owner, ref string) (*cardrail.Card, error) {
	return q.card(ctx, livemode, owner, ref, "")
}

// CardForUpdate implements cardrail.Tx; the lock covers the card's balance
// rows too, so the card is the one lock to take before moving its money.
func (q *queries) CardForUpdate(ctx context.Context, livemode bool, owner, ref string) (*cardrail.Card, error) {
	return q.card(ctx, livemode, owner, ref, q.d.ForUpdate)
}

func (q *queries) card(ctx context.Context, livemode bool, owner, ref, lock string) (*cardrail.Card, error) {
	oc, oa := ownerClause("c.owner", owner, 3)
	args := append([]any{livemode, ref}, oa...)
	return scanCard(q.q.QueryRow(ctx, cardSelect+` WHERE c.livemode = $1 AND c.reference = $2`+oc+lock, args...))
}

// Cards implements cardrail.Reader.
func (q *queries) Cards(ctx context.Context, f cardrail.CardFilter) (cardrail.Page[cardrail.Card], error) {
	where, args := newList("c.livemode = $%d", f.Livemode).add("c.owner = $%d", f.Owner).add("c.status = $%d", string(f.Status)).
		sql("c.reference", f.Cursor, f.Limit)
	rows, err := q.q.Query(ctx, cardSelect+where, args...)
	if err != nil {
		return cardrail.Page[cardrail.Card]{}, fmt.Errorf("cards: %w", err)
	}
	items, err := collect(rows, scanCard)
	if err != nil {
		return cardrail.Page[cardrail.Card]{}, err
	}
	return page(items, f.Limit, func(c *cardrail.Card) string { return c.Reference }), nil
}

// CardSecret implements cardrail.Reader.
func (q *queries) CardSecret(ctx context.Context, livemode bool, ref string) (cardrail.CardSecret, error) {
	var s cardrail.CardSecret
	var keyID, providerID *string
	err := q.q.QueryRow(ctx, `SELECT key_id, sealed_pan, provider_card_id FROM cards WHERE livemode = $1 AND reference = $2`,
		livemode, ref).Scan(&keyID, &s.SealedPAN, &providerID)
	if keyID != nil {
		s.KeyID = *keyID
	}
	if providerID != nil {
		s.ProviderCardID = *providerID
	}
	return s, err
}

// InsertCard implements cardrail.Tx: the card and its two balance accounts.
func (q *queries) InsertCard(ctx context.Context, c *cardrail.Card, s cardrail.CardSecret) error {
	controls, metadata, err := cardJSON(c)
	if err != nil {
		return err
	}
	var keyID, providerID *string
	if s.KeyID != "" {
		keyID = &s.KeyID
	}
	if s.ProviderCardID != "" {
		providerID = &s.ProviderCardID
	}
	_, err = q.q.Exec(ctx, `INSERT INTO cards (reference, livemode, owner, program, provider, status, status_reason,
		type, brand, currency, last4, exp_month, exp_year, nickname, spending_controls, metadata, key_id, sealed_pan,
		provider_card_id, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)`,
		c.Reference, c.Livemode, c.Owner, c.Program, c.Provider, string(c.Status), c.StatusReason, c.Type, c.Brand,
		c.Currency, c.Last4, c.ExpMonth, c.ExpYear, c.Nickname, controls, metadata, keyID, s.SealedPAN, providerID,
		micros(c.CreatedAt), micros(c.UpdatedAt))
	if err != nil {
		return fmt.Errorf("insert card: %w", err)
	}
	for _, acct := range []struct {
		id   string
		kind ledger.Kind
	}{{ledger.CardAvailableAccount(c.Reference), ledger.CardAvailable}, {ledger.CardHeldAccount(c.Reference), ledger.CardHeld}} {
		if _, err := q.q.Exec(ctx, `INSERT INTO accounts (id, kind, livemode, currency, owner, balance, created_at)
			VALUES ($1, $2, $3, $4, $5, 0, $6)`, acct.id, string(acct.kind), c.Livemode, c.Currency, c.Owner, micros(c.CreatedAt)); err != nil {
			return fmt.Errorf("insert card account: %w", err)
		}
	}
	return nil
}

func cardJSON(c *cardrail.Card) (controls, metadata string, err error) {
	cb, err := json.Marshal(c.SpendingControls)
	if err != nil {
		return "", "", err
	}
	md := c.Metadata
	if md == nil {
		md = map[string]string{}
	}
	mb, err := json.Marshal(md)
	return string(cb), string(mb), err
}

// UpdateCard implements cardrail.Tx.
func (q *queries) UpdateCard(ctx context.Context, c *cardrail.Card, from ...cardrail.CardStatus) error {
	controls, metadata, err := cardJSON(c)
	if err != nil {
		return err
	}
	args := []any{c.Reference, c.Livemode, c.Provider, string(c.Status), c.StatusReason, c.Last4, c.ExpMonth, c.ExpYear,
		c.Nickname, controls, metadata, micros(c.UpdatedAt)}
	cond := ""
	if len(from) > 0 {
		ph := make([]string, len(from))
		for i, s := range from {
			args = append(args, string(s))
			ph[i] = fmt.Sprintf("$%d", len(args))
		}
		cond = " AND status IN (" + strings.Join(ph, ", ") + ")"
	}
	n, err := q.q.Exec(ctx, `UPDATE cards SET provider = $3, status = $4, status_reason = $5, last4 = $6, exp_month = $7,
		exp_year = $8, nickname = $9, spending_controls = $10, metadata = $11, updated_at = $12
		WHERE reference = $1 AND livemode = $2`+cond, args...)
	if err != nil {
		return fmt.Errorf("update card %s: %w", c.Reference, err)
	}
	if n != 1 {
		return fmt.Errorf("update card %s: %w", c.Reference, cardrail.ErrStale)
	}
	return nil
}

// ExpiredCards implements cardrail.Reader.
func (q *queries) ExpiredCards(ctx context.Context, year, month, limit int) ([]cardrail.Card, error) {
	// The condition and order are those of the index cards_by_expiry.
	rows, err := q.q.Query(ctx, cardSelect+` WHERE c.status IN ('active', 'frozen', 'blocked')
		AND c.exp_year * 100 + c.exp_month < $1 ORDER BY c.exp_year * 100 + c.exp_month, c.reference LIMIT $2`, year*100+month, limit)
	if err != nil {
		return nil, fmt.Errorf("expired cards: %w", err)
	}
	return collect(rows, scanCard)
}
