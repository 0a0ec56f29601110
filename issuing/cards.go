package issuing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"unicode/utf8"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/ledger"
	"github.com/cardrail/cardrail/provider"
	"github.com/cardrail/cardrail/seal"
)

// Metadata bounds, as the best issuing APIs set them.
const (
	maxMetadataKeys     = 20
	maxMetadataKeyLen   = 40
	maxMetadataValueLen = 500
	maxNicknameLen      = 100
)

// CardParams is what a cardholder asks for when creating a card.
type CardParams struct {
	Program          string
	Nickname         *string
	Metadata         map[string]string
	SpendingControls *cardrail.SpendingControls
}

// CardUpdate is a PATCH: nil fields are left alone. Metadata merges key by
// key, and a key set to "" is removed.
type CardUpdate struct {
	Nickname         *string
	Metadata         map[string]string
	SpendingControls *cardrail.SpendingControls
}

func validateNickname(n *string) []cardrail.FieldError {
	if n != nil && utf8.RuneCountInString(*n) > maxNicknameLen {
		return []cardrail.FieldError{{Field: "nickname", Message: fmt.Sprintf("must be at most %d characters", maxNicknameLen)}}
	}
	return nil
}

func validateMetadata(md map[string]string) []cardrail.FieldError {
	var errs []cardrail.FieldError
	if len(md) > maxMetadataKeys {
		errs = append(errs, cardrail.FieldError{Field: "metadata", Message: fmt.Sprintf("must have at most %d keys", maxMetadataKeys)})
	}
	for k, v := range md {
		if k == "" || utf8.RuneCountInString(k) > maxMetadataKeyLen {
			errs = append(errs, cardrail.FieldError{Field: "metadata", Message: fmt.Sprintf("keys must be 1 to %d characters", maxMetadataKeyLen)})
		}
		if utf8.RuneCountInString(v) > maxMetadataValueLen {
			errs = append(errs, cardrail.FieldError{Field: "metadata." + k, Message: fmt.Sprintf("must be at most %d characters", maxMetadataValueLen)})
		}
	}
	return errs
}

// CreateCard issues a card through the program's route. The card is written
// once, in its final state (active, under_review or failed), together with
// its card.created event, so no half-created card is ever visible.
func (s *Service) CreateCard(ctx context.Context, c cardrail.Caller, p CardParams) (*cardrail.Card, error) {
	const op = "cards.Create"
	var errs []cardrail.FieldError
	if p.Program == "" {
		errs = append(errs, cardrail.FieldError{Field: "program", Message: "is required"})
	}
	errs = append(errs, validateNickname(p.Nickname)...)
	errs = append(errs, validateMetadata(p.Metadata)...)
	if len(errs) > 0 {
		return nil, cardrail.Invalid(errs...)
	}
	prog, err := s.store.Program(ctx, c.Livemode, p.Program)
	if errors.Is(err, cardrail.ErrNoRows) {
		return nil, cardrail.Invalid(cardrail.FieldError{Field: "program", Message: fmt.Sprintf("no program %q", p.Program)})
	}
	if err != nil {
		return nil, cardrail.WithOp(op, err)
	}
	controls := cardrail.SpendingControls{}
	if p.SpendingControls != nil {
		if errs := p.SpendingControls.Validate("spending_controls", prog.Limits); len(errs) > 0 {
			return nil, cardrail.Invalid(errs...)
		}
		controls = p.SpendingControls.Normalized()
	}
	if !prog.Enabled() {
		return nil, cardrail.Errorf(cardrail.CodeProgramDisabled, "Program %q is disabled.", prog.Code)
	}
	if err := s.gate(ctx, c, prog); err != nil {
		return nil, err
	}
	states, err := s.store.ProviderStates(ctx, c.Livemode)
	if err != nil {
		return nil, cardrail.WithOp(op, err)
	}
	routes := make([]provider.Route, len(prog.Providers))
	for i, name := range prog.Providers {
		on, touched := states[name]
		routes[i] = provider.Route{Name: name, Enabled: on || !touched}
	}

	ref, err := s.reserveReference(ctx, cardrail.PrefixCard)
	if err != nil {
		return nil, cardrail.WithOp(op, err)
	}
	// A card's created_at is its reference's time, to the millisecond,
	// whichever try records it: a retry reuses the reference reserved
	// before the partner was asked, and the card lists by reference in
	// created_at order either way.
	now, minted := cardrail.ReferenceTime(ref)
	if !minted {
		now = s.now()
	}
	card := &cardrail.Card{
		Object: "card", Reference: ref, Program: prog.Code,
		Type: prog.CardType, Brand: prog.Brand, Currency: prog.Currency, Nickname: p.Nickname,
		SpendingControls: controls, Metadata: p.Metadata, Livemode: c.Livemode, Owner: c.Subject,
		CreatedAt: now, UpdatedAt: now,
	}
	if card.Metadata == nil {
		card.Metadata = map[string]string{}
	}
	ctx = cardrail.WithIdempotentCreation(ctx, card.Reference)
	res, err := s.router.Issue(ctx, routes, cardrail.IssueRequest{
		IdempotencyKey: "cardrail-issue-" + card.Reference, CardReference: card.Reference, Program: prog.Code,
		Brand: prog.Brand, Type: prog.CardType, Currency: prog.Currency, Country: c.Country, Livemode: c.Livemode,
	})
	for _, a := range res.Attempts {
		if a.Err == nil {
			s.log.InfoContext(ctx, "provider attempt", "op", op, "card", card.Reference, "provider", a.Provider,
				"ok", true, "duration_ms", a.Duration.Milliseconds())
			continue
		}
		// Why routing moved on (or gave up): an operator reading the log
		// should not have to guess. A caller that went away is no
		// partner's fault.
		level := slog.LevelWarn
		if ctx.Err() != nil {
			level = slog.LevelInfo
		}
		s.log.Log(ctx, level, "provider attempt", "op", op, "card", card.Reference, "provider", a.Provider,
			"ok", false, "duration_ms", a.Duration.Milliseconds(), "error", a.Err.Error())
	}
	var secret cardrail.CardSecret
	switch {
	case errors.Is(err, provider.ErrUnsupported):
		return nil, cardrail.Errorf(cardrail.CodeProviderUnsupported,
			"No issuing partner of program %q supports %s cards in %q.", prog.Code, prog.Currency, c.Country)
	case errors.Is(err, provider.ErrUnavailable):
		return nil, cardrail.Errorf(cardrail.CodeProviderUnavailable,
			"Every issuing partner of program %q is disabled or unavailable; try again later.", prog.Code)
	case errors.Is(err, provider.ErrAllFailed):
		reason := provider.Reason(res.Attempts)
		card.Status, card.StatusReason = cardrail.CardFailed, &reason
	case err != nil:
		return nil, cardrail.WithOp(op, err)
	default:
		name := res.Provider
		card.Provider = &name
		card.Status = cardrail.CardActive
		if res.Card.UnderReview {
			card.Status = cardrail.CardUnderReview
			reason := "the issuing partner holds the card for review"
			card.StatusReason = &reason
		}
		pan := res.Card.PAN
		if len(pan) < 12 {
			return nil, cardrail.WithOp(op, fmt.Errorf("provider %s returned a malformed PAN", name))
		}
		last4 := pan[len(pan)-4:]
		card.Last4, card.ExpMonth, card.ExpYear = &last4, &res.Card.ExpMonth, &res.Card.ExpYear
		keyID, sealed, err := s.keys.Seal([]byte(pan), []byte(card.Reference))
		if err != nil {
			return nil, cardrail.WithOp(op, err)
		}
		secret = cardrail.CardSecret{KeyID: keyID, SealedPAN: sealed, ProviderCardID: res.Card.ProviderCardID}
	}
	err = s.store.Tx(ctx, func(tx cardrail.Tx) error {
		if err := tx.InsertCard(ctx, card, secret); err != nil {
			return err
		}
		return s.emit(ctx, tx, cardrail.EventCardCreated, card.Livemode, card.Reference, card)
	})
	if err != nil {
		return nil, cardrail.WithOp(op, err)
	}
	return card, nil
}

// reserveReference returns the reference for an object about to be
// created through an outside party keyed by it. Under an Idempotency-Key it
// is the reference an earlier run of the same request reserved, or a new
// one reserved now, before the call: so a retry after a failure or a crash
// asks the partner with the same key and gets the card it already issued,
// not a second one.
func (s *Service) reserveReference(ctx context.Context, prefix string) (string, error) {
	m, ok := cardrail.IdempotencyMarkFrom(ctx)
	if ok && cardrail.HasPrefix(m.Reserved, prefix) {
		return m.Reserved, nil
	}
	ref := cardrail.NewReference(prefix)
	if ok {
		if err := s.store.ReserveIdempotent(ctx, m.Scope, m.Key, m.Token, ref); err != nil {
			return "", err
		}
	}
	return ref, nil
}

// gate applies the issuing checks in the SPEC's order. Verification is a
// production requirement; the market check applies in both modes, so a
// sandbox behaves like the production it rehearses.
func (s *Service) gate(ctx context.Context, c cardrail.Caller, prog *cardrail.Program) error {
	if c.Livemode {
		verified := c.Verified()
		ch, err := s.store.Cardholder(ctx, true, c.Subject)
		switch {
		case err == nil:
			verified = ch.KYC == cardrail.KYCVerified
		case !errors.Is(err, cardrail.ErrNoRows):
			return err
		}
		if !verified {
			return cardrail.Errorf(cardrail.CodeVerificationRequired, "The cardholder must be verified before a card can be issued.")
		}
	}
	if !prog.OpenIn(c.Country) {
		return cardrail.Errorf(cardrail.CodeCountryNotActivated, "Program %q is not activated in %q.", prog.Code, c.Country)
	}
	return nil
}

// Card returns one of the caller's cards.
func (s *Service) Card(ctx context.Context, c cardrail.Caller, ref string, asOperator bool) (*cardrail.Card, error) {
	if !cardrail.HasPrefix(ref, cardrail.PrefixCard) {
		return nil, cardrail.NotFound("card", ref)
	}
	card, err := s.store.Card(ctx, c.Livemode, owner(c, asOperator), ref)
	return lookup(card, err, "card", ref)
}

// Cards lists the caller's cards, newest first.
func (s *Service) Cards(ctx context.Context, c cardrail.Caller, status cardrail.CardStatus, p cardrail.ListParams) (cardrail.Page[cardrail.Card], error) {
	return s.store.Cards(ctx, cardrail.CardFilter{Livemode: c.Livemode, Owner: c.Subject, Status: status, ListParams: p})
}

// UpdateCard applies a PATCH to one of the caller's cards.
func (s *Service) UpdateCard(ctx context.Context, c cardrail.Caller, ref string, u CardUpdate) (*cardrail.Card, error) {
	errs := append(validateNickname(u.Nickname), validateMetadata(u.Metadata)...)
	if len(errs) > 0 {
		return nil, cardrail.Invalid(errs...)
	}
	var out *cardrail.Card
	err := s.store.Tx(ctx, func(tx cardrail.Tx) error {
		card, err := s.lockCard(ctx, tx, c, ref, false)
		if err != nil {
			return err
		}
		if card.Status.Final() {
			return cardrail.Errorf(cardrail.CodeInvalidCardState, "Card %s is %s and can no longer be changed.", ref, card.Status)
		}
		before := *card // the fields below are replaced, never changed in place
		if u.SpendingControls != nil {
			prog, err := tx.Program(ctx, card.Livemode, card.Program)
			if err != nil {
				return err
			}
			if errs := u.SpendingControls.Validate("spending_controls", prog.Limits); len(errs) > 0 {
				return cardrail.Invalid(errs...)
			}
			card.SpendingControls = u.SpendingControls.Normalized()
		}
		if u.Nickname != nil {
			card.Nickname = u.Nickname
			if *u.Nickname == "" {
				card.Nickname = nil
			}
		}
		if u.Metadata != nil {
			merged := map[string]string{}
			for k, v := range card.Metadata {
				merged[k] = v
			}
			for k, v := range u.Metadata {
				if v == "" {
					delete(merged, k)
				} else {
					merged[k] = v
				}
			}
			if errs := validateMetadata(merged); len(errs) > 0 {
				return cardrail.Invalid(errs...)
			}
			card.Metadata = merged
		}
		out = card
		if sameSettings(&before, card) {
			// Nothing changed: no write, and no card.updated for
			// subscribers to sift out.
			return nil
		}
		card.UpdatedAt = s.now()
		if err := tx.UpdateCard(ctx, card); err != nil {
			return err
		}
		return s.emit(ctx, tx, cardrail.EventCardUpdated, card.Livemode, card.Reference, card)
	})
	return out, cardrail.WithOp("cards.Update", err)
}

// sameSettings reports whether a and b have the same nickname, metadata and
// spending controls (an empty map and none are the same).
func sameSettings(a, b *cardrail.Card) bool {
	nick := func(c *cardrail.Card) string {
		if c.Nickname == nil {
			return ""
		}
		return *c.Nickname
	}
	return nick(a) == nick(b) && maps.Equal(a.Metadata, b.Metadata) && reflect.DeepEqual(a.SpendingControls, b.SpendingControls)
}

// lockCard locks one of the caller's cards (any card for operators).
func (s *Service) lockCard(ctx context.Context, tx cardrail.Tx, c cardrail.Caller, ref string, asOperator bool) (*cardrail.Card, error) {
	if !cardrail.HasPrefix(ref, cardrail.PrefixCard) {
		return nil, cardrail.NotFound("card", ref)
	}
	card, err := tx.CardForUpdate(ctx, c.Livemode, owner(c, asOperator), ref)
	return lookup(card, err, "card", ref)
}

// statusEvents names the event of each status a card can be moved to; the
// other statuses report card.updated.
var statusEvents = map[cardrail.CardStatus]string{
	cardrail.CardFrozen:     cardrail.EventCardFrozen,
	cardrail.CardTerminated: cardrail.EventCardTerminated,
}

// Transition moves a card to status to on behalf of by, per the domain's
// transition table. Closing a card sweeps its available balance to the
// owner's wallet in the same transaction.
func (s *Service) Transition(ctx context.Context, c cardrail.Caller, ref string, to cardrail.CardStatus, by cardrail.Actor) (*cardrail.Card, error) {
	var out *cardrail.Card
	err := s.store.Tx(ctx, func(tx cardrail.Tx) error {
		card, err := s.lockCard(ctx, tx, c, ref, by == cardrail.ActorOperator || by == cardrail.ActorSystem)
		if err != nil {
			return err
		}
		out, err = s.transition(ctx, tx, card, to, by)
		return err
	})
	return out, cardrail.WithOp("cards.Transition", err)
}

func (s *Service) transition(ctx context.Context, tx cardrail.Tx, card *cardrail.Card, to cardrail.CardStatus, by cardrail.Actor) (*cardrail.Card, error) {
	from := card.Status
	if !cardrail.CanTransition(from, to, by) {
		return nil, cardrail.Errorf(cardrail.CodeInvalidCardState, "Card %s is %s and cannot become %s.", card.Reference, from, to)
	}
	card.Status = to
	card.StatusReason = nil
	if to == cardrail.CardFailed {
		// The one way into failed after issuing: an operator's rejection
		// of a card under review. A failed card always says why.
		reason := "rejected by an operator after review"
		card.StatusReason = &reason
	}
	card.UpdatedAt = s.now()
	if err := tx.UpdateCard(ctx, card, from); err != nil {
		return nil, err
	}
	if to.Closed() && card.Balance.Available > 0 {
		w, err := tx.Wallet(ctx, card.Livemode, card.Owner, card.Currency)
		if err != nil {
			return nil, err
		}
		e := ledger.Move(ledger.TypeCardSweep, card.Livemode, card.Currency, ledger.CardAvailableAccount(card.Reference), w.Reference, card.Balance.Available)
		e.Card = card.Reference
		if err := tx.Post(ctx, &e); err != nil {
			return nil, err
		}
		card.Balance.Available = 0
		if err := s.emitWallet(ctx, tx, cardrail.EventWalletCredited, card.Livemode, card.Owner, card.Currency); err != nil {
			return nil, err
		}
	}
	typ, ok := statusEvents[to]
	switch {
	case ok:
	case from == cardrail.CardFrozen && to == cardrail.CardActive:
		typ = cardrail.EventCardUnfrozen
	default:
		typ = cardrail.EventCardUpdated
	}
	return card, s.emit(ctx, tx, typ, card.Livemode, card.Reference, card)
}

// emitWallet emits an event carrying the wallet as it stands in tx.
func (s *Service) emitWallet(ctx context.Context, tx cardrail.Tx, typ string, livemode bool, owner, currency string) error {
	w, err := tx.Wallet(ctx, livemode, owner, currency)
	if err != nil {
		return err
	}
	return s.emit(ctx, tx, typ, livemode, w.Reference, w)
}

// RevealDetails returns a sandbox card's number and CVC to its owner and
// records the reveal in the audit log. Production numbers are never revealed.
func (s *Service) RevealDetails(ctx context.Context, c cardrail.Caller, ref, requestID string) (*cardrail.CardDetails, error) {
	if c.Livemode {
		return nil, cardrail.Errorf(cardrail.CodeSandboxOnly, "Card details can only be revealed in sandbox.")
	}
	card, err := s.Card(ctx, c, ref, false)
	if err != nil {
		return nil, err
	}
	if card.Last4 == nil || card.Provider == nil {
		return nil, cardrail.Errorf(cardrail.CodeInvalidCardState, "Card %s has no number (it is %s).", ref, card.Status)
	}
	// A number is shown only while it can be used: not for a card that is
	// closed, blocked by an operator, or not yet approved.
	if card.Status != cardrail.CardActive && card.Status != cardrail.CardFrozen {
		return nil, cardrail.Errorf(cardrail.CodeInvalidCardState, "Card %s is %s; only active or frozen cards reveal their number.", ref, card.Status)
	}
	secret, err := s.store.CardSecret(ctx, c.Livemode, ref)
	if err != nil {
		return nil, cardrail.WithOp("cards.Reveal", err)
	}
	pan, err := s.keys.Open(secret.KeyID, secret.SealedPAN, []byte(card.Reference))
	if errors.Is(err, seal.ErrUnknownKey) {
		// The operator lost or dropped the key that sealed this number:
		// the service is misconfigured, not failing (docs/operations.md,
		// rotating the encryption key). The log names the key id.
		return nil, &cardrail.Error{Code: cardrail.CodeServiceUnavailable, Op: "cards.Reveal", Err: err,
			Message: "This card's number cannot be opened on this server right now: the key that sealed it is not configured. The operator is told in the log."}
	}
	if err != nil {
		return nil, cardrail.WithOp("cards.Reveal", err)
	}
	d := &cardrail.CardDetails{Object: "card_details", Reference: card.Reference, Number: string(pan),
		ExpMonth: *card.ExpMonth, ExpYear: *card.ExpYear, Livemode: card.Livemode}
	if p, ok := s.registry.Lookup(*card.Provider); ok {
		if cv, ok := p.(cardrail.CVVComputer); ok {
			d.CVC = cv.CVV(d.Number, d.ExpMonth, d.ExpYear)
		}
	}
	after, _ := json.Marshal(map[string]string{"card": card.Reference, "last4": *card.Last4})
	err = s.store.Tx(ctx, func(tx cardrail.Tx) error {
		ref, now := cardrail.NewReferenceAt(s.now, cardrail.PrefixAudit)
		return tx.InsertAudit(ctx, &cardrail.AuditRecord{Reference: ref,
			Actor: c.Subject, Action: "card.details.revealed", Target: card.Reference, After: after,
			Livemode: c.Livemode, RequestID: requestID, CreatedAt: now})
	})
	if err != nil {
		return nil, cardrail.WithOp("cards.Reveal", err)
	}
	return d, nil
}

// ExpireCards moves every card whose expiry month has ended to expired,
// sweeping its available balance to the owner's wallet, and reports how
// many it expired. A card is valid through the last day of its expiry
// month (UTC). It is the background job; a racing owner action simply wins
// or loses the card's lock.
func (s *Service) ExpireCards(ctx context.Context, batch int) (int, error) {
	now := s.now()
	cards, err := s.store.ExpiredCards(ctx, now.Year(), int(now.Month()), batch)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range cards {
		sys := cardrail.Caller{Subject: "system:expiry", Livemode: c.Livemode}
		_, err := s.Transition(ctx, sys, c.Reference, cardrail.CardExpired, cardrail.ActorSystem)
		switch cardrail.ErrorCode(err) {
		case "":
			n++
		case cardrail.CodeInvalidCardState:
		default:
			return n, err
		}
	}
	return n, nil
}
