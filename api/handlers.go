package api

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/issuing"
)

func listPrograms(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	ps, err := s.svc.Programs(r.Context(), c)
	if err != nil {
		return 0, nil, err
	}
	page, err := programPage(r, ps, func(code string) (*cardrail.Program, error) { return s.svc.AnyProgram(r.Context(), c, code) })
	return http.StatusOK, page, err
}

// programPage pages programs newest first (ties by code, descending), the
// cursor being the code of the previous page's last program. A program
// that has left the list since (disabled, or its market closed) still
// marks where the walk goes on: lookup finds it in the whole catalogue.
// Without a lookup (the catalogue itself), a code not in the list is no
// cursor.
func programPage(r *http.Request, ps []cardrail.Program, lookup func(code string) (*cardrail.Program, error)) (list[cardrail.Program], error) {
	p, err := listParams(r, "")
	if err != nil {
		return list[cardrail.Program]{}, err
	}
	newest := func(a, b cardrail.Program) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.Code, a.Code)
	}
	slices.SortFunc(ps, newest)
	code := func(p cardrail.Program) string { return p.Code }
	if p.Cursor != "" {
		var at *cardrail.Program
		if i := slices.IndexFunc(ps, func(q cardrail.Program) bool { return q.Code == p.Cursor }); i >= 0 {
			at = &ps[i]
		} else if lookup != nil {
			if at, err = lookup(p.Cursor); err != nil && cardrail.ErrorCode(err) != cardrail.CodeNotFound {
				return list[cardrail.Program]{}, err
			}
		}
		if at == nil {
			return list[cardrail.Program]{}, cardrail.Invalid(cardrail.FieldError{Field: "cursor", Message: "is not a cursor this list returned"})
		}
		ps = from(ps, func(q cardrail.Program) bool { return newest(*at, q) < 0 })
	}
	return firstPage(ps, p.Limit, code), nil
}

func getProgram(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	p, err := s.svc.Program(r.Context(), c, r.PathValue("code"))
	return http.StatusOK, p, err
}

type createCardRequest struct {
	Program          string                     `json:"program"`
	Nickname         *string                    `json:"nickname"`
	Metadata         map[string]string          `json:"metadata"`
	SpendingControls *cardrail.SpendingControls `json:"spending_controls"`
}

func createCard(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	var req createCardRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	card, err := s.svc.CreateCard(r.Context(), c, issuing.CardParams{Program: req.Program, Nickname: req.Nickname,
		Metadata: req.Metadata, SpendingControls: req.SpendingControls})
	return http.StatusCreated, card, err
}

func listCards(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	p, err := listParams(r, cardrail.PrefixCard)
	if err != nil {
		return 0, nil, err
	}
	status := cardrail.CardStatus(r.URL.Query().Get("status"))
	if status != "" && !slices.Contains(cardrail.CardStatuses, status) {
		return 0, nil, cardrail.Invalid(cardrail.FieldError{Field: "status", Message: "is not a card status"})
	}
	page, err := s.svc.Cards(r.Context(), c, status, p)
	return http.StatusOK, renderPage(page), err
}

func getCard(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	card, err := s.svc.Card(r.Context(), c, r.PathValue("ref"), false)
	return http.StatusOK, card, err
}

type updateCardRequest struct {
	Nickname         *string                    `json:"nickname"`
	Metadata         map[string]string          `json:"metadata"`
	SpendingControls *cardrail.SpendingControls `json:"spending_controls"`
}

func updateCard(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	var req updateCardRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	card, err := s.svc.UpdateCard(r.Context(), c, r.PathValue("ref"), issuing.CardUpdate{Nickname: req.Nickname,
		Metadata: req.Metadata, SpendingControls: req.SpendingControls})
	return http.StatusOK, card, err
}

type emptyRequest struct{}

// transition is the owner's freeze, unfreeze and terminate.
func transition(to cardrail.CardStatus) handler {
	return func(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
		if err := decode(r, &emptyRequest{}); err != nil {
			return 0, nil, err
		}
		card, err := s.svc.Transition(r.Context(), c, r.PathValue("ref"), to, cardrail.ActorOwner)
		return http.StatusOK, card, err
	}
}

func revealDetails(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	d, err := s.svc.RevealDetails(r.Context(), c, r.PathValue("ref"), info(r).id)
	return http.StatusOK, d, err
}

func listCardTransactions(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	p, err := listParams(r, cardrail.PrefixTransaction)
	if err != nil {
		return 0, nil, err
	}
	page, err := s.svc.CardTransactions(r.Context(), c, r.PathValue("ref"), p)
	return http.StatusOK, renderPage(page), err
}

type moneyRequest struct {
	Amount   *int64 `json:"amount" null:"refuse"`
	Currency string `json:"currency"`
}

// requiredAmount is an amount the request must carry: one left out is
// told so (an amount sent as 0 or out of range is told the range by the
// service, along with the request's other faults).
func requiredAmount(a *int64) (int64, error) {
	if a == nil {
		return 0, cardrail.Invalid(cardrail.FieldError{Field: "amount", Message: fmt.Sprintf("is required, an integer from 1 to %d minor units", cardrail.MaxAmount)})
	}
	return *a, nil
}

// transferRequest is fund's and withdraw's body: the currency, when
// given, must be the card's; left out (or null), the card's is meant.
type transferRequest struct {
	Amount   *int64  `json:"amount" null:"refuse"`
	Currency *string `json:"currency"`
}

// decodeTransfer reads a transferRequest; an empty currency is not a
// currency left out.
func decodeTransfer(r *http.Request) (amount int64, currency string, err error) {
	var req transferRequest
	if err := decode(r, &req); err != nil {
		return 0, "", err
	}
	if amount, err = requiredAmount(req.Amount); err != nil {
		return 0, "", err
	}
	if req.Currency == nil {
		return amount, "", nil
	}
	if *req.Currency == "" {
		return 0, "", cardrail.Invalid(cardrail.FieldError{Field: "currency",
			Message: "must be an uppercase ISO 4217 currency code; leave it out for the card's currency"})
	}
	return amount, *req.Currency, nil
}

func fundCard(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	amount, currency, err := decodeTransfer(r)
	if err != nil {
		return 0, nil, err
	}
	card, err := s.svc.Fund(r.Context(), c, r.PathValue("ref"), amount, currency)
	return http.StatusOK, card, err
}

func withdrawFromCard(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	amount, currency, err := decodeTransfer(r)
	if err != nil {
		return 0, nil, err
	}
	card, err := s.svc.Withdraw(r.Context(), c, r.PathValue("ref"), amount, currency)
	return http.StatusOK, card, err
}

type authorizeRequest struct {
	Amount   *int64            `json:"amount" null:"refuse"`
	Currency string            `json:"currency"`
	Merchant cardrail.Merchant `json:"merchant"`
}

func authorizeCard(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	var req authorizeRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	amount, err := requiredAmount(req.Amount)
	if err != nil {
		return 0, nil, err
	}
	a, err := s.svc.Authorize(r.Context(), c, r.PathValue("ref"), cardrail.AuthorizationAttempt{
		Amount: amount, Currency: req.Currency, Merchant: req.Merchant})
	return http.StatusCreated, a, err
}

func listWallets(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	ws, err := s.svc.Wallets(r.Context(), c)
	if err != nil {
		return 0, nil, err
	}
	page, err := refPage(r, cardrail.PrefixWallet, ws, func(w cardrail.Wallet) string { return w.Reference })
	return http.StatusOK, page, err
}

func sandboxOnly(c cardrail.Caller) error {
	if c.Livemode {
		return cardrail.Errorf(cardrail.CodeSandboxOnly, "This endpoint exists in sandbox only.")
	}
	return nil
}

func sandboxDeposit(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	if err := sandboxOnly(c); err != nil {
		return 0, nil, err
	}
	var req moneyRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	amount, err := requiredAmount(req.Amount)
	if err != nil {
		return 0, nil, err
	}
	w, err := s.svc.Deposit(r.Context(), c, c.Subject, amount, req.Currency)
	return http.StatusOK, w, err
}

func listAuthorizations(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	p, err := listParams(r, cardrail.PrefixAuthorization)
	if err != nil {
		return 0, nil, err
	}
	card := r.URL.Query().Get("card")
	if card != "" && !cardrail.HasPrefix(card, cardrail.PrefixCard) {
		return 0, nil, cardrail.Invalid(cardrail.FieldError{Field: "card", Message: "is not a card reference"})
	}
	page, err := s.svc.Authorizations(r.Context(), c, card, p)
	return http.StatusOK, renderPage(page), err
}

func getAuthorization(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	a, err := s.svc.Authorization(r.Context(), c, r.PathValue("ref"), false)
	return http.StatusOK, a, err
}

type amountRequest struct {
	Amount *int64 `json:"amount" null:"refuse"`
}

type networkMethod = func(ctx context.Context, c cardrail.Caller, ref string, ev issuing.NetworkEvent) (*cardrail.Authorization, error)

type networkFunc func(s *issuing.Service) networkMethod

var (
	settle  networkFunc = func(s *issuing.Service) networkMethod { return s.Settle }
	reverse networkFunc = func(s *issuing.Service) networkMethod { return s.Reverse }
	refund  networkFunc = func(s *issuing.Service) networkMethod { return s.Refund }
)

// networkEvent serves settle, reverse and refund, for cardholders in sandbox
// and for operators.
func networkEvent(f networkFunc, asOperator bool) handler {
	return func(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
		var req amountRequest
		if err := decode(r, &req); err != nil {
			return 0, nil, err
		}
		ev := issuing.NetworkEvent{AsOperator: asOperator, Audit: asOperator}
		if req.Amount != nil {
			if !cardrail.ValidAmount(*req.Amount) {
				return 0, nil, cardrail.Invalid(cardrail.FieldError{Field: "amount", Message: cardrail.AmountRange})
			}
			ev.Amount = *req.Amount
		}
		a, err := f(s.svc)(r.Context(), c, r.PathValue("ref"), ev)
		return http.StatusOK, a, err
	}
}

func sandboxExpire(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	if err := sandboxOnly(c); err != nil {
		return 0, nil, err
	}
	if err := decode(r, &emptyRequest{}); err != nil {
		return 0, nil, err
	}
	a, err := s.svc.Expire(r.Context(), c, r.PathValue("ref"), issuing.NetworkEvent{})
	return http.StatusOK, a, err
}
