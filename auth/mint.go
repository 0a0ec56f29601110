package auth

import (
	"errors"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cardrail/cardrail"
)

// DefaultSandboxTTL is the lifetime of a minted sandbox token when the
// request does not say: long enough for a working session, short enough that
// a token pasted somewhere stops working the same day.
const DefaultSandboxTTL = time.Hour

// TokenRequest describes a sandbox token to mint for local development.
type TokenRequest struct {
	Subject string
	Country string // ISO 3166-1 alpha-2 in upper case, or "" for none
	KYC     string
	Roles   []string
	TTL     time.Duration // zero means DefaultSandboxTTL
	// Issuer and Audience set iss and aud, for servers configured to
	// require them; empty leaves the claim out.
	Issuer, Audience string
}

// sandboxClaims is the claim set of a minted token. Private claims are
// omitted when empty so that the token reads like one a real identity
// provider would issue.
type sandboxClaims struct {
	jwt.RegisteredClaims
	Country string   `json:"country,omitempty"`
	KYC     string   `json:"kyc,omitempty"`
	Roles   []string `json:"roles,omitempty"`
}

// MintSandbox signs a sandbox token with HS256 and the sandbox secret. Only
// sandbox tokens can be minted: the secret verifies nothing but sandbox
// callers, whatever the token claims. The request is checked against the
// same subject and country rules Verify applies, so a minted token is never
// one the server would refuse; a bad request returns a validation
// *cardrail.Error naming the field.
func MintSandbox(secret []byte, req TokenRequest, now time.Time) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("auth: mint sandbox token: no sandbox secret")
	}
	if err := checkSubject(req.Subject); err != nil {
		return "", cardrail.Invalid(cardrail.FieldError{Field: "subject", Message: "must be 1 to 255 characters of UTF-8"})
	}
	if req.Country != "" {
		if err := checkCountry(req.Country); err != nil {
			return "", cardrail.Invalid(cardrail.FieldError{Field: "country", Message: "must be a two-letter ISO 3166-1 code in upper case"})
		}
	}
	ttl := req.TTL
	switch {
	case ttl == 0:
		ttl = DefaultSandboxTTL
	case ttl < 0:
		return "", cardrail.Invalid(cardrail.FieldError{Field: "ttl", Message: "must be positive"})
	}

	claims := sandboxClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   req.Subject,
			Issuer:    req.Issuer,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Country: req.Country,
		KYC:     req.KYC,
		Roles:   req.Roles,
	}
	if req.Audience != "" {
		claims.Audience = jwt.ClaimStrings{req.Audience}
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		return "", cardrail.WithOp("auth.MintSandbox", err)
	}
	return signed, nil
}
