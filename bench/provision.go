package bench

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/ledger"
	"github.com/cardrail/cardrail/store/sqlstore"
)

// ProvisionAPI creates n cards on program through the API and funds each
// with fund from one sandbox deposit, as a user would.
func ProvisionAPI(ctx context.Context, client *http.Client, baseURL, token, program, currency string, n int, fund int64) ([]string, error) {
	call := func(method, path string, body any) (map[string]any, error) {
		return doJSON(ctx, client, baseURL, token, method, path, body)
	}
	if _, err := call("POST", "/sandbox/wallets/deposit/", map[string]any{"amount": fund * int64(n), "currency": currency}); err != nil {
		return nil, err
	}
	cards := make([]string, 0, n)
	for range n {
		c, err := call("POST", "/managed-cards/", map[string]any{"program": program})
		if err != nil {
			return nil, err
		}
		ref, _ := c["reference"].(string)
		if _, err := call("POST", "/managed-cards/"+ref+"/fund/", map[string]any{"amount": fund}); err != nil {
			return nil, err
		}
		cards = append(cards, ref)
	}
	return cards, nil
}

// ProvisionDirect writes n active, funded cards of program straight into
// the database, a chunk per transaction, for runs with up to a million
// cards. Each card gets its two accounts and one balanced funding entry (the
// mode's funding account to the card), so every ledger invariant holds as if
// the cards had been funded through the API.
func ProvisionDirect(ctx context.Context, store *sqlstore.Store, owner string, prog *cardrail.Program, n int, fund int64) ([]string, error) {
	const chunk = 500
	cards := make([]string, 0, n)
	for done := 0; done < n; done += chunk {
		refs, err := provisionChunk(ctx, store, owner, prog, min(chunk, n-done), fund)
		if err != nil {
			return nil, err
		}
		cards = append(cards, refs...)
	}
	// A bulk load leaves PostgreSQL's planner statistics behind and the
	// load's dirty pages unwritten; refresh the one and flush the other, as
	// an operator would after loading, so the measured phases see steady
	// state and not the load's checkpoint.
	//
	// SQLite is not analyzed: the server never does it, and modernc's
	// SQLite is built with STAT4, under which a statement comparing a
	// parameter with an analyzed index is prepared again every time that
	// parameter's value changes. After an ANALYZE that was 7% of the engine
	// benchmark's profile (sqlite3Reprepare under sqlite3_step), a cost the
	// server without statistics does not pay.
	flush := "CHECKPOINT"
	if store.Dialect() == "sqlite" {
		flush = "PRAGMA wal_checkpoint(TRUNCATE)"
	} else if _, err := store.Conn().Exec(ctx, "ANALYZE"); err != nil {
		return nil, fmt.Errorf("analyze after provisioning: %w", err)
	}
	if _, err := store.Conn().Exec(ctx, flush); err != nil {
		return nil, fmt.Errorf("checkpoint after provisioning (needs a superuser on PostgreSQL): %w", err)
	}
	return cards, nil
}

func provisionChunk(ctx context.Context, store *sqlstore.Store, owner string, prog *cardrail.Program, m int, fund int64) (_ []string, err error) {
	funding := ledger.SystemAccount(false, prog.Currency, ledger.Funding)
	now := time.Now().UTC().UnixMicro()
	exp := time.Now().AddDate(3, 0, 0)
	tx, err := store.Conn().Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if _, err = tx.Exec(ctx, `INSERT INTO accounts (id, kind, livemode, currency, balance, created_at)
		VALUES ($1, 'funding', FALSE, $2, 0, $3) ON CONFLICT (id) DO NOTHING`, funding, prog.Currency, now); err != nil {
		return nil, err
	}
	var running int64
	if err = tx.QueryRow(ctx, `UPDATE accounts SET balance = balance WHERE id = $1 RETURNING balance`, funding).Scan(&running); err != nil {
		return nil, err
	}
	refs := make([]string, m)
	var cardRows, acctRows, entryRows, lineRows []string
	var cardArgs, acctArgs, entryArgs, lineArgs []any
	for i := range refs {
		ref := cardrail.NewReference(cardrail.PrefixCard)
		refs[i] = ref
		cardArgs = append(cardArgs, ref)
		cardRows = append(cardRows, fmt.Sprintf("($%d, FALSE, '%s', '%s', 'bench', 'active', 'virtual', '%s', '%s', '0000', %d, %d, '{}', '{}', %d, %d)",
			i+1, owner, prog.Code, prog.Brand, prog.Currency, int(exp.Month()), exp.Year(), now, now))
		avail := ledger.CardAvailableAccount(ref)
		acctArgs = append(acctArgs, avail, ledger.CardHeldAccount(ref))
		acctRows = append(acctRows,
			fmt.Sprintf("($%d, 'card_available', FALSE, '%s', '%s', %d, %d)", 2*i+1, prog.Currency, owner, fund, now),
			fmt.Sprintf("($%d, 'card_held', FALSE, '%s', '%s', 0, %d)", 2*i+2, prog.Currency, owner, now))
		entry := cardrail.NewReference(cardrail.PrefixEntry)
		entryArgs = append(entryArgs, entry, ref)
		entryRows = append(entryRows, fmt.Sprintf("($%d, FALSE, 'card_funding', '%s', $%d, %d)", 2*i+1, prog.Currency, 2*i+2, now))
		running -= fund
		b := 4 * i
		lineArgs = append(lineArgs, cardrail.NewReference(cardrail.PrefixTransaction), entry, avail, cardrail.NewReference(cardrail.PrefixTransaction))
		lineRows = append(lineRows,
			fmt.Sprintf("($%d, $%d, $%d, %d, %d, %d)", b+1, b+2, b+3, fund, fund, now),
			fmt.Sprintf("($%d, $%d, '%s', %d, %d, %d)", b+4, b+2, funding, -fund, running, now))
	}
	stmts := []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO cards (reference, livemode, owner, program, provider, status, type, brand, currency, last4, exp_month, exp_year,
			spending_controls, metadata, created_at, updated_at) VALUES ` + strings.Join(cardRows, ","), cardArgs},
		{`INSERT INTO accounts (id, kind, livemode, currency, owner, balance, created_at) VALUES ` + strings.Join(acctRows, ","), acctArgs},
		{`INSERT INTO journal_entries (reference, livemode, type, currency, card, created_at) VALUES ` + strings.Join(entryRows, ","), entryArgs},
		{`INSERT INTO journal_lines (reference, entry, account, amount, balance_after, created_at) VALUES ` + strings.Join(lineRows, ","), lineArgs},
		{`UPDATE accounts SET balance = $1 WHERE id = $2`, []any{running, funding}},
	}
	for _, st := range stmts {
		if _, err = tx.Exec(ctx, st.sql, st.args...); err != nil {
			return nil, fmt.Errorf("provision cards: %w", err)
		}
	}
	if err = tx.Commit(ctx); err != nil {
		return nil, err
	}
	return refs, nil
}
