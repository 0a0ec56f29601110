package issuing

import (
	"context"
	"errors"
	"slices"
	"unicode/utf8"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/ledger"
)

// DisputeParams is what a cardholder says when opening a case.
type DisputeParams struct {
	Authorization string
	Reason        string
	Amount        int64 // 0: all that is disputable
	Description   *string
}

// disputable is what of a settled authorization can still be disputed (or
// refunded): settled − refunded − its active disputes.
func disputable(ctx context.Context, tx cardrail.Tx, a *cardrail.Authorization) (int64, int, error) {
	disputed, pending, err := tx.DisputedAmount(ctx, a.Reference)
	if err != nil {
		return 0, 0, err
	}
	return a.SettledAmount - a.RefundedAmount - disputed, pending, nil
}

// OpenDispute opens a case on one of the caller's settled authorizations.
func (s *Service) OpenDispute(ctx context.Context, c cardrail.Caller, p DisputeParams) (*cardrail.Dispute, error) {
	var errs []cardrail.FieldError
	if p.Authorization == "" {
		errs = append(errs, cardrail.FieldError{Field: "authorization", Message: "is required"})
	}
	if !slices.Contains(cardrail.DisputeReasons, p.Reason) {
		errs = append(errs, cardrail.FieldError{Field: "reason", Message: "must be one of fraudulent, duplicate, not_received, canceled, product_not_as_described, other"})
	}
	if p.Amount != 0 && !cardrail.ValidAmount(p.Amount) {
		errs = append(errs, cardrail.FieldError{Field: "amount", Message: cardrail.AmountRange})
	}
	if p.Description != nil && utf8.RuneCountInString(*p.Description) > 5000 {
		errs = append(errs, cardrail.FieldError{Field: "description", Message: "must be at most 5000 characters"})
	}
	if len(errs) > 0 {
		return nil, cardrail.Invalid(errs...)
	}
	found, err := s.Authorization(ctx, c, p.Authorization, false)
	if err != nil {
		return nil, err
	}
	var out *cardrail.Dispute
	ref, now := cardrail.NewReferenceAt(s.now, cardrail.PrefixDispute)
	ctx = cardrail.WithIdempotentCreation(ctx, ref)
	err = s.store.Tx(ctx, func(tx cardrail.Tx) error {
		if _, err := tx.CardForUpdate(ctx, c.Livemode, "", found.Card); err != nil {
			return err
		}
		a, err := tx.AuthorizationForUpdate(ctx, c.Livemode, "", found.Reference)
		if err != nil {
			return err
		}
		if a.Status != cardrail.AuthSettled {
			return cardrail.Errorf(cardrail.CodeInvalidAuthorizationState, "Authorization %s is %s; only settled authorizations can be disputed.", a.Reference, a.Status)
		}
		left, pending, err := disputable(ctx, tx, a)
		if err != nil {
			return err
		}
		if pending > 0 {
			return cardrail.Errorf(cardrail.CodeDisputeAlreadyOpen, "Authorization %s already has an open dispute.", a.Reference)
		}
		amount := p.Amount
		if amount == 0 {
			amount = left
		}
		if amount == 0 || amount > left {
			return cardrail.Errorf(cardrail.CodeAmountExceedsDisputable, "Authorization %s has %s left to dispute.", a.Reference,
				cardrail.Money{Amount: max(left, 0), Currency: a.Currency})
		}
		d := &cardrail.Dispute{Object: "dispute", Reference: ref, Authorization: a.Reference,
			Card: a.Card, Status: cardrail.DisputeOpen, Reason: p.Reason, Amount: amount, Currency: a.Currency,
			Description: p.Description, Livemode: a.Livemode, Owner: a.Owner, CreatedAt: now, UpdatedAt: now}
		if err := tx.InsertDispute(ctx, d); err != nil {
			return err
		}
		out = d
		return s.emit(ctx, tx, cardrail.EventDisputeCreated, d.Livemode, d.Reference, d)
	})
	return out, cardrail.WithOp("disputes.Create", err)
}

// Dispute returns one of the caller's disputes (any, for operators).
func (s *Service) Dispute(ctx context.Context, c cardrail.Caller, ref string, asOperator bool) (*cardrail.Dispute, error) {
	if !cardrail.HasPrefix(ref, cardrail.PrefixDispute) {
		return nil, cardrail.NotFound("dispute", ref)
	}
	d, err := s.store.Dispute(ctx, c.Livemode, owner(c, asOperator), ref)
	return lookup(d, err, "dispute", ref)
}

// Disputes lists the caller's disputes.
func (s *Service) Disputes(ctx context.Context, c cardrail.Caller, authorization string, p cardrail.ListParams) (cardrail.Page[cardrail.Dispute], error) {
	return s.store.Disputes(ctx, cardrail.DisputeFilter{Livemode: c.Livemode, Owner: c.Subject, Authorization: authorization, ListParams: p})
}

// SandboxMoveDispute lets a sandbox cardholder play the network and the
// operator on their own dispute, so every dispute event can be produced
// without either.
func (s *Service) SandboxMoveDispute(ctx context.Context, c cardrail.Caller, ref string, to cardrail.DisputeStatus) (*cardrail.Dispute, error) {
	if c.Livemode {
		return nil, cardrail.Errorf(cardrail.CodeSandboxOnly, "This endpoint exists in sandbox only.")
	}
	if _, err := s.Dispute(ctx, c, ref, false); err != nil {
		return nil, err
	}
	return s.MoveDispute(ctx, c, ref, to, cardrail.ActorOperator)
}

// MoveDispute advances a dispute per the domain's dispute table. A won case
// credits the card (or, once the card is closed, the wallet) from the mode's
// dispute_recovery account, in the same transaction.
func (s *Service) MoveDispute(ctx context.Context, c cardrail.Caller, ref string, to cardrail.DisputeStatus, by cardrail.Actor) (*cardrail.Dispute, error) {
	found, err := s.Dispute(ctx, c, ref, by == cardrail.ActorOperator)
	if err != nil {
		return nil, err
	}
	var out *cardrail.Dispute
	err = s.store.Tx(ctx, func(tx cardrail.Tx) error {
		card, err := tx.CardForUpdate(ctx, c.Livemode, "", found.Card)
		if err != nil {
			return err
		}
		d, err := tx.DisputeForUpdate(ctx, c.Livemode, "", ref)
		if err != nil {
			return err
		}
		before := *d
		from := d.Status
		if !cardrail.CanMoveDispute(from, to, by) {
			hint := ""
			if from == cardrail.DisputeOpen && (to == cardrail.DisputeWon || to == cardrail.DisputeLost) {
				hint = " An open dispute is submitted to the network first."
			}
			return cardrail.Errorf(cardrail.CodeInvalidDisputeState, "Dispute %s is %s and cannot become %s.%s", ref, from, to, hint)
		}
		d.Status, d.UpdatedAt = to, s.now()
		if err := tx.UpdateDispute(ctx, d, from); err != nil {
			if errors.Is(err, cardrail.ErrStale) {
				return cardrail.Errorf(cardrail.CodeInvalidDisputeState, "Dispute %s changed while this request ran.", ref)
			}
			return err
		}
		if to == cardrail.DisputeWon {
			target, err := creditTarget(ctx, tx, card)
			if err != nil {
				return err
			}
			e := ledger.Move(ledger.TypeDisputeWon, d.Livemode, d.Currency, ledger.SystemAccount(d.Livemode, d.Currency, ledger.DisputeRecovery), target, d.Amount)
			e.Card, e.Authorization, e.Dispute = d.Card, d.Authorization, d.Reference
			if err := s.postCredit(ctx, tx, card, &e, target); err != nil {
				return err
			}
		}
		if by == cardrail.ActorOperator {
			if err := s.audit(ctx, tx, c, "dispute."+string(to), d.Reference, before, d); err != nil {
				return err
			}
		}
		out = d
		return s.emit(ctx, tx, cardrail.EventDisputeUpdated, d.Livemode, d.Reference, d)
	})
	return out, cardrail.WithOp("disputes.Move", err)
}
