package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cardrail/cardrail"
)

// Messages shown to the client. They say what is wrong with the token in
// terms a caller can act on, and nothing about our keys or configuration.
const (
	msgMalformed      = "The token is malformed."
	msgAlgorithm      = "The token's signing algorithm is not accepted."
	msgUnknownKey     = "The token's signing key is not known."
	msgBadSignature   = "The token signature is invalid."
	msgExpired        = "The token has expired."
	msgNoExpiry       = "The token has no expiry time."
	msgNotYetValid    = "The token is not valid yet."
	msgIssuedInFuture = "The token was issued in the future."
	msgIssuer         = "The token issuer is not accepted."
	msgAudience       = "The token audience is not accepted."
	msgInvalidClaims  = "The token's claims are invalid."
	msgDateRange      = "The token's exp, nbf or iat is out of range: a NumericDate is seconds since 1970, at most 253402300799 (the end of year 9999)."
	msgSubject        = "The token has no valid subject."
	msgCountry        = "The token's country must be a two-letter ISO 3166-1 code in upper case."
	msgRoles          = "The token's roles must be an array of strings."
	msgKYC            = "The token's kyc claim must be a string."
)

// unauthenticated is the one error Verify returns.
func unauthenticated(message string, cause error) *cardrail.Error {
	return &cardrail.Error{Code: cardrail.CodeUnauthenticated, Message: message, Op: "auth.Verify", Err: cause}
}

// tokenClaims are the claims of a verified token. The private claims are
// kept raw so that a claim of the wrong JSON type gets its own message
// rather than a generic decoding failure.
type tokenClaims struct {
	jwt.RegisteredClaims
	Country json.RawMessage `json:"country"`
	KYC     json.RawMessage `json:"kyc"`
	Roles   json.RawMessage `json:"roles"`
	// dates is why exp, nbf or iat is not a JSON number, if one is not.
	dates error
}

// caller applies the private-claim rules of SPEC §2 to a token whose
// signature and registered claims have already been checked. A JSON null is
// treated as an absent claim.
func (c *tokenClaims) caller(livemode bool) (cardrail.Caller, error) {
	if c.dates != nil {
		return cardrail.Caller{}, unauthenticated(c.datesMessage(), c.dates)
	}
	if err := checkSubject(c.Subject); err != nil {
		return cardrail.Caller{}, unauthenticated(msgSubject, err)
	}
	var country, kyc *string
	if err := decodeOptional(c.Country, &country); err != nil {
		return cardrail.Caller{}, unauthenticated(msgCountry, fmt.Errorf("country: %w", err))
	}
	if country != nil {
		if err := checkCountry(*country); err != nil {
			return cardrail.Caller{}, unauthenticated(msgCountry, err)
		}
	}
	if err := decodeOptional(c.KYC, &kyc); err != nil {
		return cardrail.Caller{}, unauthenticated(msgKYC, fmt.Errorf("kyc: %w", err))
	}
	var roles []*string
	if err := decodeOptional(c.Roles, &roles); err != nil {
		return cardrail.Caller{}, unauthenticated(msgRoles, fmt.Errorf("roles: %w", err))
	}

	caller := cardrail.Caller{Subject: c.Subject, Livemode: livemode}
	if country != nil {
		caller.Country = *country
	}
	if kyc != nil {
		caller.KYC = *kyc
	}
	for i, r := range roles {
		if r == nil {
			return cardrail.Caller{}, unauthenticated(msgRoles, fmt.Errorf("roles[%d] is null", i))
		}
		caller.Roles = append(caller.Roles, *r)
	}
	return caller, nil
}

// UnmarshalJSON decodes the claims and notes in dates whether exp, nbf and
// iat are JSON numbers (RFC 7519 §2, NumericDate): the JWT library also
// takes a string of digits, which no issuer should send.
func (c *tokenClaims) UnmarshalJSON(b []byte) error {
	type plain tokenClaims // the same fields without this method
	if err := json.Unmarshal(b, (*plain)(c)); err != nil {
		return err
	}
	var dates struct {
		Exp json.RawMessage `json:"exp"`
		Nbf json.RawMessage `json:"nbf"`
		Iat json.RawMessage `json:"iat"`
	}
	if err := json.Unmarshal(b, &dates); err != nil {
		return err
	}
	for name, v := range map[string]json.RawMessage{"exp": dates.Exp, "nbf": dates.Nbf, "iat": dates.Iat} {
		if len(v) == 0 || string(v) == "null" {
			continue
		}
		if v[0] != '-' && (v[0] < '0' || v[0] > '9') {
			c.dates = fmt.Errorf("%s is not a number", name)
			continue
		}
		// Far outside this range the library's conversion to a time
		// wraps around, and a token valid for ever read as long expired.
		if f, err := strconv.ParseFloat(string(v), 64); err != nil || f < 0 || f > maxNumericDate {
			c.dates = fmt.Errorf("%s %s: %w", name, v, errDateRange)
		}
	}
	return nil
}

// maxNumericDate is the last second of year 9999, the latest NumericDate
// a token may carry.
const maxNumericDate = 253402300799

var errDateRange = errors.New("out of range")

// datesMessage is the client's message for a failure recorded in dates.
func (c *tokenClaims) datesMessage() string {
	if errors.Is(c.dates, errDateRange) {
		return msgDateRange
	}
	return msgInvalidClaims
}

// decodeOptional decodes raw into dst unless the claim is absent.
func decodeOptional(raw json.RawMessage, dst any) error {
	if len(raw) == 0 {
		return nil
	}
	return json.Unmarshal(raw, dst)
}

// checkSubject is cardrail.ValidSubject for sub, shared by Verify and
// MintSandbox, saying which part failed.
func checkSubject(sub string) error {
	switch {
	case sub == "":
		return errors.New("sub is missing or empty")
	case !cardrail.ValidText(sub):
		return errors.New("sub is not valid UTF-8 or holds a control character")
	case utf8.RuneCountInString(sub) > cardrail.MaxSubjectLen:
		return fmt.Errorf("sub is longer than %d characters", cardrail.MaxSubjectLen)
	}
	return nil
}

// checkCountry is the rule for country, shared by Verify and MintSandbox:
// an ISO 3166-1 alpha-2 code, which is always two upper-case ASCII letters.
// Whether the code is assigned is left to the program rules that use it.
func checkCountry(country string) error {
	if len(country) != 2 || !isUpper(country[0]) || !isUpper(country[1]) {
		return fmt.Errorf("country %.8q is not two letters A-Z", country)
	}
	return nil
}

func isUpper(b byte) bool { return 'A' <= b && b <= 'Z' }

// parseFailure turns a failure of the JWT parser after the signature
// checked out into the client's message. Several claim failures can arrive
// joined; the order here decides which one the client hears about.
func parseFailure(err error, claims *tokenClaims, issuerRequired bool) error {
	var msg string
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		msg = msgMalformed
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		msg = msgBadSignature
	case claims.dates != nil:
		// The library judged the dates it read; what it read was not
		// the token's.
		msg = claims.datesMessage()
	case errors.Is(err, jwt.ErrTokenExpired):
		msg = msgExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		msg = msgNotYetValid
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		msg = msgIssuedInFuture
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && claims.ExpiresAt == nil:
		msg = msgNoExpiry
	case errors.Is(err, jwt.ErrTokenInvalidIssuer),
		errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && issuerRequired && claims.Issuer == "":
		msg = msgIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience),
		errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		msg = msgAudience
	default:
		msg = msgInvalidClaims
	}
	return unauthenticated(msg, err)
}
