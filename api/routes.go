package api

import (
	"net/http"

	"github.com/cardrail/cardrail"
)

// access says who may call a route.
type access int

const (
	// cardholder routes take any valid token and act on the caller's own
	// objects.
	cardholder access = iota
	// operator routes need the ops role.
	operator
)

// handler serves one route for an authenticated caller and returns the
// status and object to render.
type handler func(s *Server, r *http.Request, c cardrail.Caller) (int, any, error)

// route is one endpoint. Path is relative to BasePath and ends with "/".
type route struct {
	Method string
	Path   string
	Name   string
	Access access
	// Reveal routes take the tight card-details limit as well.
	Reveal bool
	Handle handler
}

// routes is every API endpoint, in one list: the mux, the OpenAPI check and
// the operator-access matrix test all read it.
func routes() []route {
	all := cardholderRoutes()
	all = append(all, disputeRoutes()...)
	all = append(all, opsRoutes()...)
	all = append(all, webhookRoutes()...)
	return all
}

// cardholderRoutes are the programs, cards, wallets and authorizations
// endpoints a cardholder calls.
func cardholderRoutes() []route {
	return []route{
		{"GET", "/programs/", "listPrograms", cardholder, false, listPrograms},
		{"GET", "/programs/{code}/", "getProgram", cardholder, false, getProgram},

		{"POST", "/managed-cards/", "createCard", cardholder, false, createCard},
		{"GET", "/managed-cards/", "listCards", cardholder, false, listCards},
		{"GET", "/managed-cards/{ref}/", "getCard", cardholder, false, getCard},
		{"PATCH", "/managed-cards/{ref}/", "updateCard", cardholder, false, updateCard},
		{"POST", "/managed-cards/{ref}/freeze/", "freezeCard", cardholder, false, transition(cardrail.CardFrozen)},
		{"POST", "/managed-cards/{ref}/unfreeze/", "unfreezeCard", cardholder, false, transition(cardrail.CardActive)},
		{"POST", "/managed-cards/{ref}/terminate/", "terminateCard", cardholder, false, transition(cardrail.CardTerminated)},
		{"GET", "/managed-cards/{ref}/details/", "revealCardDetails", cardholder, true, revealDetails},
		{"GET", "/managed-cards/{ref}/transactions/", "listCardTransactions", cardholder, false, listCardTransactions},
		{"POST", "/managed-cards/{ref}/fund/", "fundCard", cardholder, false, fundCard},
		{"POST", "/managed-cards/{ref}/withdraw/", "withdrawFromCard", cardholder, false, withdrawFromCard},
		{"POST", "/managed-cards/{ref}/authorize/", "authorizeCard", cardholder, false, authorizeCard},

		{"GET", "/wallets/", "listWallets", cardholder, false, listWallets},
		{"POST", "/sandbox/wallets/deposit/", "sandboxDeposit", cardholder, false, sandboxDeposit},

		{"GET", "/authorizations/", "listAuthorizations", cardholder, false, listAuthorizations},
		{"GET", "/authorizations/{ref}/", "getAuthorization", cardholder, false, getAuthorization},
		{"POST", "/authorizations/{ref}/settle/", "settleAuthorization", cardholder, false, networkEvent(settle, false)},
		{"POST", "/authorizations/{ref}/reverse/", "reverseAuthorization", cardholder, false, networkEvent(reverse, false)},
		{"POST", "/authorizations/{ref}/refund/", "refundAuthorization", cardholder, false, networkEvent(refund, false)},
		{"POST", "/sandbox/authorizations/{ref}/expire/", "sandboxExpireAuthorization", cardholder, false, sandboxExpire},
	}
}
