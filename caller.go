package cardrail

import "slices"

// RoleOps is the role claim that grants the operator API.
const RoleOps = "ops"

// KYCVerified is the value of the kyc claim for a verified cardholder.
const KYCVerified = "verified"

// Caller is the authenticated party behind a request, taken from a verified
// token. Livemode is decided by the key that verified the token, never by a
// claim: sandbox keys give false, production keys true.
type Caller struct {
	Subject  string
	Country  string
	KYC      string
	Roles    []string
	Livemode bool
}

// ModeName names a mode as operators read it: "sandbox" or "production".
func ModeName(livemode bool) string {
	if livemode {
		return "production"
	}
	return "sandbox"
}

// IsOperator reports whether the caller may use the operator API.
func (c Caller) IsOperator() bool { return slices.Contains(c.Roles, RoleOps) }

// Verified reports whether the token says the caller passed verification.
func (c Caller) Verified() bool { return c.KYC == KYCVerified }
