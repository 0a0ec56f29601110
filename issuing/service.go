// Package issuing holds Cardrail's use cases — issue a card, fund it,
// authorize, settle, reverse, refund, expire — each one transaction that
// reads under lock, applies the domain's rules, posts the journal entry and
// writes the outgoing event together. Handlers call it; it calls storage and
// the provider router; it never speaks HTTP.
package issuing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/ledger"
	"github.com/cardrail/cardrail/provider"
	"github.com/cardrail/cardrail/seal"
)

// Config tunes the service.
type Config struct {
	// HoldWindow is how long an approved authorization holds card balance
	// before it expires (default 168h).
	HoldWindow time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Batch tunes the authorization engine.
	Batch BatchConfig
}

// Service implements the use cases.
type Service struct {
	store    cardrail.Store
	registry *provider.Registry
	router   *provider.Router
	keys     *seal.Keyring
	cfg      Config
	log      *slog.Logger
	engine   *engine
}

// New returns a Service.
func New(store cardrail.Store, reg *provider.Registry, router *provider.Router, keys *seal.Keyring, cfg Config, log *slog.Logger) *Service {
	if cfg.HoldWindow <= 0 {
		cfg.HoldWindow = 168 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Service{store: store, registry: reg, router: router, keys: keys, cfg: cfg, log: log}
	s.engine = newEngine(s, cfg.Batch)
	return s
}

// Close stops the authorization engine once the authorizations already
// queued are decided.
func (s *Service) Close() { s.engine.close() }

// Store returns the service's storage (health checks, operators' reads).
func (s *Service) Store() cardrail.Store { return s.store }

func (s *Service) now() time.Time { return s.cfg.Now().UTC().Truncate(time.Microsecond) }

// lookup turns storage's ErrNoRows into the caller-facing not_found.
func lookup[T any](v T, err error, object, ref string) (T, error) {
	if errors.Is(err, cardrail.ErrNoRows) {
		return v, cardrail.NotFound(object, ref)
	}
	return v, err
}

// emit writes an event about obj in the transaction. Its id and time are
// one stamp (cardrail.NewReferencesAt), so the events list, ordered by id,
// is in created_at order too within this server.
func (s *Service) emit(ctx context.Context, tx cardrail.Tx, typ string, livemode bool, objectRef string, obj any) error {
	id, now := cardrail.NewReferencesAt(s.now, cardrail.PrefixEvent)
	e, err := cardrail.NewEventWithID(id[0], typ, livemode, objectRef, obj, now)
	if err != nil {
		return fmt.Errorf("event %s: %w", typ, err)
	}
	return tx.InsertEvent(ctx, &e)
}

// creditTarget is the account that receives money credited to a card: the
// card itself, or the owner's wallet once the card is closed, so a closed
// card's available balance stays zero.
func creditTarget(ctx context.Context, tx cardrail.Tx, c *cardrail.Card) (string, error) {
	if !c.Status.Closed() {
		return ledger.CardAvailableAccount(c.Reference), nil
	}
	w, err := tx.Wallet(ctx, c.Livemode, c.Owner, c.Currency)
	if err != nil {
		return "", err
	}
	return w.Reference, nil
}

// postCredit posts e, which credits target (from creditTarget; "" when e
// credits nothing to the card), and emits wallet.credited when target is
// the owner's wallet: a credit that reaches a wallet because the card is
// closed is a wallet change like any other, and has its event.
func (s *Service) postCredit(ctx context.Context, tx cardrail.Tx, c *cardrail.Card, e *ledger.Entry, target string) error {
	if err := tx.Post(ctx, e); err != nil {
		return err
	}
	if target == "" || target == ledger.CardAvailableAccount(c.Reference) {
		return nil
	}
	return s.emitWallet(ctx, tx, cardrail.EventWalletCredited, c.Livemode, c.Owner, c.Currency)
}

// owner is the owner filter for a caller acting as cardholder ("" for
// operators acting on any card).
func owner(c cardrail.Caller, asOperator bool) string {
	if asOperator {
		return ""
	}
	return c.Subject
}
