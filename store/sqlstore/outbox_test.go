package sqlstore_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/internal/testdb"
	"github.com/cardrail/cardrail/store/postgres"
	"github.com/cardrail/cardrail/store/sqlstore"
	"github.com/cardrail/cardrail/webhook"
)

// TestOutboxGapFilledWhileRead: an event whose transaction commits just
// after the dispatcher read the outbox, while that gap is old enough to be
// judged, must be taken on a later read, not skipped as rolled back. (The
// review found two of thirteen events lost this way when the xmin that
// judges gaps was read after the events.)
func TestOutboxGapFilledWhileRead(t *testing.T) {
	ctx := context.Background()
	dbURL := testdb.URL(t, "postgres")
	st, err := postgres.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	event := func(object string) *cardrail.Event {
		e, err := cardrail.NewEvent(cardrail.EventCardUpdated, false, object, map[string]string{"object": "card"}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return &e
	}
	quick := event("card_quick")

	// The slow transaction takes the first sequence number and holds it.
	// It runs on a connection of its own: the store's transactions send
	// their writes at commit.
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	slow, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Rollback(ctx)
	if _, err := slow.Exec(ctx, `INSERT INTO events (id, type, livemode, object_ref, payload, created_at)
		VALUES ('evt_slow', 'card.updated', false, 'card_slow', '{}', 0)`); err != nil {
		t.Fatal(err)
	}
	if err := st.Tx(ctx, func(tx cardrail.Tx) error { return tx.InsertEvents(ctx, []*cardrail.Event{quick}) }); err != nil {
		t.Fatal(err)
	}
	var taken []string
	take := func() {
		t.Helper()
		if err := st.WebhookTx(ctx, func(tx webhook.Tx) error {
			evs, err := tx.TakeEvents(ctx, 100)
			for _, e := range evs {
				taken = append(taken, e.ObjectRef)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	take() // stops at the gap and notes who may fill it
	if len(taken) != 0 {
		t.Fatalf("took %v past a gap a running transaction holds", taken)
	}
	time.Sleep(1200 * time.Millisecond) // past the gap's grace
	// The slow transaction commits between the read and the judgement.
	restore := sqlstore.SetAfterOutboxRead(func() {
		if err := slow.Commit(ctx); err != nil {
			t.Error(err)
		}
	})
	take()
	restore()
	take()
	if want := []string{"card_slow", "card_quick"}; !slices.Equal(taken, want) {
		t.Fatalf("took %v, want %v", taken, want)
	}
}
