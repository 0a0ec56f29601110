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

// MaxSubjectLen is the longest user (a token's sub) accepted, in
// characters.
const MaxSubjectLen = 255

// ValidSubject reports whether s can name a user: 1 to MaxSubjectLen
// characters of ValidText. A token's sub is held to it, and so is a sub an
// operator names, so that no wallet or cardholder is made for a user no
// token can carry.
func ValidSubject(s string) bool {
	return s != "" && ValidText(s) && utf8.RuneCountInString(s) <= MaxSubjectLen
}
