package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/cardrail/cardrail"
)

const programColumns = `code, name, brand, card_type, currency, markets, limits, status, providers, livemode, created_at`

func scanProgram(r Row) (*cardrail.Program, error) {
	var p cardrail.Program
	var markets, limits, providers string
	var created int64
	if err := r.Scan(&p.Code, &p.Name, &p.Brand, &p.CardType, &p.Currency, &markets, &limits, &p.Status, &providers, &p.Livemode, &created); err != nil {
		return nil, err
	}
	if err := unmarshalAll(markets, &p.Markets, limits, &p.Limits, providers, &p.Providers); err != nil {
		return nil, fmt.Errorf("program %s: %w", p.Code, err)
	}
	p.Object = "program"
	p.CreatedAt = fromMicros(created)
	return &p, nil
}

// Programs implements cardrail.Reader.
func (q *queries) Programs(ctx context.Context, livemode bool) ([]cardrail.Program, error) {
	rows, err := q.q.Query(ctx, `SELECT `+programColumns+` FROM programs WHERE livemode = $1 ORDER BY code`, livemode)
	if err != nil {
		return nil, fmt.Errorf("programs: %w", err)
	}
	return collect(rows, scanProgram)
}

// Program implements cardrail.Reader.
func (q *queries) Program(ctx context.Context, livemode bool, code string) (*cardrail.Program, error) {
	return scanProgram(q.q.QueryRow(ctx, `SELECT `+programColumns+` FROM programs WHERE livemode = $1 AND code = $2`, livemode, code))
}

// ProgramForUpdate implements cardrail.Tx.
func (q *queries) ProgramForUpdate(ctx context.Context, livemode bool, code string) (*cardrail.Program, error) {
	return scanProgram(q.q.QueryRow(ctx, `SELECT `+programColumns+` FROM programs WHERE livemode = $1 AND code = $2`+q.d.ForUpdate, livemode, code))
}

// SaveProgram implements cardrail.Tx: insert or replace by (mode, code).
func (q *queries) SaveProgram(ctx context.Context, p *cardrail.Program) error {
	markets, _ := json.Marshal(nonNil(p.Markets))
	limits, _ := json.Marshal(p.Limits)
	providers, _ := json.Marshal(nonNil(p.Providers))
	now := micros(q.now())
	created := now
	if !p.CreatedAt.IsZero() {
		created = micros(p.CreatedAt)
	}
	_, err := q.q.Exec(ctx, `INSERT INTO programs (`+programColumns+`, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
		ON CONFLICT (livemode, code) DO UPDATE SET name = excluded.name, brand = excluded.brand,
			card_type = excluded.card_type, currency = excluded.currency, markets = excluded.markets,
			limits = excluded.limits, status = excluded.status, providers = excluded.providers,
			updated_at = excluded.updated_at`,
		p.Code, p.Name, p.Brand, p.CardType, p.Currency, string(markets), string(limits), p.Status, string(providers), p.Livemode, created, now)
	if err != nil {
		return fmt.Errorf("save program %s: %w", p.Code, err)
	}
	return nil
}

// ProviderStates implements cardrail.Reader: the routing switch of every
// provider an operator has touched; absent means enabled.
func (q *queries) ProviderStates(ctx context.Context, livemode bool) (map[string]bool, error) {
	rows, err := q.q.Query(ctx, `SELECT name, enabled FROM provider_states WHERE livemode = $1`, livemode)
	if err != nil {
		return nil, fmt.Errorf("provider states: %w", err)
	}
	defer rows.Close()
	m := map[string]bool{}
	for rows.Next() {
		var name string
		var on bool
		if err := rows.Scan(&name, &on); err != nil {
			return nil, err
		}
		m[name] = on
	}
	return m, rows.Err()
}

// SetProviderState implements cardrail.Tx.
func (q *queries) SetProviderState(ctx context.Context, s cardrail.ProviderState) error {
	_, err := q.q.Exec(ctx, `INSERT INTO provider_states (livemode, name, enabled) VALUES ($1, $2, $3)
		ON CONFLICT (livemode, name) DO UPDATE SET enabled = excluded.enabled`, s.Livemode, s.Name, s.Enabled)
	return err
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// unmarshalAll decodes pairs of (json text, destination).
func unmarshalAll(pairs ...any) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if err := json.Unmarshal([]byte(pairs[i].(string)), pairs[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// collect scans every row with scan.
func collect[T any](rows Rows, scan func(Row) (*T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *v)
	}
	return out, rows.Err()
}

// page trims a limit+1 result to a page and sets its cursor.
func page[T any](items []T, limit int, ref func(*T) string) cardrail.Page[T] {
	p := cardrail.Page[T]{Data: nonNil(items)}
	if len(items) > limit {
		p.Data = items[:limit]
		p.HasMore = true
		c := ref(&p.Data[limit-1])
		p.NextCursor = &c
	}
	return p
}

// cursorClause returns the SQL and argument bounding a newest-first list to
// references older than the cursor.
func cursorClause(col string, cursor string, argN int) (string, []any) {
	if cursor == "" {
		return "", nil
	}
	return fmt.Sprintf(" AND %s < $%d", col, argN), []any{cursor}
}

// listQuery builds the WHERE clause of a newest-first list: one condition
// per filter that was given, and the cursor bounding the key column.
type listQuery struct {
	where []string
	args  []any
}

// newList starts a list query with its first condition.
func newList(cond string, v any) *listQuery { return (&listQuery{}).add(cond, v) }

// add appends cond, whose one %d becomes v's placeholder, unless v is an
// empty string (a filter not given).
func (l *listQuery) add(cond string, v any) *listQuery {
	if s, ok := v.(string); ok && s == "" {
		return l
	}
	l.args = append(l.args, v)
	l.where = append(l.where, fmt.Sprintf(cond, len(l.args)))
	return l
}

// also appends a condition that takes no argument.
func (l *listQuery) also(cond string) *listQuery {
	l.where = append(l.where, cond)
	return l
}

// sql returns " WHERE … ORDER BY key DESC LIMIT $n" asking for limit+1
// rows (the extra one tells whether there is more), and its arguments.
func (l *listQuery) sql(key, cursor string, limit int) (string, []any) {
	l.add(key+" < $%d", cursor)
	args := append(l.args, limit+1)
	return " WHERE " + strings.Join(l.where, " AND ") + fmt.Sprintf(" ORDER BY %s DESC LIMIT $%d", key, len(args)), args
}
