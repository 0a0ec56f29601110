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
