package api

import (
	"net/http"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/issuing"
)

// disputeRoutes are the cardholder's dispute endpoints and the sandbox
// helpers that advance a dispute without a network.
func disputeRoutes() []route {
	return []route{
		{"POST", "/disputes/", "createDispute", cardholder, false, createDispute},
		{"GET", "/disputes/", "listDisputes", cardholder, false, listDisputes},
		{"GET", "/disputes/{ref}/", "getDispute", cardholder, false, getDispute},
		{"POST", "/disputes/{ref}/cancel/", "cancelDispute", cardholder, false, moveDispute(cardrail.DisputeCanceled)},
		{"POST", "/sandbox/disputes/{ref}/submit/", "sandboxSubmitDispute", cardholder, false, sandboxMoveDispute(cardrail.DisputeSubmitted)},
		{"POST", "/sandbox/disputes/{ref}/win/", "sandboxWinDispute", cardholder, false, sandboxMoveDispute(cardrail.DisputeWon)},
		{"POST", "/sandbox/disputes/{ref}/lose/", "sandboxLoseDispute", cardholder, false, sandboxMoveDispute(cardrail.DisputeLost)},
	}
}

type createDisputeRequest struct {
	Authorization string  `json:"authorization"`
	Reason        string  `json:"reason"`
	Amount        *int64  `json:"amount" null:"refuse"`
	Description   *string `json:"description"`
}

func createDispute(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	var req createDisputeRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	p := issuing.DisputeParams{Authorization: req.Authorization, Reason: req.Reason, Description: req.Description}
	if req.Amount != nil {
		if !cardrail.ValidAmount(*req.Amount) {
			return 0, nil, cardrail.Invalid(cardrail.FieldError{Field: "amount", Message: cardrail.AmountRange})
		}
		p.Amount = *req.Amount
	}
	d, err := s.svc.OpenDispute(r.Context(), c, p)
	return http.StatusCreated, d, err
}

func listDisputes(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	p, err := listParams(r, cardrail.PrefixDispute)
	if err != nil {
		return 0, nil, err
	}
	auth := r.URL.Query().Get("authorization")
	if auth != "" && !cardrail.HasPrefix(auth, cardrail.PrefixAuthorization) {
		return 0, nil, cardrail.Invalid(cardrail.FieldError{Field: "authorization", Message: "is not an authorization reference"})
	}
	page, err := s.svc.Disputes(r.Context(), c, auth, p)
	return http.StatusOK, renderPage(page), err
}

func getDispute(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	d, err := s.svc.Dispute(r.Context(), c, r.PathValue("ref"), false)
	return http.StatusOK, d, err
}

func moveDispute(to cardrail.DisputeStatus) handler {
	return func(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
		if err := decode(r, &emptyRequest{}); err != nil {
			return 0, nil, err
		}
		d, err := s.svc.MoveDispute(r.Context(), c, r.PathValue("ref"), to, cardrail.ActorOwner)
		return http.StatusOK, d, err
	}
}

func sandboxMoveDispute(to cardrail.DisputeStatus) handler {
	return func(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
		if err := decode(r, &emptyRequest{}); err != nil {
			return 0, nil, err
		}
		d, err := s.svc.SandboxMoveDispute(r.Context(), c, r.PathValue("ref"), to)
		return http.StatusOK, d, err
	}
}
