package issuing

import (
	"context"
	"errors"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/ledger"
)

func validateAttempt(a cardrail.AuthorizationAttempt) []cardrail.FieldError {
	errs := validateMoney(a.Amount, a.Currency, true)
	m := a.Merchant
	if n := utf8.RuneCountInString(m.Name); n == 0 || n > 200 {
		errs = append(errs, cardrail.FieldError{Field: "merchant.name", Message: "is required, at most 200 characters"})
	} else if strings.TrimSpace(m.Name) == "" {
		errs = append(errs, cardrail.FieldError{Field: "merchant.name", Message: "must not be blank"})
	}
	if !cardrail.ValidMCC(m.MCC) {
		errs = append(errs, cardrail.FieldError{Field: "merchant.mcc", Message: "must be a 4-digit merchant category code"})
	}
	if !cardrail.ValidCountry(m.Country) {
		errs = append(errs, cardrail.FieldError{Field: "merchant.country", Message: "must be an ISO 3166-1 alpha-2 country code"})
	}
	if utf8.RuneCountInString(m.City) > 100 {
		errs = append(errs, cardrail.FieldError{Field: "merchant.city", Message: "must be at most 100 characters"})
	}
	return errs
}

// Authorize decides an authorization on one of the caller's cards and
// records it, approved with a hold or declined with its reason, together with
// its card.authorization.created event. Concurrent authorizations share
// transactions (see batch.go); each caller still gets its own answer.
func (s *Service) Authorize(ctx context.Context, c cardrail.Caller, ref string, a cardrail.AuthorizationAttempt) (*cardrail.Authorization, error) {
	if errs := validateAttempt(a); len(errs) > 0 {
		return nil, cardrail.Invalid(errs...)
	}
	if !cardrail.HasPrefix(ref, cardrail.PrefixCard) {
		return nil, cardrail.NotFound("card", ref)
	}
	return s.engine.submit(&authJob{ctx: ctx, caller: c, card: ref, attempt: a, done: make(chan authResult, 1)})
}

// Authorization returns one of the caller's authorizations. One still
// pending past its expires_at is expired first, as the expiry job would,
// so that a read never shows a hold that has ended as pending.
func (s *Service) Authorization(ctx context.Context, c cardrail.Caller, ref string, asOperator bool) (*cardrail.Authorization, error) {
	a, err := s.authorization(ctx, c, ref, asOperator)
	if err != nil || !s.overdue(a) {
		return a, err
	}
	// The expiry is not the request's effect: under an Idempotency-Key
	// (a dispute reads its authorization here) it must not mark the key.
	expired, err := s.Expire(cardrail.WithoutIdempotencyMark(ctx), expiryCaller(a.Livemode), ref, NetworkEvent{AsOperator: true})
	if cardrail.ErrorCode(err) == cardrail.CodeInvalidAuthorizationState {
		return s.authorization(ctx, c, ref, asOperator) // a settle or reversal won the race
	}
	return expired, err
}

func (s *Service) authorization(ctx context.Context, c cardrail.Caller, ref string, asOperator bool) (*cardrail.Authorization, error) {
	if !cardrail.HasPrefix(ref, cardrail.PrefixAuthorization) {
		return nil, cardrail.NotFound("authorization", ref)
	}
	a, err := s.store.Authorization(ctx, c.Livemode, owner(c, asOperator), ref)
	return lookup(a, err, "authorization", ref)
}

// overdue reports whether a is pending at or past its expires_at.
func (s *Service) overdue(a *cardrail.Authorization) bool {
	return a.Status == cardrail.AuthPending && a.ExpiresAt != nil && !s.now().Before(*a.ExpiresAt)
}

// expiryCaller is who expires holds: the job, and a read or network event
// that finds one overdue.
func expiryCaller(livemode bool) cardrail.Caller {
	return cardrail.Caller{Subject: "system:expiry", Livemode: livemode, Roles: []string{cardrail.RoleOps}}
}

// Authorizations lists the caller's authorizations, optionally of one card.
func (s *Service) Authorizations(ctx context.Context, c cardrail.Caller, card string, p cardrail.ListParams) (cardrail.Page[cardrail.Authorization], error) {
	return s.store.Authorizations(ctx, cardrail.AuthorizationFilter{Livemode: c.Livemode, Owner: c.Subject, Card: card, ListParams: p})
}

// NetworkEvent is what a settle, reverse or refund request says.
type NetworkEvent struct {
	// Amount is optional: zero means all that the action can take.
	Amount int64
	// AsOperator marks the operator API (any owner); in production only
	// operators and partners may send network events.
	AsOperator bool
	// Audit records the action in the audit log (operators' requests; not
	// the expiry job).
	Audit bool
}

// Settle captures up to the held amount; the rest of the hold is released.
// An authorization past its expires_at has expired, whether or not the
// job has got to it: it is expired now and the settle is refused.
func (s *Service) Settle(ctx context.Context, c cardrail.Caller, ref string, ev NetworkEvent) (*cardrail.Authorization, error) {
	return s.networkEvent(ctx, c, ref, ev, "authorizations.Settle", s.expiringFirst(s.settle))
}

// Reverse releases all or part of the hold; like Settle, it finds an
// overdue authorization expired.
func (s *Service) Reverse(ctx context.Context, c cardrail.Caller, ref string, ev NetworkEvent) (*cardrail.Authorization, error) {
	return s.networkEvent(ctx, c, ref, ev, "authorizations.Reverse", s.expiringFirst(func(ctx context.Context, tx cardrail.Tx, card *cardrail.Card, a *cardrail.Authorization, amount int64) error {
		return s.release(ctx, tx, card, a, amount, cardrail.AuthReversed)
	}))
}

// errExpiredFirst tells networkEvent that the action found its
// authorization overdue and expired it instead: the expiry commits, and the
// caller is told the authorization is no longer pending.
var errExpiredFirst = errors.New("expired before the action")

// expiringFirst wraps a settle or reversal: under the locks, an overdue
// authorization is expired rather than acted on.
func (s *Service) expiringFirst(act networkAction) networkAction {
	return func(ctx context.Context, tx cardrail.Tx, card *cardrail.Card, a *cardrail.Authorization, amount int64) error {
		if !s.overdue(a) {
			return act(ctx, tx, card, a, amount)
		}
		if err := s.release(ctx, tx, card, a, 0, cardrail.AuthExpired); err != nil {
			return err
		}
		return errExpiredFirst
	}
}

// Refund credits back part or all of what was settled and not yet refunded.
func (s *Service) Refund(ctx context.Context, c cardrail.Caller, ref string, ev NetworkEvent) (*cardrail.Authorization, error) {
	return s.networkEvent(ctx, c, ref, ev, "authorizations.Refund", s.refund)
}

// Expire releases the whole hold of a pending authorization as expired: the
// sandbox helper, and the expiry job for each stale hold.
func (s *Service) Expire(ctx context.Context, c cardrail.Caller, ref string, ev NetworkEvent) (*cardrail.Authorization, error) {
	return s.networkEvent(ctx, c, ref, ev, "authorizations.Expire", func(ctx context.Context, tx cardrail.Tx, card *cardrail.Card, a *cardrail.Authorization, amount int64) error {
		return s.release(ctx, tx, card, a, 0, cardrail.AuthExpired)
	})
}

type networkAction func(ctx context.Context, tx cardrail.Tx, card *cardrail.Card, a *cardrail.Authorization, amount int64) error

// networkEvent locks the card then the authorization (the one lock order
// every money path uses), applies the action, and emits
// card.authorization.updated.
func (s *Service) networkEvent(ctx context.Context, c cardrail.Caller, ref string, ev NetworkEvent, op string, act networkAction) (*cardrail.Authorization, error) {
	if c.Livemode && !ev.AsOperator {
		return nil, cardrail.Errorf(cardrail.CodeForbidden, "In production, settlements, reversals and refunds come from the card network.")
	}
	if ev.Amount != 0 && !cardrail.ValidAmount(ev.Amount) {
		return nil, cardrail.Invalid(cardrail.FieldError{Field: "amount", Message: cardrail.AmountRange})
	}
	found, err := s.authorization(ctx, c, ref, ev.AsOperator)
	if err != nil {
		return nil, err
	}
	var out *cardrail.Authorization
	expiredFirst := false
	err = s.store.Tx(ctx, func(tx cardrail.Tx) error {
		expiredFirst = false
		card, err := tx.CardForUpdate(ctx, c.Livemode, "", found.Card)
		if err != nil {
			return err
		}
		a, err := tx.AuthorizationForUpdate(ctx, c.Livemode, "", ref)
		if err != nil {
			return err
		}
		before := *a
		if err := act(ctx, tx, card, a, ev.Amount); errors.Is(err, errExpiredFirst) {
			// The expiry is the job's work, done early: not the caller's
			// action, so not audited as theirs.
			expiredFirst, out = true, a
			return s.emit(ctx, tx, cardrail.EventAuthorizationUpdated, a.Livemode, a.Reference, a)
		} else if err != nil {
			return err
		}
		if ev.Audit {
			action := "authorization." + strings.ToLower(op[strings.LastIndexByte(op, '.')+1:])
			if err := s.audit(ctx, tx, c, action, a.Reference, before, a); err != nil {
				return err
			}
		}
		out = a
		return s.emit(ctx, tx, cardrail.EventAuthorizationUpdated, a.Livemode, a.Reference, a)
	})
	if err == nil && expiredFirst {
		err = cardrail.Errorf(cardrail.CodeInvalidAuthorizationState, "Authorization %s expired at %s and its hold was released; it is no longer pending.",
			ref, out.ExpiresAt.Format(time.RFC3339))
		out = nil
	}
	return out, cardrail.WithOp(op, err)
}

func notPending(a *cardrail.Authorization) error {
	return cardrail.Errorf(cardrail.CodeInvalidAuthorizationState, "Authorization %s is %s, not pending.", a.Reference, a.Status)
}

// settle captures amount (default: all held) and releases the remainder, in
// one entry.
func (s *Service) settle(ctx context.Context, tx cardrail.Tx, card *cardrail.Card, a *cardrail.Authorization, amount int64) error {
	if a.Status != cardrail.AuthPending {
		return notPending(a)
	}
	if amount == 0 {
		amount = a.HeldAmount
	}
	if amount > a.HeldAmount {
		return cardrail.Errorf(cardrail.CodeAmountExceedsHeld, "Authorization %s holds %s; cannot settle %s.", a.Reference,
			cardrail.Money{Amount: a.HeldAmount, Currency: a.Currency}, cardrail.Money{Amount: amount, Currency: a.Currency})
	}
	rest := a.HeldAmount - amount
	e := ledger.Entry{Type: ledger.TypeSettlement, Livemode: a.Livemode, Currency: a.Currency, Card: card.Reference, Authorization: a.Reference,
		Lines: []ledger.Line{
			{Account: ledger.CardHeldAccount(card.Reference), Amount: -a.HeldAmount},
			{Account: ledger.SystemAccount(a.Livemode, a.Currency, ledger.NetworkSettlement), Amount: amount},
		}}
	var target string
	if rest > 0 {
		var err error
		if target, err = creditTarget(ctx, tx, card); err != nil {
			return err
		}
		e.Lines = append(e.Lines, ledger.Line{Account: target, Amount: rest})
	}
	if err := s.postCredit(ctx, tx, card, &e, target); err != nil {
		return err
	}
	if err := s.unspend(ctx, tx, a, rest); err != nil {
		return err
	}
	from := a.Status
	a.Status, a.HeldAmount, a.SettledAmount, a.ReversedAmount = cardrail.AuthSettled, 0, amount, a.ReversedAmount+rest
	a.UpdatedAt = s.now()
	return s.saveAuthorization(ctx, tx, a, from)
}

// release gives back amount of the hold (default: all of it). A full release
// ends the authorization in status final (reversed or expired).
func (s *Service) release(ctx context.Context, tx cardrail.Tx, card *cardrail.Card, a *cardrail.Authorization, amount int64, final cardrail.AuthorizationStatus) error {
	if a.Status != cardrail.AuthPending {
		return notPending(a)
	}
	if amount == 0 {
		amount = a.HeldAmount
	}
	if amount > a.HeldAmount {
		return cardrail.Errorf(cardrail.CodeAmountExceedsHeld, "Authorization %s holds %s; cannot reverse %s.", a.Reference,
			cardrail.Money{Amount: a.HeldAmount, Currency: a.Currency}, cardrail.Money{Amount: amount, Currency: a.Currency})
	}
	target, err := creditTarget(ctx, tx, card)
	if err != nil {
		return err
	}
	e := ledger.Move(ledger.TypeHoldRelease, a.Livemode, a.Currency, ledger.CardHeldAccount(card.Reference), target, amount)
	e.Card, e.Authorization = card.Reference, a.Reference
	if err := s.postCredit(ctx, tx, card, &e, target); err != nil {
		return err
	}
	if err := s.unspend(ctx, tx, a, amount); err != nil {
		return err
	}
	from := a.Status
	a.HeldAmount -= amount
	a.ReversedAmount += amount
	if a.HeldAmount == 0 {
		a.Status = final
	}
	a.UpdatedAt = s.now()
	return s.saveAuthorization(ctx, tx, a, from)
}

// refund credits amount (default: all refundable) back to the card.
func (s *Service) refund(ctx context.Context, tx cardrail.Tx, card *cardrail.Card, a *cardrail.Authorization, amount int64) error {
	if a.Status != cardrail.AuthSettled {
		return cardrail.Errorf(cardrail.CodeInvalidAuthorizationState, "Authorization %s is %s; only settled authorizations can be refunded.", a.Reference, a.Status)
	}
	refundable, _, err := disputable(ctx, tx, a)
	if err != nil {
		return err
	}
	if amount == 0 {
		amount = refundable
	}
	if amount == 0 || amount > refundable {
		return cardrail.Errorf(cardrail.CodeAmountExceedsRefundable, "Authorization %s has %s left to refund (settled, less refunds and disputes).", a.Reference,
			cardrail.Money{Amount: max(refundable, 0), Currency: a.Currency})
	}
	target, err := creditTarget(ctx, tx, card)
	if err != nil {
		return err
	}
	e := ledger.Move(ledger.TypeRefund, a.Livemode, a.Currency, ledger.SystemAccount(a.Livemode, a.Currency, ledger.NetworkSettlement), target, amount)
	e.Card, e.Authorization = card.Reference, a.Reference
	if err := s.postCredit(ctx, tx, card, &e, target); err != nil {
		return err
	}
	a.RefundedAmount += amount
	a.UpdatedAt = s.now()
	return s.saveAuthorization(ctx, tx, a, a.Status)
}

// unspend takes released money out of the spending windows the
// authorization was counted in.
func (s *Service) unspend(ctx context.Context, tx cardrail.Tx, a *cardrail.Authorization, amount int64) error {
	if amount == 0 {
		return nil
	}
	for _, w := range []string{cardrail.DayWindow(a.CreatedAt), cardrail.MonthWindow(a.CreatedAt)} {
		if err := tx.AddSpend(ctx, a.Card, w, -amount); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) saveAuthorization(ctx context.Context, tx cardrail.Tx, a *cardrail.Authorization, from cardrail.AuthorizationStatus) error {
	err := tx.UpdateAuthorization(ctx, a, from)
	if errors.Is(err, cardrail.ErrStale) {
		return cardrail.Errorf(cardrail.CodeInvalidAuthorizationState, "Authorization %s changed while this request ran.", a.Reference)
	}
	return err
}

// ExpireStale expires every pending authorization whose hold window has
// passed, each in its own transaction, and reports how many it expired. It
// is the background job; a racing settle or reversal simply wins.
func (s *Service) ExpireStale(ctx context.Context, batch int) (int, error) {
	stale, err := s.store.StaleAuthorizations(ctx, s.now(), batch)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, a := range stale {
		_, err := s.Expire(ctx, expiryCaller(a.Livemode), a.Reference, NetworkEvent{AsOperator: true})
		switch cardrail.ErrorCode(err) {
		case "":
			n++
		case cardrail.CodeInvalidAuthorizationState:
		default:
			return n, err
		}
	}
	return n, nil
}
