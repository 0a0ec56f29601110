package cardrail

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// ValidText reports whether s is valid UTF-8 free of control characters:
// what an identifier, a token's subject or a filter value may hold.
// PostgreSQL refuses NUL and invalid UTF-8 in text, so text that reaches
// the database through a path, a query or a token is checked with this
// first; SQLite would store what PostgreSQL refuses.
func ValidText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl)
}
