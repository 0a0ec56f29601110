package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/cardrail/cardrail"
)

// Idempotency keys live 24 hours; one whose holder has not finished or
// applied anything within staleAfter is taken over by the next request. A
// holder may only be slow, not dead (stuck on a lock, its process paused):
// each holder gets a token (the created_at it wrote), and its mark, its
// response and its release apply only while the token is still the key's,
// so the effect happens once whichever holder gets there.
const (
	idempotencyTTL = 24 * time.Hour
	staleAfter     = 2 * time.Minute
)

var _ cardrail.IdempotencyStore = (*Store)(nil)

// markApplied records, in the transaction that applies a request's effect,
// that its key ($1, $2) took effect, and what it created ($3, or NULL),
// provided the key is still the holder's: created_at is the holder's token
// ($4). If a later request took the key over, created_at is another's, the
// CASE yields NULL and the NOT NULL constraint fails the whole transaction
// on either database, so the stalled holder's effect never commits beside
// the new holder's.
const markApplied = `UPDATE idempotency_keys SET applied = TRUE, created_ref = $3,
	created_at = CASE WHEN created_at = $4 THEN created_at END WHERE scope = $1 AND key = $2`

// BeginIdempotent implements cardrail.IdempotencyStore.
func (s *Store) BeginIdempotent(ctx context.Context, scope, key, fingerprint string, now time.Time) (cardrail.IdempotencyRecord, error) {
	for range 3 {
		n, err := s.conn.Exec(ctx, `INSERT INTO idempotency_keys (scope, key, fingerprint, applied, created_at)
			VALUES ($1, $2, $3, FALSE, $4) ON CONFLICT (scope, key) DO NOTHING`, scope, key, fingerprint, micros(now))
		if err != nil {
			return cardrail.IdempotencyRecord{}, fmt.Errorf("idempotency begin: %w", err)
		}
		if n == 1 {
			return cardrail.IdempotencyRecord{Outcome: cardrail.IdempotencyStarted, Token: micros(now)}, nil
		}
		var (
			fp          string
			applied     bool
			status      *int
			contentType *string
			body        []byte
			created     int64
			createdRef  *string
			released    bool
		)
		err = s.conn.QueryRow(ctx, `SELECT fingerprint, applied, response_status, response_type, response_body, created_at, created_ref, released
			FROM idempotency_keys WHERE scope = $1 AND key = $2`, scope, key).Scan(&fp, &applied, &status, &contentType, &body, &created, &createdRef, &released)
		if notFound(err) {
			continue // released between our insert and read: try again
		}
		if err != nil {
			return cardrail.IdempotencyRecord{}, fmt.Errorf("idempotency read: %w", err)
		}
		age := now.Sub(fromMicros(created))
		if age > idempotencyTTL {
			if _, err := s.conn.Exec(ctx, `DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND created_at = $3`, scope, key, created); err != nil {
				return cardrail.IdempotencyRecord{}, fmt.Errorf("idempotency expire: %w", err)
			}
			continue
		}
		if released {
			// The last holder answered 401, 429 or 5xx, which a retry runs
			// afresh, but it had reserved a reference first: the same
			// request gets it back. A different request under the key is a
			// new one and reserves its own.
			n, err := s.conn.Exec(ctx, `UPDATE idempotency_keys SET created_at = $1, released = FALSE, fingerprint = $2,
				created_ref = CASE WHEN fingerprint = $2 THEN created_ref END
				WHERE scope = $3 AND key = $4 AND created_at = $5 AND released`, micros(now), fingerprint, scope, key, created)
			if err != nil {
				return cardrail.IdempotencyRecord{}, fmt.Errorf("idempotency resume: %w", err)
			}
			if n == 0 {
				continue // another request resumed it first
			}
			rec := cardrail.IdempotencyRecord{Outcome: cardrail.IdempotencyStarted, Token: micros(now)}
			if fp == fingerprint && createdRef != nil {
				rec.Reserved = *createdRef
			}
			return rec, nil
		}
		if fp != fingerprint {
			return cardrail.IdempotencyRecord{Outcome: cardrail.IdempotencyReused}, nil
		}
		if status != nil {
			rec := cardrail.IdempotencyRecord{Outcome: cardrail.IdempotencyReplay, Status: *status, Body: body}
			if contentType != nil {
				rec.ContentType = *contentType
			}
			return rec, nil
		}
		if applied && age > staleAfter {
			rec := cardrail.IdempotencyRecord{Outcome: cardrail.IdempotencyResponseLost}
			if createdRef != nil {
				rec.Created = *createdRef
			}
			return rec, nil
		}
		if !applied && age > staleAfter {
			// The holder died before its effect committed: nothing happened,
			// so this request may run it.
			n, err := s.conn.Exec(ctx, `UPDATE idempotency_keys SET created_at = $1 WHERE scope = $2 AND key = $3
				AND created_at = $4 AND applied = FALSE AND response_status IS NULL`, micros(now), scope, key, created)
			if err != nil {
				return cardrail.IdempotencyRecord{}, fmt.Errorf("idempotency take over: %w", err)
			}
			if n == 1 {
				rec := cardrail.IdempotencyRecord{Outcome: cardrail.IdempotencyStarted, Token: micros(now)}
				if createdRef != nil {
					rec.Reserved = *createdRef
				}
				return rec, nil
			}
		}
		return cardrail.IdempotencyRecord{Outcome: cardrail.IdempotencyInProgress}, nil
	}
	return cardrail.IdempotencyRecord{Outcome: cardrail.IdempotencyInProgress}, nil
}

// CompleteIdempotent implements cardrail.IdempotencyStore.
func (s *Store) CompleteIdempotent(ctx context.Context, scope, key string, token int64, status int, contentType string, body []byte) error {
	_, err := s.conn.Exec(ctx, `UPDATE idempotency_keys SET response_status = $1, response_type = $2, response_body = $3
		WHERE scope = $4 AND key = $5 AND created_at = $6`, status, contentType, body, scope, key, token)
	if err != nil {
		return fmt.Errorf("idempotency complete: %w", err)
	}
	return nil
}

// ReserveIdempotent implements cardrail.IdempotencyStore.
func (s *Store) ReserveIdempotent(ctx context.Context, scope, key string, token int64, ref string) error {
	n, err := s.conn.Exec(ctx, `UPDATE idempotency_keys SET created_ref = $1
		WHERE scope = $2 AND key = $3 AND created_at = $4 AND applied = FALSE AND response_status IS NULL`, ref, scope, key, token)
	if err != nil {
		return fmt.Errorf("idempotency reserve: %w", err)
	}
	if n == 0 {
		return cardrail.Errorf(cardrail.CodeIdempotencyInProgress,
			"This request held its Idempotency-Key so long that a retry took it over; the retry runs it.")
	}
	return nil
}

// ReleaseIdempotent implements cardrail.IdempotencyStore. A key whose
// request reserved a reference is kept, marked released, so that the
// retry reuses the reference; any other is deleted.
func (s *Store) ReleaseIdempotent(ctx context.Context, scope, key string, token int64) error {
	if _, err := s.conn.Exec(ctx, `UPDATE idempotency_keys SET released = TRUE WHERE scope = $1 AND key = $2 AND created_at = $3
		AND response_status IS NULL AND applied = FALSE AND created_ref IS NOT NULL`, scope, key, token); err != nil {
		return fmt.Errorf("idempotency release: %w", err)
	}
	_, err := s.conn.Exec(ctx, `DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND created_at = $3
		AND response_status IS NULL AND applied = FALSE AND created_ref IS NULL`, scope, key, token)
	return err
}

// PurgeIdempotent implements cardrail.IdempotencyStore.
func (s *Store) PurgeIdempotent(ctx context.Context, cutoff time.Time) (int64, error) {
	return s.conn.Exec(ctx, `DELETE FROM idempotency_keys WHERE created_at < $1`, micros(cutoff))
}
