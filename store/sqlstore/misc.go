package sqlstore

import (
	"context"
	"fmt"

	"github.com/cardrail/cardrail"
)

// SetCardSecret implements cardrail.Tx.
func (q *queries) SetCardSecret(ctx context.Context, ref string, s cardrail.CardSecret) error {
	_, err := q.q.Exec(ctx, `UPDATE cards SET key_id = $1, sealed_pan = $2, provider_card_id = $3 WHERE reference = $4`,
		nullable(s.KeyID), s.SealedPAN, nullable(s.ProviderCardID), ref)
	return err
}

// CardsSealedOutside implements cardrail.Reader. It walks the cards in
// reference order, so a pass over a million is one walk of the primary
// key however few need sealing anew.
func (q *queries) CardsSealedOutside(ctx context.Context, keyID, after string, limit int) ([]cardrail.SealedCard, error) {
	rows, err := q.q.Query(ctx, `SELECT reference, key_id, sealed_pan FROM cards
		WHERE reference > $1 AND key_id IS NOT NULL AND key_id <> $2 ORDER BY reference LIMIT $3`, after, keyID, limit)
	if err != nil {
		return nil, fmt.Errorf("cards sealed outside %s: %w", keyID, err)
	}
	return collect(rows, func(r Row) (*cardrail.SealedCard, error) {
		var c cardrail.SealedCard
		return &c, r.Scan(&c.Reference, &c.KeyID, &c.SealedPAN)
	})
}

// ResealCard implements cardrail.Tx.
func (q *queries) ResealCard(ctx context.Context, from string, to cardrail.SealedCard) (bool, error) {
	n, err := q.q.Exec(ctx, `UPDATE cards SET key_id = $1, sealed_pan = $2 WHERE reference = $3 AND key_id = $4`,
		to.KeyID, to.SealedPAN, to.Reference, from)
	if err != nil {
		return false, fmt.Errorf("reseal card: %w", err)
	}
	return n == 1, nil
}

// Cardholder implements cardrail.Reader.
func (q *queries) Cardholder(ctx context.Context, livemode bool, subject string) (*cardrail.Cardholder, error) {
	var c cardrail.Cardholder
	var updated int64
	err := q.q.QueryRow(ctx, `SELECT subject, kyc, livemode, updated_at FROM cardholders WHERE livemode = $1 AND subject = $2`,
		livemode, subject).Scan(&c.Subject, &c.KYC, &c.Livemode, &updated)
	if err != nil {
		return nil, err
	}
	c.UpdatedAt = fromMicros(updated)
	return &c, nil
}

// SetCardholder implements cardrail.Tx.
func (q *queries) SetCardholder(ctx context.Context, c *cardrail.Cardholder) error {
	_, err := q.q.Exec(ctx, `INSERT INTO cardholders (livemode, subject, kyc, updated_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (livemode, subject) DO UPDATE SET kyc = excluded.kyc, updated_at = excluded.updated_at`,
		c.Livemode, c.Subject, c.KYC, micros(c.UpdatedAt))
	return err
}

// DeleteCardholder implements cardrail.Tx.
func (q *queries) DeleteCardholder(ctx context.Context, livemode bool, subject string) (bool, error) {
	n, err := q.q.Exec(ctx, `DELETE FROM cardholders WHERE livemode = $1 AND subject = $2`, livemode, subject)
	return n > 0, err
}

// InsertEvent implements cardrail.Tx: the outbox row of the change being
// committed with it.
func (q *queries) InsertEvent(ctx context.Context, e *cardrail.Event) error {
	payload, err := eventText(e)
	if err != nil {
		return err
	}
	_, err = q.q.Exec(ctx, `INSERT INTO events (id, type, livemode, object_ref, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		e.ID, e.Type, e.Livemode, e.ObjectRef, payload, micros(e.CreatedAt))
	if err != nil {
		return fmt.Errorf("insert event %s: %w", e.Type, err)
	}
	return nil
}

// InsertAudit implements cardrail.Tx.
func (q *queries) InsertAudit(ctx context.Context, a *cardrail.AuditRecord) error {
	_, err := q.q.Exec(ctx, `INSERT INTO audit_log (reference, livemode, actor, action, target, before, after, request_id, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, a.Reference, a.Livemode, a.Actor, a.Action, a.Target,
		rawText(a.Before), rawText(a.After), a.RequestID, micros(a.CreatedAt))
	if err != nil {
		return fmt.Errorf("insert audit record: %w", err)
	}
	return nil
}

// Setting implements cardrail.Reader.
func (q *queries) Setting(ctx context.Context, key string) (string, error) {
	var v string
	err := q.q.QueryRow(ctx, `SELECT value FROM settings WHERE key = $1`, key).Scan(&v)
	return v, err
}

// SetSetting implements cardrail.Tx; the first writer of a key wins, so two
// instances generating a secret at once agree on one.
func (q *queries) SetSetting(ctx context.Context, key, value string) error {
	_, err := q.q.Exec(ctx, `INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`, key, value)
	return err
}
