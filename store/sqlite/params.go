package sqlite

import (
	"strconv"
	"strings"
)

// anonymous rewrites a statement whose parameters are $1, $2, … $n, each
// once and in that order, to use anonymous ? parameters, and returns any
// other statement unchanged.
//
// The store writes $N for both databases. SQLite keeps numbered and named
// parameters in a list that sqlite3_bind_parameter_name searches from the
// start, and modernc asks for every parameter's name on every execution,
// so binding n numbered parameters walks the list n²/2 times. A batch's
// multi-row INSERT has hundreds of parameters: in the engine benchmark's
// profile that search (sqlite3VListNumToName) was a tenth of the CPU. An
// anonymous parameter has no name to look up and binds by position, which
// is what $1…$n in order mean.
func anonymous(query string) string {
	var b strings.Builder
	next := 1
	for i := 0; i < len(query); i++ {
		switch c := query[i]; c {
		case '\'', '"', '`':
			// A quoted literal or identifier: copied as it is.
			end := strings.IndexByte(query[i+1:], c)
			if end < 0 {
				return query
			}
			b.WriteString(query[i : i+end+2])
			i += end + 1
		case '$':
			j := i + 1
			for j < len(query) && query[j] >= '0' && query[j] <= '9' {
				j++
			}
			n, err := strconv.Atoi(query[i+1 : j])
			if err != nil || n != next {
				return query
			}
			next++
			b.WriteByte('?')
			i = j - 1
		case '?', ':', '@':
			return query // other parameter styles: leave the statement alone
		case '-':
			if strings.HasPrefix(query[i:], "--") {
				return query
			}
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
