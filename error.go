package cardrail

import (
	"errors"
	"fmt"
)

// Code is a stable, snake_case machine code carried by every error a client
// can see. Clients switch on it; the HTTP layer maps it to a status in one
// table (api/problem.go).
type Code string

// The error codes. Adding one means adding it to the status table in api.
const (
	CodeInternal         Code = "internal_error"
	CodeMalformedRequest Code = "malformed_request"
	CodeValidation       Code = "validation_failed"
	CodeUnauthenticated  Code = "unauthenticated"
	CodeForbidden        Code = "forbidden"
	CodeNotFound         Code = "not_found"
	CodeMethodNotAllowed Code = "method_not_allowed"
	CodeRateLimited      Code = "rate_limited"
	CodeBodyTooLarge     Code = "request_too_large"
	CodeUnsupportedMedia Code = "unsupported_media_type"

	CodeVerificationRequired Code = "verification_required"
	CodeCountryNotActivated  Code = "country_not_activated"
	CodeProviderUnsupported  Code = "provider_unsupported"
	CodeProviderUnavailable  Code = "provider_unavailable"
	CodeSandboxOnly          Code = "sandbox_only"

	CodeInvalidCardState          Code = "invalid_card_state"
	CodeInvalidAuthorizationState Code = "invalid_authorization_state"
	CodeInvalidDisputeState       Code = "invalid_dispute_state"
	CodeDisputeAlreadyOpen        Code = "dispute_already_open"
	CodeCurrencyMismatch          Code = "currency_mismatch"
	CodeMaxBalanceExceeded        Code = "max_balance_exceeded"
	CodeInsufficientWalletFunds   Code = "insufficient_wallet_funds"
	CodeInsufficientCardFunds     Code = "insufficient_card_funds"
	CodeAmountExceedsRefundable   Code = "amount_exceeds_refundable"
	CodeAmountExceedsDisputable   Code = "amount_exceeds_disputable"
	CodeAmountExceedsHeld         Code = "amount_exceeds_held"
	CodeProgramDisabled           Code = "program_disabled"

	CodeIdempotencyKeyReused    Code = "idempotency_key_reused"
	CodeIdempotencyInProgress   Code = "idempotency_request_in_progress"
	CodeIdempotencyResponseLost Code = "idempotency_response_lost"
	CodeIdempotencyKeyInvalid   Code = "idempotency_key_invalid"
	CodeConflict                Code = "conflict"
	CodeServiceUnavailable      Code = "service_unavailable"
	CodeWebhookURLRefused       Code = "webhook_url_refused"
	CodeUnknownEventType        Code = "unknown_event_type"
	CodeRequestTimeout          Code = "request_timeout"
	CodeOutcomeUnknown          Code = "outcome_unknown"
	// CodeClientClosedRequest: the client closed the connection (or its
	// sending side) before its answer, which is then rarely read. It names
	// the request in logs and metrics (status 499) so that a caller giving
	// up is not counted as a server fault.
	CodeClientClosedRequest Code = "client_closed_request"
)

// ErrOutcomeUnknown marks a failure after a transaction's COMMIT was sent
// and before its answer came back: the database may have committed it or
// not, and nothing in this process can tell which.
var ErrOutcomeUnknown = errors.New("the database did not confirm the commit")

// FieldError names one invalid input field and says what is wrong with it.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is the one error type that crosses package boundaries. Message is safe
// to show to the caller; Err is the internal cause and is never shown. Op names
// the logical operation ("cards.Fund") so that a logged error reads as a cheap
// stack.
type Error struct {
	Code    Code
	Message string
	Fields  []FieldError
	// Reference names an object the caller needs to find: the one a
	// request created, when its response was lost.
	Reference string
	Op        string
	Err       error
}

func (e *Error) Error() string {
	s := string(e.Code)
	if e.Op != "" {
		s = e.Op + ": " + s
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with a caller-safe message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid returns a validation error listing the offending fields.
func Invalid(fields ...FieldError) *Error {
	msg := "The request is invalid."
	if len(fields) == 1 {
		msg = fields[0].Field + ": " + fields[0].Message
	}
	return &Error{Code: CodeValidation, Message: msg, Fields: fields}
}

// NotFound reports that an object does not exist or is not the caller's;
// the two are deliberately indistinguishable.
func NotFound(object, ref string) *Error {
	return &Error{Code: CodeNotFound, Message: fmt.Sprintf("No %s %q.", object, ref)}
}

// ErrorCode returns the code of err, CodeInternal for anything that is not an
// *Error, and "" for nil.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// ErrorMessage returns the caller-safe message of err; anything that is not an
// *Error gets a generic message so that no internal detail leaks.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Message != "" {
		return e.Message
	}
	return "An internal error occurred."
}

// WithOp annotates err with the logical operation, keeping its code.
func WithOp(op string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		c := *e
		if c.Op == "" {
			c.Op = op
		} else {
			c.Op = op + ": " + c.Op
		}
		return &c
	}
	return &Error{Code: CodeInternal, Op: op, Err: err}
}
