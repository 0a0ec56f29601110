package sqlite

import (
	"strconv"
	"testing"
)

func TestAnonymous(t *testing.T) {
	for in, want := range map[string]string{
		`INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)`:       `INSERT INTO t (a, b) VALUES (?, ?), (?, ?)`,
		`SELECT * FROM t WHERE a = $1 AND b IN ($2, $3, $10)`:  `SELECT * FROM t WHERE a = $1 AND b IN ($2, $3, $10)`, // $10 out of order
		`SELECT '$2', "x$y", a FROM t WHERE a = $1 AND b = $2`: `SELECT '$2', "x$y", a FROM t WHERE a = ? AND b = ?`,
		`SELECT 'it''s', a FROM t WHERE a = $1`:                `SELECT 'it''s', a FROM t WHERE a = ?`,
		`UPDATE t SET a = $1 WHERE b = $1`:                     `UPDATE t SET a = $1 WHERE b = $1`, // a parameter used twice
		`UPDATE t SET a = $2 WHERE b = $1`:                     `UPDATE t SET a = $2 WHERE b = $1`,
		`SELECT a FROM t WHERE a = ? AND b = $1`:               `SELECT a FROM t WHERE a = ? AND b = $1`,
		`SELECT a FROM t -- $1` + "\n" + `WHERE a = $1`:        `SELECT a FROM t -- $1` + "\n" + `WHERE a = $1`,
		`SELECT 1`:                `SELECT 1`,
		`SELECT a - $1 FROM t`:    `SELECT a - ? FROM t`,
		`SELECT 'unterminated $1`: `SELECT 'unterminated $1`,
	} {
		if got := anonymous(in); got != want {
			t.Errorf("anonymous(%q) = %q, want %q", in, got, want)
		}
	}
	// Multi-digit numbers, in order.
	in, want := "", ""
	for i := 1; i <= 12; i++ {
		in += " $" + strconv.Itoa(i)
		want += " ?"
	}
	if got := anonymous(in); got != want {
		t.Errorf("anonymous(%q) = %q", in, got)
	}
}
