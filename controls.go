package cardrail

import (
	"fmt"
	"slices"
	"strings"
)

// SpendingControls are a card's own limits, always inside its program's.
// Daily and monthly windows are UTC calendar windows summing amount −
// reversed_amount of approved authorizations by their created_at.
type SpendingControls struct {
	PerAuthorization *int64   `json:"per_authorization"`
	Daily            *int64   `json:"daily"`
	Monthly          *int64   `json:"monthly"`
	AllowedMCCs      []string `json:"allowed_mccs"`
	BlockedMCCs      []string `json:"blocked_mccs"`
	AllowedCountries []string `json:"allowed_countries"`
	BlockedCountries []string `json:"blocked_countries"`
}

// maxControlList bounds each allow or block list.
const maxControlList = 500

// Validate checks the controls on their own and against the program's limits;
// a control looser than the program's is refused rather than silently capped.
// prefix names the field in errors ("spending_controls").
func (c SpendingControls) Validate(prefix string, limits Limits) []FieldError {
	var errs []FieldError
	amount := func(name string, v *int64, ceiling int64) {
		if v == nil {
			return
		}
		field := prefix + "." + name
		switch {
		case !ValidAmount(*v):
			errs = append(errs, FieldError{field, AmountRange})
		case ceiling > 0 && *v > ceiling:
			errs = append(errs, FieldError{field, fmt.Sprintf("must not exceed the program's limit of %d", ceiling)})
		}
	}
	amount("per_authorization", c.PerAuthorization, limits.PerAuthorization)
	amount("daily", c.Daily, limits.Daily)
	amount("monthly", c.Monthly, limits.Monthly)

	list := func(allowName string, allow []string, blockName string, block []string, valid func(string) bool, what string) {
		if allow != nil && block != nil {
			errs = append(errs, FieldError{prefix + "." + allowName, "cannot be set together with " + blockName})
		}
		if allow != nil && len(allow) == 0 {
			errs = append(errs, FieldError{prefix + "." + allowName, "must list at least one entry: an empty allow-list would decline every authorization (leave it out to allow all, or freeze the card)"})
		}
		for name, l := range map[string][]string{allowName: allow, blockName: block} {
			if len(l) > maxControlList {
				errs = append(errs, FieldError{prefix + "." + name, fmt.Sprintf("must have at most %d entries", maxControlList)})
				continue
			}
			seen := make(map[string]int, len(l))
			for i, v := range l {
				field := fmt.Sprintf("%s.%s[%d]", prefix, name, i)
				if !valid(v) {
					errs = append(errs, FieldError{field, "must be " + what})
				} else if first, dup := seen[v]; dup {
					errs = append(errs, FieldError{field, fmt.Sprintf("repeats %q, already entry %d", v, first)})
				} else {
					seen[v] = i
				}
			}
		}
	}
	list("allowed_mccs", c.AllowedMCCs, "blocked_mccs", c.BlockedMCCs, ValidMCC, "a 4-digit merchant category code")
	list("allowed_countries", c.AllowedCountries, "blocked_countries", c.BlockedCountries, ValidCountry, "an ISO 3166-1 alpha-2 country code")
	slices.SortFunc(errs, func(a, b FieldError) int { return strings.Compare(a.Field, b.Field) })
	return errs
}

// Normalized returns the controls in the one form the API shows for each
// meaning: an empty block-list blocks nothing, exactly as one left out, so
// it is stored and shown as left out (null). An empty allow-list is refused
// by Validate, never normalized.
func (c SpendingControls) Normalized() SpendingControls {
	if len(c.BlockedMCCs) == 0 {
		c.BlockedMCCs = nil
	}
	if len(c.BlockedCountries) == 0 {
		c.BlockedCountries = nil
	}
	return c
}

// EffectiveLimits combines a program's limits with a card's controls: the
// tighter of the two wins. Zero means no limit.
func EffectiveLimits(p Limits, c SpendingControls) Limits {
	tighter := func(program int64, card *int64) int64 {
		if card != nil && (program == 0 || *card < program) {
			return *card
		}
		return program
	}
	return Limits{
		MaxBalance:       p.MaxBalance,
		PerAuthorization: tighter(p.PerAuthorization, c.PerAuthorization),
		Daily:            tighter(p.Daily, c.Daily),
		Monthly:          tighter(p.Monthly, c.Monthly),
	}
}

// ValidMCC reports whether s is a 4-digit merchant category code.
func ValidMCC(s string) bool {
	if len(s) != 4 {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// Countries lists the ISO 3166-1 alpha-2 codes ValidCountry accepts.
func Countries() []string { return strings.Fields(iso3166) }

// ValidCountry reports whether s is an assigned ISO 3166-1 alpha-2 code.
func ValidCountry(s string) bool {
	if len(s) != 2 || s[0] < 'A' || s[0] > 'Z' || s[1] < 'A' || s[1] > 'Z' {
		return false
	}
	return strings.Contains(iso3166, " "+s+" ")
}

// iso3166 lists the officially assigned ISO 3166-1 alpha-2 codes.
const iso3166 = " AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ" +
	" CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR" +
	" GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP" +
	" KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT" +
	" MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW" +
	" SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG" +
	" UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW "
