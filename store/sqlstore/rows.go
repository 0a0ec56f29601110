package sqlstore

import (
	"context"
	"fmt"
	"strings"
)

// A multi-row write is given column by column. On PostgreSQL (Dialect.Arrays)
// each column travels as one array parameter and unnest turns the arrays
// back into rows, so a write is one statement with one text whatever its
// size: the batch's statement count stays fixed, and with it the per-
// statement cost the database pays. Elsewhere the rows are rendered as
// VALUES lists in power-of-two chunks (see chunks).

// column is one column of a multi-row write.
type column struct {
	sqlType string // the array element type on PostgreSQL
	vals    any    // []string, []*string, []int64, []*int64 or []bool
}

func textCol(v []string) column       { return column{"text", v} }
func nullTextCol(v []*string) column  { return column{"text", v} }
func bigintCol(v []int64) column      { return column{"bigint", v} }
func nullBigintCol(v []*int64) column { return column{"bigint", v} }
func boolCol(v []bool) column         { return column{"boolean", v} }
func (c column) len() int             { return lenOf(c.vals) }
func (c column) at(i int) any         { return valueAt(c.vals, i) }
func (c column) array(n int) string   { return fmt.Sprintf("$%d::%s[]", n, c.sqlType) }
func lenOf(v any) int {
	switch v := v.(type) {
	case []string:
		return len(v)
	case []*string:
		return len(v)
	case []int64:
		return len(v)
	case []*int64:
		return len(v)
	case []bool:
		return len(v)
	}
	panic(fmt.Sprintf("sqlstore: unsupported column type %T", v))
}

func valueAt(v any, i int) any {
	switch v := v.(type) {
	case []string:
		return v[i]
	case []*string:
		return v[i]
	case []int64:
		return v[i]
	case []*int64:
		return v[i]
	case []bool:
		return v[i]
	}
	panic(fmt.Sprintf("sqlstore: unsupported column type %T", v))
}

// insertRows queues "head <rows> tail" in the transaction's pipeline, where
// head is "INSERT INTO t (a, b, …)" naming the columns in order and tail is
// anything that follows the rows (an ON CONFLICT clause).
func (q *queries) insertRows(ctx context.Context, head, tail string, cols ...column) error {
	n := cols[0].len()
	if n == 0 {
		return nil
	}
	if q.d.Arrays {
		args := make([]any, len(cols))
		arrays := make([]string, len(cols))
		for i, c := range cols {
			args[i], arrays[i] = c.vals, c.array(i+1)
		}
		return q.deferExec(ctx, head+" SELECT * FROM unnest("+strings.Join(arrays, ", ")+")"+tail, args...)
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return chunks(idx, func(rows []int) error {
		args := make([]any, 0, len(rows)*len(cols))
		for _, r := range rows {
			for _, c := range cols {
				args = append(args, c.at(r))
			}
		}
		return q.deferExec(ctx, head+" VALUES "+values(len(rows), len(cols), 1)+tail, args...)
	})
}
