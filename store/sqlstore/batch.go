package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/ledger"
)

// maxRows bounds the rows of one multi-row statement, keeping every
// statement well inside both databases' parameter limits.
const maxRows = 256

// Statement shapes are bucketed so that a batch's statements come in a
// handful of texts the databases can keep prepared, instead of one new text
// (one parse and plan) per batch size: multi-row statements are split into
// power-of-two chunks, and IN lists are padded to a power of two by
// repeating their last value, which selects nothing extra.

// pow2Floor is the largest power of two not above n (n ≥ 1).
func pow2Floor(n int) int {
	p := 1
	for p*2 <= n {
		p *= 2
	}
	return p
}

// pow2Ceil is the smallest power of two not below n (n ≥ 1).
func pow2Ceil(n int) int {
	p := 1
	for p < n {
		p *= 2
	}
	return p
}

// padded repeats the last value of vs up to a power-of-two length.
func padded(vs []any) []any {
	for n := pow2Ceil(len(vs)); len(vs) < n; {
		vs = append(vs, vs[len(vs)-1])
	}
	return vs
}

// values renders n rows of width placeholders starting at $start:
// "($1, $2), ($3, $4)".
func values(n, width, start int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for j := range width {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "$%d", start+i*width+j)
		}
		b.WriteByte(')')
	}
	return b.String()
}

// inList renders "$start, …" for n placeholders.
func inList(n, start int) string {
	ph := make([]string, n)
	for i := range ph {
		ph[i] = fmt.Sprintf("$%d", start+i)
	}
	return strings.Join(ph, ", ")
}

// chunks calls fn for consecutive slices of items, each a power of two of
// at most maxRows items.
func chunks[T any](items []T, fn func([]T) error) error {
	for len(items) > 0 {
		n := pow2Floor(min(len(items), maxRows))
		if err := fn(items[:n]); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}

// LockCardsForAuthorization implements cardrail.Tx. The card and its two
// balance rows are locked, and the spend windows live on the card row: when
// the statement has waited for another transaction's lock, PostgreSQL
// re-reads the locked rows as that transaction left them, while rows it
// only joined would still be read as of the statement's start. The program
// is only read, since configuration binds requests that start after it
// commits.
func (q *queries) LockCardsForAuthorization(ctx context.Context, refs []string, day, month string) ([]cardrail.LockedCard, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	var in string
	var args []any
	if q.d.Arrays {
		in, args = "= ANY($1::text[])", []any{refs}
	} else {
		ids := make([]any, len(refs))
		for i, r := range refs {
			ids[i] = r
		}
		ids = padded(ids)
		in, args = "IN ("+inList(len(ids), 1)+")", ids
	}
	lock := ""
	if q.d.ForUpdate != "" {
		lock = q.d.ForUpdate + " OF c, a, h"
	}
	rows, err := q.q.Query(ctx, `SELECT c.reference, c.owner, c.program, c.provider, c.status, c.status_reason, c.type, c.brand,
		c.currency, c.last4, c.exp_month, c.exp_year, c.nickname, c.spending_controls, c.livemode,
		c.created_at, c.updated_at, a.balance, h.balance, p.status, p.limits,
		c.spend_day, c.spend_day_amount, c.spend_month, c.spend_month_amount
		FROM cards c
		JOIN accounts a ON a.id = c.reference || '.available'
		JOIN accounts h ON h.id = c.reference || '.held'
		JOIN programs p ON p.livemode = c.livemode AND p.code = c.program
		WHERE c.reference `+in+` ORDER BY c.reference`+lock, args...)
	if err != nil {
		return nil, fmt.Errorf("lock cards: %w", err)
	}
	defer rows.Close()
	var out []cardrail.LockedCard
	for rows.Next() {
		var c cardrail.Card
		var controls, status, limits, spendDay, spendMonth string
		var spendDayAmount, spendMonthAmount int64
		var created, updated int64
		var lc cardrail.LockedCard
		if err := rows.Scan(&c.Reference, &c.Owner, &c.Program, &c.Provider, &c.Status, &c.StatusReason, &c.Type, &c.Brand,
			&c.Currency, &c.Last4, &c.ExpMonth, &c.ExpYear, &c.Nickname, &controls, &c.Livemode,
			&created, &updated, &c.Balance.Available, &c.Balance.Held, &status, &limits, &spendDay, &spendDayAmount, &spendMonth, &spendMonthAmount); err != nil {
			return nil, err
		}
		var err error
		if c.SpendingControls, err = spendingControls(controls); err != nil {
			return nil, fmt.Errorf("card %s: %w", c.Reference, err)
		}
		if lc.Limits, err = decodedLimits.decode(limits); err != nil {
			return nil, fmt.Errorf("card %s: %w", c.Reference, err)
		}
		if spendDay == day {
			lc.DailyUsed = spendDayAmount
		}
		if spendMonth == month {
			lc.MonthlyUsed = spendMonthAmount
		}
		c.Object = "card"
		c.CreatedAt, c.UpdatedAt = fromMicros(created), fromMicros(updated)
		lc.Card, lc.ProgramEnabled = &c, status == cardrail.ProgramEnabled
		out = append(out, lc)
	}
	return out, rows.Err()
}

// AddSpendMany implements cardrail.Tx: each card's day and month windows
// rise by its delta, restarting a window that is not the current one.
func (q *queries) AddSpendMany(ctx context.Context, day, month string, deltas map[string]int64) error {
	cards := make([]string, 0, len(deltas))
	for c, d := range deltas {
		if d < 0 {
			return fmt.Errorf("add spend %s: negative delta %d", c, d)
		}
		cards = append(cards, c)
	}
	slices.Sort(cards)
	set := func(delta string) string {
		return raiseSpend("spend_day", "spend_day_amount", "$1", delta) + ", " + raiseSpend("spend_month", "spend_month_amount", "$2", delta)
	}
	if q.d.Arrays {
		amounts := make([]int64, len(cards))
		for i, c := range cards {
			amounts[i] = deltas[c]
		}
		return q.deferExec(ctx, `UPDATE cards SET `+set("d.delta")+`
			FROM unnest($3::text[], $4::bigint[]) AS d(card, delta) WHERE cards.reference = d.card`, day, month, cards, amounts)
	}
	for _, c := range cards {
		if err := q.deferExec(ctx, `UPDATE cards SET `+set("$3")+` WHERE reference = $4`, day, month, deltas[c], c); err != nil {
			return err
		}
	}
	return nil
}

// PostBatch implements cardrail.Tx. Balances move first (see
// balanceUpdates). Each account's final balance follows from the balances
// the caller read under lock, or else comes back from the update's
// RETURNING; every line's balance_after is then derived backwards from it,
// so the lines agree with the balances.
func (q *queries) PostBatch(ctx context.Context, entries []ledger.Entry, known map[string]int64) error {
	if len(entries) == 0 {
		return nil
	}
	deltas := map[string]int64{}
	var accounts []string
	meta := map[string]*ledger.Entry{}
	for i := range entries {
		e := &entries[i]
		if err := e.Validate(); err != nil {
			return err
		}
		for _, l := range e.Lines {
			if _, seen := deltas[l.Account]; !seen {
				accounts = append(accounts, l.Account)
				meta[l.Account] = e
			}
			sum, ok := cardrail.AddAmounts(deltas[l.Account], l.Amount)
			if !ok {
				return fmt.Errorf("post batch: overflow on %s", l.Account)
			}
			deltas[l.Account] = sum
		}
	}
	slices.Sort(accounts) // the fixed lock order
	now := micros(q.now())
	for _, a := range accounts {
		if k := ledger.KindOf(a); !k.Floored() {
			e := meta[a]
			if _, err := q.q.Exec(ctx, `INSERT INTO accounts (id, kind, livemode, currency, balance, created_at)
				VALUES ($1, $2, $3, $4, 0, $5) ON CONFLICT (id) DO NOTHING`, a, string(k), e.Livemode, e.Currency, now); err != nil {
				return fmt.Errorf("ensure system account: %w", err)
			}
		}
	}
	final := make(map[string]int64, len(accounts))
	if allKnown(accounts, known) {
		// The starting balances were read under lock in this transaction:
		// the final ones follow, and the update can join the pipeline. A
		// floored account going negative is refused here, and by the CHECK
		// constraint behind it.
		for _, a := range accounts {
			final[a] = known[a] + deltas[a]
			if final[a] < 0 && ledger.KindOf(a).Floored() {
				return &ledger.InsufficientFunds{Account: a}
			}
		}
		for _, st := range q.balanceUpdates(accounts, deltas) {
			if err := q.deferExec(ctx, st.SQL, st.Args...); err != nil {
				return fmt.Errorf("post batch balances: %w", err)
			}
		}
		return q.insertLines(ctx, entries, final)
	}
	var err error
	for _, st := range q.balanceUpdates(accounts, deltas) {
		if err = q.returnBalances(ctx, st, final); err != nil {
			break
		}
	}
	if err != nil {
		if strings.Contains(strings.ToLower(err.Error()), "check") {
			return &ledger.InsufficientFunds{Account: "(batch)"}
		}
		return fmt.Errorf("post batch balances: %w", err)
	}
	for _, a := range accounts {
		if _, ok := final[a]; !ok {
			return fmt.Errorf("post batch: no account %s", a)
		}
		if final[a] < 0 && ledger.KindOf(a).Floored() {
			return &ledger.InsufficientFunds{Account: a}
		}
	}
	return q.insertLines(ctx, entries, final)
}

// balanceUpdates renders the statements that move each account by its
// delta: one over arrays, or one per power-of-two chunk of accounts.
func (q *queries) balanceUpdates(accounts []string, deltas map[string]int64) []Stmt {
	if q.d.Arrays {
		ds := make([]int64, len(accounts))
		for i, a := range accounts {
			ds[i] = deltas[a]
		}
		return []Stmt{{SQL: `UPDATE accounts SET balance = accounts.balance + d.delta
			FROM unnest($1::text[], $2::bigint[]) AS d(account, delta) WHERE accounts.id = d.account`, Args: []any{accounts, ds}}}
	}
	var out []Stmt
	_ = chunks(accounts, func(ids []string) error {
		query, args := balanceUpdate(ids, deltas)
		out = append(out, Stmt{SQL: query, Args: args})
		return nil
	})
	return out
}

// returnBalances runs a balance update and records each account's new
// balance in final.
func (q *queries) returnBalances(ctx context.Context, st Stmt, final map[string]int64) error {
	rows, err := q.q.Query(ctx, st.SQL+` RETURNING id, balance`, st.Args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var bal int64
		if err := rows.Scan(&id, &bal); err != nil {
			return err
		}
		final[id] = bal
	}
	return rows.Err()
}

// balanceUpdate moves each account by its delta in one statement. The
// chunk is already a power of two long (chunks), so the text repeats.
func balanceUpdate(ids []string, deltas map[string]int64) (string, []any) {
	args := make([]any, 0, 3*len(ids))
	var cases strings.Builder
	for i, id := range ids {
		fmt.Fprintf(&cases, " WHEN $%d THEN CAST($%d AS BIGINT)", 2*i+1, 2*i+2)
		args = append(args, id, deltas[id])
	}
	for _, id := range ids {
		args = append(args, id)
	}
	return `UPDATE accounts SET balance = balance + CASE id` + cases.String() + ` END
		WHERE id IN (` + inList(len(ids), 2*len(ids)+1) + `)`, args
}

func allKnown(accounts []string, known map[string]int64) bool {
	for _, a := range accounts {
		if _, ok := known[a]; !ok {
			return false
		}
	}
	return len(accounts) > 0
}

// insertLines writes the entries and their lines; final holds each
// account's balance after all of them, from which each line's
// balance_after is derived backwards. Every account is locked by now, so
// the one stamp that names the entries and lines and dates them comes after
// any other transaction's on the same accounts: an account's lines list in
// the order they were applied, and in created_at order.
func (q *queries) insertLines(ctx context.Context, entries []ledger.Entry, final map[string]int64) error {
	type line struct {
		ref, entry, account string
		amount, after       int64
	}
	prefixes := make([]string, 0, 3*len(entries))
	for i := range entries {
		prefixes = append(prefixes, cardrail.PrefixEntry)
		for range entries[i].Lines {
			prefixes = append(prefixes, cardrail.PrefixTransaction)
		}
	}
	refs, at := cardrail.NewReferencesAt(q.now, prefixes...)
	now := micros(at)
	var lines []line
	for i := range entries {
		entries[i].Reference, refs = refs[0], refs[1:]
		for _, l := range entries[i].Lines {
			lines = append(lines, line{ref: refs[0], entry: entries[i].Reference, account: l.Account, amount: l.Amount})
			refs = refs[1:]
		}
	}
	running := final
	for i := len(lines) - 1; i >= 0; i-- {
		lines[i].after = running[lines[i].account]
		running[lines[i].account] -= lines[i].amount
	}
	n := len(entries)
	erefs, types, currencies := make([]string, n), make([]string, n), make([]string, n)
	modes, created := make([]bool, n), make([]int64, n)
	cards, auths, disputes := make([]*string, n), make([]*string, n), make([]*string, n)
	for i, e := range entries {
		erefs[i], modes[i], types[i], currencies[i], created[i] = e.Reference, e.Livemode, e.Type, e.Currency, now
		cards[i], auths[i], disputes[i] = nullable(e.Card), nullable(e.Authorization), nullable(e.Dispute)
	}
	if err := q.insertRows(ctx, `INSERT INTO journal_entries (reference, livemode, type, currency, card, authorization_ref, dispute, created_at)`, "",
		textCol(erefs), boolCol(modes), textCol(types), textCol(currencies), nullTextCol(cards), nullTextCol(auths), nullTextCol(disputes), bigintCol(created)); err != nil {
		return fmt.Errorf("insert entries: %w", err)
	}
	m := len(lines)
	lrefs, lentries, laccounts := make([]string, m), make([]string, m), make([]string, m)
	amounts, afters, lcreated := make([]int64, m), make([]int64, m), make([]int64, m)
	for i, l := range lines {
		lrefs[i], lentries[i], laccounts[i], amounts[i], afters[i], lcreated[i] = l.ref, l.entry, l.account, l.amount, l.after, now
	}
	if err := q.insertRows(ctx, `INSERT INTO journal_lines (reference, entry, account, amount, balance_after, created_at)`, "",
		textCol(lrefs), textCol(lentries), textCol(laccounts), bigintCol(amounts), bigintCol(afters), bigintCol(lcreated)); err != nil {
		return fmt.Errorf("insert lines: %w", err)
	}
	return nil
}

// InsertAuthorizations implements cardrail.Tx.
func (q *queries) InsertAuthorizations(ctx context.Context, as []*cardrail.Authorization) error {
	n := len(as)
	refs, owners, cards, statuses, currencies, merchants := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	modes := make([]bool, n)
	amounts, held, settled, reversed, refunded := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	reasons, expires := make([]*string, n), make([]*int64, n)
	created, updated := make([]int64, n), make([]int64, n)
	for i, a := range as {
		merchant, err := json.Marshal(a.Merchant)
		if err != nil {
			return err
		}
		if a.ExpiresAt != nil {
			v := micros(*a.ExpiresAt)
			expires[i] = &v
		}
		if a.DeclineReason != nil {
			s := string(*a.DeclineReason)
			reasons[i] = &s
		}
		refs[i], modes[i], owners[i], cards[i], statuses[i] = a.Reference, a.Livemode, a.Owner, a.Card, string(a.Status)
		amounts[i], currencies[i], held[i], settled[i], reversed[i], refunded[i] = a.Amount, a.Currency, a.HeldAmount, a.SettledAmount, a.ReversedAmount, a.RefundedAmount
		merchants[i], created[i], updated[i] = string(merchant), micros(a.CreatedAt), micros(a.UpdatedAt)
	}
	if err := q.insertRows(ctx, `INSERT INTO authorizations (`+authColumns+`)`, "",
		textCol(refs), boolCol(modes), textCol(owners), textCol(cards), textCol(statuses), bigintCol(amounts), textCol(currencies),
		bigintCol(held), bigintCol(settled), bigintCol(reversed), bigintCol(refunded), textCol(merchants), nullTextCol(reasons),
		nullBigintCol(expires), bigintCol(created), bigintCol(updated)); err != nil {
		return fmt.Errorf("insert authorizations: %w", err)
	}
	return nil
}

// InsertEvents implements cardrail.Tx.
func (q *queries) InsertEvents(ctx context.Context, es []*cardrail.Event) error {
	n := len(es)
	ids, types, objects, payloads := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	modes, created := make([]bool, n), make([]int64, n)
	for i, e := range es {
		payload, err := eventText(e)
		if err != nil {
			return err
		}
		ids[i], types[i], modes[i], objects[i], payloads[i], created[i] = e.ID, e.Type, e.Livemode, e.ObjectRef, payload, micros(e.CreatedAt)
	}
	if err := q.insertRows(ctx, `INSERT INTO events (id, type, livemode, object_ref, payload, created_at)`, "",
		textCol(ids), textCol(types), boolCol(modes), textCol(objects), textCol(payloads), bigintCol(created)); err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	return nil
}

// MarkIdempotent implements cardrail.Tx.
func (q *queries) MarkIdempotent(ctx context.Context, marks []cardrail.IdempotencyMark) error {
	var errs []error
	for _, m := range marks {
		if err := q.deferExec(ctx, markApplied, m.Scope, m.Key, nullable(m.Created), m.Token); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
