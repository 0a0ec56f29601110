package sqlstore

import (
	"context"
	"fmt"

	"github.com/cardrail/cardrail"
)

const disputeColumns = `reference, livemode, owner, authorization_ref, card, status, reason, amount, currency, description, created_at, updated_at`

func scanDispute(r Row) (*cardrail.Dispute, error) {
	var d cardrail.Dispute
	var created, updated int64
	if err := r.Scan(&d.Reference, &d.Livemode, &d.Owner, &d.Authorization, &d.Card, &d.Status, &d.Reason, &d.Amount,
		&d.Currency, &d.Description, &created, &updated); err != nil {
		return nil, err
	}
	d.Object = "dispute"
	d.CreatedAt, d.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &d, nil
}

// Dispute implements cardrail.Reader.
func (q *queries) Dispute(ctx context.Context, livemode bool, owner, ref string) (*cardrail.Dispute, error) {
	return q.dispute(ctx, livemode, owner, ref, "")
}

// DisputeForUpdate implements cardrail.Tx.
func (q *queries) DisputeForUpdate(ctx context.Context, livemode bool, owner, ref string) (*cardrail.Dispute, error) {
	return q.dispute(ctx, livemode, owner, ref, q.d.ForUpdate)
}

func (q *queries) dispute(ctx context.Context, livemode bool, owner, ref, lock string) (*cardrail.Dispute, error) {
	oc, oa := ownerClause("owner", owner, 3)
	args := append([]any{livemode, ref}, oa...)
	return scanDispute(q.q.QueryRow(ctx, `SELECT `+disputeColumns+` FROM disputes WHERE livemode = $1 AND reference = $2`+oc+lock, args...))
}

// Disputes implements cardrail.Reader.
func (q *queries) Disputes(ctx context.Context, f cardrail.DisputeFilter) (cardrail.Page[cardrail.Dispute], error) {
	where, args := newList("livemode = $%d", f.Livemode).add("owner = $%d", f.Owner).add("authorization_ref = $%d", f.Authorization).
		sql("reference", f.Cursor, f.Limit)
	rows, err := q.q.Query(ctx, `SELECT `+disputeColumns+` FROM disputes`+where, args...)
	if err != nil {
		return cardrail.Page[cardrail.Dispute]{}, fmt.Errorf("disputes: %w", err)
	}
	items, err := collect(rows, scanDispute)
	if err != nil {
		return cardrail.Page[cardrail.Dispute]{}, err
	}
	return page(items, f.Limit, func(d *cardrail.Dispute) string { return d.Reference }), nil
}

// InsertDispute implements cardrail.Tx.
func (q *queries) InsertDispute(ctx context.Context, d *cardrail.Dispute) error {
	_, err := q.q.Exec(ctx, `INSERT INTO disputes (`+disputeColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		d.Reference, d.Livemode, d.Owner, d.Authorization, d.Card, string(d.Status), d.Reason, d.Amount, d.Currency,
		d.Description, micros(d.CreatedAt), micros(d.UpdatedAt))
	if err != nil {
		if q.d.UniqueViolation(err) {
			return cardrail.Errorf(cardrail.CodeDisputeAlreadyOpen, "Authorization %s already has an open dispute.", d.Authorization)
		}
		return fmt.Errorf("insert dispute: %w", err)
	}
	return nil
}

// UpdateDispute implements cardrail.Tx.
func (q *queries) UpdateDispute(ctx context.Context, d *cardrail.Dispute, from cardrail.DisputeStatus) error {
	n, err := q.q.Exec(ctx, `UPDATE disputes SET status = $1, updated_at = $2 WHERE reference = $3 AND livemode = $4 AND status = $5`,
		string(d.Status), micros(d.UpdatedAt), d.Reference, d.Livemode, string(from))
	if err != nil {
		return fmt.Errorf("update dispute %s: %w", d.Reference, err)
	}
	if n != 1 {
		return fmt.Errorf("update dispute %s: %w", d.Reference, cardrail.ErrStale)
	}
	return nil
}

// DisputedAmount implements cardrail.Tx.
func (q *queries) DisputedAmount(ctx context.Context, authorization string) (int64, int, error) {
	var amount int64
	var pending int
	err := q.q.QueryRow(ctx, `SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT),
		COUNT(CASE WHEN status IN ('open', 'submitted') THEN 1 END)
		FROM disputes WHERE authorization_ref = $1 AND status IN ('open', 'submitted', 'won')`, authorization).Scan(&amount, &pending)
	return amount, pending, err
}

// AuditLog implements cardrail.Reader.
func (q *queries) AuditLog(ctx context.Context, livemode bool, p cardrail.ListParams) (cardrail.Page[cardrail.AuditRecord], error) {
	cc, ca := cursorClause("reference", p.Cursor, 2)
	args := append([]any{livemode}, ca...)
	args = append(args, p.Limit+1)
	rows, err := q.q.Query(ctx, `SELECT reference, livemode, actor, action, target, before, after, request_id, created_at
		FROM audit_log WHERE livemode = $1`+cc+fmt.Sprintf(` ORDER BY reference DESC LIMIT $%d`, len(args)), args...)
	if err != nil {
		return cardrail.Page[cardrail.AuditRecord]{}, fmt.Errorf("audit log: %w", err)
	}
	items, err := collect(rows, func(r Row) (*cardrail.AuditRecord, error) {
		var a cardrail.AuditRecord
		var before, after *string
		var created int64
		if err := r.Scan(&a.Reference, &a.Livemode, &a.Actor, &a.Action, &a.Target, &before, &after, &a.RequestID, &created); err != nil {
			return nil, err
		}
		if before != nil {
			a.Before = []byte(*before)
		}
		if after != nil {
			a.After = []byte(*after)
		}
		a.Object = "audit_record"
		a.CreatedAt = fromMicros(created)
		return &a, nil
	})
	if err != nil {
		return cardrail.Page[cardrail.AuditRecord]{}, err
	}
	return page(items, p.Limit, func(a *cardrail.AuditRecord) string { return a.Reference }), nil
}

// Events implements cardrail.Reader.
func (q *queries) Events(ctx context.Context, f cardrail.EventFilter) (cardrail.Page[cardrail.Event], error) {
	l := newList("livemode = $%d", f.Livemode).add("type = $%d", f.Type).add("object_ref = $%d", f.Object)
	if f.Type != "" && f.Type != cardrail.EventAuthorizationCreated {
		// Repeats events_by_type's condition (migration 00016), without
		// which neither database may use that index.
		l.also("type <> '" + cardrail.EventAuthorizationCreated + "'")
	}
	where, args := l.sql("id", f.Cursor, f.Limit)
	rows, err := q.q.Query(ctx, `SELECT payload, object_ref FROM events`+where, args...)
	if err != nil {
		return cardrail.Page[cardrail.Event]{}, fmt.Errorf("events: %w", err)
	}
	items, err := collect(rows, func(r Row) (*cardrail.Event, error) {
		var payload, object string
		if err := r.Scan(&payload, &object); err != nil {
			return nil, err
		}
		var e cardrail.Event
		if err := unmarshalAll(payload, &e); err != nil {
			return nil, err
		}
		e.ObjectRef = object
		return &e, nil
	})
	if err != nil {
		return cardrail.Page[cardrail.Event]{}, err
	}
	return page(items, f.Limit, func(e *cardrail.Event) string { return e.ID }), nil
}
