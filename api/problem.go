package api

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/cardrail/cardrail"
)

// statusByCode is the one table from error code to HTTP status. A code
// missing here is a programming error and answers 500.
var statusByCode = map[cardrail.Code]int{
	cardrail.CodeMalformedRequest: http.StatusBadRequest,
	cardrail.CodeValidation:       http.StatusUnprocessableEntity,
	cardrail.CodeUnauthenticated:  http.StatusUnauthorized,
	cardrail.CodeForbidden:        http.StatusForbidden,
	cardrail.CodeNotFound:         http.StatusNotFound,
	cardrail.CodeMethodNotAllowed: http.StatusMethodNotAllowed,
	cardrail.CodeRateLimited:      http.StatusTooManyRequests,
	cardrail.CodeBodyTooLarge:     http.StatusRequestEntityTooLarge,
	cardrail.CodeUnsupportedMedia: http.StatusUnsupportedMediaType,

	cardrail.CodeVerificationRequired: http.StatusForbidden,
	cardrail.CodeCountryNotActivated:  http.StatusForbidden,
	cardrail.CodeProviderUnsupported:  http.StatusForbidden,
	cardrail.CodeSandboxOnly:          http.StatusForbidden,
	cardrail.CodeProviderUnavailable:  http.StatusServiceUnavailable,
	cardrail.CodeServiceUnavailable:   http.StatusServiceUnavailable,
	cardrail.CodeRequestTimeout:       http.StatusServiceUnavailable,
	cardrail.CodeOutcomeUnknown:       http.StatusServiceUnavailable,

	cardrail.CodeInvalidCardState:          http.StatusConflict,
	cardrail.CodeInvalidAuthorizationState: http.StatusConflict,
	cardrail.CodeInvalidDisputeState:       http.StatusConflict,
	cardrail.CodeDisputeAlreadyOpen:        http.StatusConflict,
	cardrail.CodeProgramDisabled:           http.StatusConflict,
	cardrail.CodeConflict:                  http.StatusConflict,
	cardrail.CodeIdempotencyInProgress:     http.StatusConflict,
	cardrail.CodeIdempotencyResponseLost:   http.StatusConflict,

	cardrail.CodeCurrencyMismatch:        http.StatusUnprocessableEntity,
	cardrail.CodeMaxBalanceExceeded:      http.StatusUnprocessableEntity,
	cardrail.CodeInsufficientWalletFunds: http.StatusUnprocessableEntity,
	cardrail.CodeInsufficientCardFunds:   http.StatusUnprocessableEntity,
	cardrail.CodeAmountExceedsRefundable: http.StatusUnprocessableEntity,
	cardrail.CodeAmountExceedsDisputable: http.StatusUnprocessableEntity,
	cardrail.CodeAmountExceedsHeld:       http.StatusUnprocessableEntity,
	cardrail.CodeIdempotencyKeyReused:    http.StatusUnprocessableEntity,
	cardrail.CodeIdempotencyKeyInvalid:   http.StatusUnprocessableEntity,
	cardrail.CodeWebhookURLRefused:       http.StatusUnprocessableEntity,
	cardrail.CodeUnknownEventType:        http.StatusUnprocessableEntity,

	cardrail.CodeInternal: http.StatusInternalServerError,

	cardrail.CodeClientClosedRequest: StatusClientClosedRequest,
}

// StatusClientClosedRequest is the status logs and metrics record for a
// request whose client closed the connection before its answer (nginx's
// 499; no answer is sent).
const StatusClientClosedRequest = 499

// explain turns an internal failure the caller can act on into a problem
// that says what happened: a commit the database never confirmed, a
// request that ran out of time (ctx is the request's, deadline included),
// or one whose client went away.
// Other errors pass through.
func explain(ctx context.Context, err error, timeout time.Duration) error {
	if cardrail.ErrorCode(err) != cardrail.CodeInternal {
		return err
	}
	if errors.Is(err, cardrail.ErrOutcomeUnknown) {
		return &cardrail.Error{Code: cardrail.CodeOutcomeUnknown, Err: err, Message: "The database stopped answering while this request committed, " +
			"so whether it took effect is unknown. Read the object to see, or retry with the same Idempotency-Key, which runs it at most once."}
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		// The client went away (a request's context ends only with its
		// connection, short of the deadline): no one reads this answer.
		return &cardrail.Error{Code: cardrail.CodeClientClosedRequest, Err: err, Message: "The client closed the request before its answer."}
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &cardrail.Error{Code: cardrail.CodeRequestTimeout, Err: err, Message: fmt.Sprintf(
			"The request did not finish within %s and was rolled back; retry it, with the same Idempotency-Key if it had one.", timeout)}
	}
	return err
}

// Problem is an RFC 9457 problem document with Cardrail's extensions.
type Problem struct {
	Type      string                `json:"type"`
	Title     string                `json:"title"`
	Status    int                   `json:"status"`
	Detail    string                `json:"detail"`
	Code      cardrail.Code         `json:"code"`
	RequestID string                `json:"request_id"`
	Errors    []cardrail.FieldError `json:"errors,omitempty"`
	// Reference is the object the request created, on
	// idempotency_response_lost.
	Reference string `json:"reference,omitempty"`
}

// problemFor renders err for the client. Anything that is not a known client
// error becomes a 500 whose body says nothing internal.
func problemFor(err error, requestID string) Problem {
	code := cardrail.ErrorCode(err)
	status, ok := statusByCode[code]
	if !ok || code == cardrail.CodeInternal {
		code, status = cardrail.CodeInternal, http.StatusInternalServerError
	}
	p := Problem{
		Type:      "https://cardrail.dev/problems/" + string(code),
		Title:     cmp.Or(http.StatusText(status), "Client Closed Request"),
		Status:    status,
		Detail:    cardrail.ErrorMessage(err),
		Code:      code,
		RequestID: requestID,
	}
	if status == http.StatusInternalServerError {
		p.Detail = "An internal error occurred; quote the request id when reporting it."
	}
	var e *cardrail.Error
	if errors.As(err, &e) {
		p.Errors, p.Reference = e.Fields, e.Reference
	}
	return p
}
