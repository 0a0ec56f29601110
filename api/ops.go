package api

import (
	"net/http"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/issuing"
)

// opsRoutes are the operator API: every route needs the ops role and acts
// in the operator's own mode; every action writes an audit record.
func opsRoutes() []route {
	return []route{
		{"GET", "/ops/programs/", "opsListPrograms", operator, false, opsListPrograms},
		{"GET", "/ops/programs/{code}/", "opsGetProgram", operator, false, opsGetProgram},
		{"POST", "/ops/programs/{code}/enable/", "opsEnableProgram", operator, false, opsProgramEnabled(true)},
		{"POST", "/ops/programs/{code}/disable/", "opsDisableProgram", operator, false, opsProgramEnabled(false)},
		{"POST", "/ops/programs/{code}/countries/", "opsProgramCountries", operator, false, opsProgramCountries},
		{"POST", "/ops/programs/{code}/providers/", "opsProgramProviders", operator, false, opsProgramProviders},
		{"GET", "/ops/providers/", "opsListProviders", operator, false, opsListProviders},
		{"POST", "/ops/providers/{name}/enable/", "opsEnableProvider", operator, false, opsProviderEnabled(true)},
		{"POST", "/ops/providers/{name}/disable/", "opsDisableProvider", operator, false, opsProviderEnabled(false)},
		{"POST", "/ops/providers/{name}/simulate/", "opsSimulateProvider", operator, false, opsSimulateProvider},
		{"GET", "/ops/managed-cards/{ref}/", "opsGetCard", operator, false, opsGetCard},
		{"POST", "/ops/managed-cards/{ref}/block/", "opsBlockCard", operator, false, opsCardAction(issuing.ActionBlock)},
		{"POST", "/ops/managed-cards/{ref}/unblock/", "opsUnblockCard", operator, false, opsCardAction(issuing.ActionUnblock)},
		{"POST", "/ops/managed-cards/{ref}/terminate/", "opsTerminateCard", operator, false, opsCardAction(issuing.ActionTerminate)},
		{"POST", "/ops/managed-cards/{ref}/approve/", "opsApproveCard", operator, false, opsCardAction(issuing.ActionApprove)},
		{"POST", "/ops/managed-cards/{ref}/reject/", "opsRejectCard", operator, false, opsCardAction(issuing.ActionReject)},
		{"GET", "/ops/authorizations/{ref}/", "opsGetAuthorization", operator, false, opsGetAuthorization},
		{"POST", "/ops/authorizations/{ref}/settle/", "opsSettleAuthorization", operator, false, networkEvent(settle, true)},
		{"POST", "/ops/authorizations/{ref}/reverse/", "opsReverseAuthorization", operator, false, networkEvent(reverse, true)},
		{"POST", "/ops/authorizations/{ref}/refund/", "opsRefundAuthorization", operator, false, networkEvent(refund, true)},
		{"POST", "/ops/cardholders/{sub}/verification/", "opsSetVerification", operator, false, opsSetVerification},
		{"DELETE", "/ops/cardholders/{sub}/verification/", "opsClearVerification", operator, false, opsClearVerification},
		{"POST", "/ops/wallets/credit/", "opsCreditWallet", operator, false, opsCreditWallet},
		{"GET", "/ops/disputes/{ref}/", "opsGetDispute", operator, false, opsGetDispute},
		{"POST", "/ops/disputes/{ref}/submit/", "opsSubmitDispute", operator, false, opsMoveDispute(cardrail.DisputeSubmitted)},
		{"POST", "/ops/disputes/{ref}/win/", "opsWinDispute", operator, false, opsMoveDispute(cardrail.DisputeWon)},
		{"POST", "/ops/disputes/{ref}/lose/", "opsLoseDispute", operator, false, opsMoveDispute(cardrail.DisputeLost)},
		{"GET", "/ops/audit-log/", "opsListAuditLog", operator, false, opsAuditLog},
		{"GET", "/ops/events/", "opsListEvents", operator, false, opsEvents},
		{"GET", "/ops/ledger/balances/", "opsLedgerBalances", operator, false, opsLedgerBalances},
	}
}

// opsListPrograms is the mode's whole catalogue, enabled or not, in any
// market: what an operator enables and activates.
func opsListPrograms(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	ps, err := s.svc.AllPrograms(r.Context(), c)
	if err != nil {
		return 0, nil, err
	}
	page, err := programPage(r, ps, nil)
	return http.StatusOK, page, err
}

func opsGetProgram(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	p, err := s.svc.AnyProgram(r.Context(), c, r.PathValue("code"))
	return http.StatusOK, p, err
}

// opsListProviders is every partner known to the mode, by name, whole:
// a handful, so not paged.
func opsListProviders(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	ps, err := s.svc.Providers(r.Context(), c)
	if err != nil {
		return 0, nil, err
	}
	items := make([]providerStatusObject, len(ps))
	for i, p := range ps {
		items[i] = providerStatusObject{Object: "provider", ProviderStatus: p}
	}
	return http.StatusOK, list[providerStatusObject]{Object: "list", Data: items}, nil
}

// providerStatusObject is a list item of GET /ops/providers/: a partner
// with its breaker, typed "provider" like the enable and disable answers.
type providerStatusObject struct {
	Object string `json:"object"`
	issuing.ProviderStatus
}

type simulateRequest struct {
	Outcome string `json:"outcome"`
	DelayMS int64  `json:"delay_ms"`
}

func opsSimulateProvider(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	var req simulateRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	sim, err := s.svc.SimulateProvider(r.Context(), c, r.PathValue("name"), req.Outcome, req.DelayMS)
	return http.StatusOK, sim, err
}

// opsGetAuthorization and opsGetDispute show any cardholder's object of
// the operator's mode, with its owner, as opsGetCard does a card.
func opsGetAuthorization(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	a, err := s.svc.Authorization(r.Context(), c, r.PathValue("ref"), true)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, struct {
		*cardrail.Authorization
		Owner string `json:"owner"`
	}{a, a.Owner}, nil
}

func opsGetDispute(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	d, err := s.svc.Dispute(r.Context(), c, r.PathValue("ref"), true)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, struct {
		*cardrail.Dispute
		Owner string `json:"owner"`
	}{d, d.Owner}, nil
}

func opsProgramEnabled(on bool) handler {
	return func(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
		if err := decode(r, &emptyRequest{}); err != nil {
			return 0, nil, err
		}
		p, err := s.svc.SetProgramEnabled(r.Context(), c, r.PathValue("code"), on)
		return http.StatusOK, p, err
	}
}

type countriesRequest struct {
	Activate   []string `json:"activate"`
	Deactivate []string `json:"deactivate"`
}

func opsProgramCountries(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	var req countriesRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	p, err := s.svc.SetProgramCountries(r.Context(), c, r.PathValue("code"), req.Activate, req.Deactivate)
	return http.StatusOK, p, err
}

type providersRequest struct {
	Providers []string `json:"providers"`
}

func opsProgramProviders(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	var req providersRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	p, err := s.svc.SetProgramProviders(r.Context(), c, r.PathValue("code"), req.Providers)
	return http.StatusOK, p, err
}

func opsProviderEnabled(on bool) handler {
	return func(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
		if err := decode(r, &emptyRequest{}); err != nil {
			return 0, nil, err
		}
		st, err := s.svc.SetProviderEnabled(r.Context(), c, r.PathValue("name"), on)
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, providerObject{Object: "provider", ProviderState: *st}, nil
	}
}

type providerObject struct {
	Object string `json:"object"`
	cardrail.ProviderState
}

func opsGetCard(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	card, err := s.svc.Card(r.Context(), c, r.PathValue("ref"), true)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, opsCard{Card: card, Owner: card.Owner}, nil
}

// opsCard shows operators whose card it is.
type opsCard struct {
	*cardrail.Card
	Owner string `json:"owner"`
}

func opsCardAction(act issuing.CardAction) handler {
	return func(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
		if err := decode(r, &emptyRequest{}); err != nil {
			return 0, nil, err
		}
		card, err := s.svc.OperateCard(r.Context(), c, r.PathValue("ref"), act)
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, opsCard{Card: card, Owner: card.Owner}, nil
	}
}

type verificationRequest struct {
	KYC string `json:"kyc"`
}

func opsSetVerification(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	var req verificationRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	ch, err := s.svc.SetVerification(r.Context(), c, r.PathValue("sub"), req.KYC)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, struct {
		Object string `json:"object"`
		*cardrail.Cardholder
	}{"cardholder", ch}, nil
}

type creditRequest struct {
	Sub      string `json:"sub"`
	Amount   *int64 `json:"amount" null:"refuse"`
	Currency string `json:"currency"`
}

func opsCreditWallet(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	var req creditRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	amount, err := requiredAmount(req.Amount)
	if err != nil {
		return 0, nil, err
	}
	w, err := s.svc.CreditWallet(r.Context(), c, req.Sub, amount, req.Currency)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, struct {
		*cardrail.Wallet
		Owner string `json:"owner"`
	}{w, w.Owner}, nil
}

func opsMoveDispute(to cardrail.DisputeStatus) handler {
	return func(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
		if err := decode(r, &emptyRequest{}); err != nil {
			return 0, nil, err
		}
		d, err := s.svc.MoveDispute(r.Context(), c, r.PathValue("ref"), to, cardrail.ActorOperator)
		return http.StatusOK, d, err
	}
}

func opsAuditLog(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	p, err := listParams(r, cardrail.PrefixAudit)
	if err != nil {
		return 0, nil, err
	}
	page, err := s.svc.AuditLog(r.Context(), c, p)
	return http.StatusOK, renderPage(page), err
}

func opsEvents(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	p, err := listParams(r, cardrail.PrefixEvent)
	if err != nil {
		return 0, nil, err
	}
	page, err := s.svc.Events(r.Context(), c, r.URL.Query().Get("type"), r.URL.Query().Get("object"), p)
	return http.StatusOK, renderPage(page), err
}

// ledgerBalances is the ledger of one mode: per currency, each kind of
// account and the total, which is always zero.
type ledgerBalances struct {
	Object     string             `json:"object"`
	Livemode   bool               `json:"livemode"`
	Currencies []currencyBalances `json:"currencies"`
}

type currencyBalances struct {
	Currency string                    `json:"currency"`
	Accounts []cardrail.AccountBalance `json:"accounts"`
	Total    int64                     `json:"total"`
}

func opsLedgerBalances(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	sums, err := s.svc.AccountBalances(r.Context(), c)
	if err != nil {
		return 0, nil, err
	}
	out := ledgerBalances{Object: "ledger_balances", Livemode: c.Livemode, Currencies: []currencyBalances{}}
	for _, b := range sums {
		if n := len(out.Currencies); n == 0 || out.Currencies[n-1].Currency != b.Currency {
			out.Currencies = append(out.Currencies, currencyBalances{Currency: b.Currency})
		}
		cb := &out.Currencies[len(out.Currencies)-1]
		cb.Accounts = append(cb.Accounts, b)
		cb.Total += b.Balance
	}
	return http.StatusOK, out, nil
}

// opsClearVerification removes an operator's verdict: the answer says
// the override is gone (kyc null) and the token's claim decides again.
func opsClearVerification(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	if err := decode(r, &emptyRequest{}); err != nil {
		return 0, nil, err
	}
	sub := r.PathValue("sub")
	if err := s.svc.ClearVerification(r.Context(), c, sub); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, struct {
		Object   string  `json:"object"`
		Subject  string  `json:"subject"`
		KYC      *string `json:"kyc"`
		Livemode bool    `json:"livemode"`
		Deleted  bool    `json:"deleted"`
	}{"cardholder", sub, nil, c.Livemode, true}, nil
}
