package cardrail

import (
	"fmt"
	"math"
)

// MaxAmount is the largest amount a request may carry: 10^13 minor units.
const MaxAmount int64 = 10_000_000_000_000

// currencyExponents is ISO 4217's table of minor-unit exponents for the
// currencies Cardrail accepts. A currency missing here is refused with 422.
var currencyExponents = map[string]int{
	"AED": 2, "AUD": 2, "BHD": 3, "BRL": 2, "BWP": 2, "CAD": 2, "CHF": 2, "CLP": 0,
	"CNY": 2, "COP": 2, "CZK": 2, "DKK": 2, "EGP": 2, "ETB": 2, "EUR": 2, "GBP": 2,
	"GHS": 2, "HKD": 2, "HUF": 2, "IDR": 2, "ILS": 2, "INR": 2, "ISK": 0, "JOD": 3,
	"JPY": 0, "KES": 2, "KRW": 0, "KWD": 3, "MAD": 2, "MXN": 2, "MYR": 2, "NGN": 2,
	"NOK": 2, "NZD": 2, "OMR": 3, "PHP": 2, "PKR": 2, "PLN": 2, "QAR": 2, "RWF": 0,
	"SAR": 2, "SEK": 2, "SGD": 2, "THB": 2, "TND": 3, "TRY": 2, "TZS": 2, "UGX": 0,
	"USD": 2, "VND": 0, "XAF": 0, "XOF": 0, "ZAR": 2, "ZMW": 2,
}

// CurrencyExponent returns the ISO 4217 minor-unit exponent of code, and
// whether Cardrail knows the currency.
func CurrencyExponent(code string) (int, bool) {
	e, ok := currencyExponents[code]
	return e, ok
}

// ValidCurrency reports whether code is an uppercase ISO 4217 code Cardrail
// accepts.
func ValidCurrency(code string) bool {
	_, ok := currencyExponents[code]
	return ok
}

// Money is an amount in a currency's minor unit. It owns the arithmetic so
// that every sum is overflow-checked and no two currencies are ever mixed.
type Money struct {
	Amount   int64
	Currency string
}

// Add returns m+o, refusing mixed currencies and int64 overflow.
func (m Money) Add(o Money) (Money, error) {
	if m.Currency != o.Currency {
		return Money{}, fmt.Errorf("add %s to %s: currency mismatch", o.Currency, m.Currency)
	}
	s, ok := AddAmounts(m.Amount, o.Amount)
	if !ok {
		return Money{}, fmt.Errorf("add %d to %d %s: overflow", o.Amount, m.Amount, m.Currency)
	}
	return Money{Amount: s, Currency: m.Currency}, nil
}

// String renders m in major units for logs and messages ("10.50 USD").
func (m Money) String() string {
	exp, ok := currencyExponents[m.Currency]
	if !ok || exp == 0 {
		return fmt.Sprintf("%d %s", m.Amount, m.Currency)
	}
	div := int64(math.Pow10(exp))
	sign, a := "", m.Amount
	if a < 0 {
		sign, a = "-", -a
	}
	return fmt.Sprintf("%s%d.%0*d %s", sign, a/div, exp, a%div, m.Currency)
}

// AddAmounts adds two minor-unit amounts and reports false on overflow.
func AddAmounts(a, b int64) (int64, bool) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return 0, false
	}
	return s, true
}

// AmountRange is what a field error says of an amount that is not one.
var AmountRange = fmt.Sprintf("must be an integer from 1 to %d minor units", MaxAmount)

// ValidAmount reports whether a is an amount a request may carry.
func ValidAmount(a int64) bool { return a > 0 && a <= MaxAmount }
