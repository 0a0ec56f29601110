package storetest

import (
	"testing"
	"time"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/store/sqlstore"
)

var idempotencyContracts = []contract{
	{"a new key starts and a second holder waits or is refused", testIdempotencyBegin},
	{"a completed key replays its response byte for byte", testIdempotencyReplay},
	{"a released key starts afresh", testIdempotencyRelease},
	{"a stale key that applied nothing is taken over", testIdempotencyTakeOver},
	{"a key whose effect committed is never taken over", testIdempotencyApplied},
	{"a holder whose key was taken over applies, stores and releases nothing", testIdempotencyFenced},
	{"a reserved reference outlives a release and a takeover, for the same request only", testIdempotencyReserved},
	{"a key expires after 24 hours", testIdempotencyExpiry},
	{"purge deletes keys created before the cutoff", testIdempotencyPurge},
	{"keys are scoped per caller", testIdempotencyScope},
}

var outcomeNames = map[cardrail.IdempotencyOutcome]string{
	cardrail.IdempotencyStarted:      "Started",
	cardrail.IdempotencyReplay:       "Replay",
	cardrail.IdempotencyInProgress:   "InProgress",
	cardrail.IdempotencyReused:       "Reused",
	cardrail.IdempotencyResponseLost: "ResponseLost",
}

// begin calls BeginIdempotent through the interface and checks the outcome.
func begin(t *testing.T, s cardrail.IdempotencyStore, scope, key, fingerprint string, at time.Time, want cardrail.IdempotencyOutcome) cardrail.IdempotencyRecord {
	t.Helper()
	rec, err := s.BeginIdempotent(t.Context(), scope, key, fingerprint, at)
	if err != nil {
		t.Fatalf("BeginIdempotent(%s, %s) at %s: %v", scope, key, at.Format(time.RFC3339), err)
	}
	if rec.Outcome != want {
		t.Errorf("BeginIdempotent(%s, %s, %s) at +%s = %s, want %s", scope, key, fingerprint, at.Sub(base),
			outcomeNames[rec.Outcome], outcomeNames[want])
	}
	return rec
}

func testIdempotencyBegin(t *testing.T, s *sqlstore.Store) {
	for _, step := range []struct {
		fingerprint string
		at          time.Duration
		want        cardrail.IdempotencyOutcome
	}{
		{"fp-create", 0, cardrail.IdempotencyStarted},
		{"fp-create", time.Second, cardrail.IdempotencyInProgress},
		{"fp-other", 2 * time.Second, cardrail.IdempotencyReused},
		{"fp-create", time.Minute, cardrail.IdempotencyInProgress},
	} {
		begin(t, s, "alice", "k1", step.fingerprint, base.Add(step.at), step.want)
	}
}

func testIdempotencyReplay(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	body := []byte("{\"reference\":\"card_1\"}\n\x00\xff\xfe")
	rec := begin(t, s, "alice", "k1", "fp", base, cardrail.IdempotencyStarted)
	if err := s.CompleteIdempotent(ctx, "alice", "k1", rec.Token, 201, "application/json", body); err != nil {
		t.Fatalf("CompleteIdempotent: %v", err)
	}
	// Long after the stale threshold a completed key still replays.
	for _, at := range []time.Duration{time.Second, time.Hour} {
		got := begin(t, s, "alice", "k1", "fp", base.Add(at), cardrail.IdempotencyReplay)
		equal(t, "replayed record", got, cardrail.IdempotencyRecord{Outcome: cardrail.IdempotencyReplay,
			Status: 201, ContentType: "application/json", Body: body})
	}
	begin(t, s, "alice", "k1", "fp-other", base.Add(time.Minute), cardrail.IdempotencyReused)

	// A completed key is not released: the stored response stays.
	if err := s.ReleaseIdempotent(ctx, "alice", "k1", rec.Token); err != nil {
		t.Fatalf("ReleaseIdempotent: %v", err)
	}
	begin(t, s, "alice", "k1", "fp", base.Add(2*time.Hour), cardrail.IdempotencyReplay)
}

func testIdempotencyRelease(t *testing.T, s *sqlstore.Store) {
	rec := begin(t, s, "alice", "k1", "fp", base, cardrail.IdempotencyStarted)
	if err := s.ReleaseIdempotent(t.Context(), "alice", "k1", rec.Token); err != nil {
		t.Fatalf("ReleaseIdempotent: %v", err)
	}
	begin(t, s, "alice", "k1", "fp", base.Add(time.Second), cardrail.IdempotencyStarted)
	begin(t, s, "alice", "k1", "fp", base.Add(2*time.Second), cardrail.IdempotencyInProgress)
}

func testIdempotencyTakeOver(t *testing.T, s *sqlstore.Store) {
	for _, step := range []struct {
		at   time.Duration
		want cardrail.IdempotencyOutcome
	}{
		{0, cardrail.IdempotencyStarted},
		{time.Minute, cardrail.IdempotencyInProgress},
		{3 * time.Minute, cardrail.IdempotencyStarted}, // the holder died: take over
		// The new holder's two minutes start when it took over.
		{4 * time.Minute, cardrail.IdempotencyInProgress},
		{6 * time.Minute, cardrail.IdempotencyStarted},
	} {
		begin(t, s, "alice", "k1", "fp", base.Add(step.at), step.want)
	}
}

func testIdempotencyApplied(t *testing.T, s *sqlstore.Store) {
	for _, tc := range []struct {
		name   string
		commit bool
		want   cardrail.IdempotencyOutcome
	}{
		{"committed", true, cardrail.IdempotencyResponseLost},
		{"rolled back", false, cardrail.IdempotencyStarted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "k-" + tc.name
			rec := begin(t, s, "alice", key, "fp", base, cardrail.IdempotencyStarted)
			ctx := cardrail.WithIdempotencyMark(t.Context(), cardrail.IdempotencyMark{Scope: "alice", Key: key, Token: rec.Token})
			err := s.Tx(ctx, func(tx cardrail.Tx) error {
				if err := tx.SetSetting(ctx, "effect-"+key, "done"); err != nil {
					return err
				}
				if !tc.commit {
					return errAbort
				}
				return nil
			})
			if tc.commit && err != nil {
				t.Fatalf("Tx: %v", err)
			}
			begin(t, s, "alice", key, "fp", base.Add(3*time.Minute), tc.want)
			if !tc.commit {
				return
			}
			begin(t, s, "alice", key, "fp", base.Add(23*time.Hour), cardrail.IdempotencyResponseLost)
			// Releasing must not forget an effect that committed either.
			if err := s.ReleaseIdempotent(t.Context(), "alice", key, rec.Token); err != nil {
				t.Fatalf("ReleaseIdempotent: %v", err)
			}
			begin(t, s, "alice", key, "fp", base.Add(23*time.Hour), cardrail.IdempotencyResponseLost)
		})
	}
}

// testIdempotencyFenced: a holder that outlived the stale threshold (a
// request stuck on a lock, a paused process) and had its key taken over
// must not apply its effect beside the new holder's, nor store or release
// over it.
func testIdempotencyFenced(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	stalled := begin(t, s, "alice", "k1", "fp", base, cardrail.IdempotencyStarted)
	taker := begin(t, s, "alice", "k1", "fp", base.Add(3*time.Minute), cardrail.IdempotencyStarted)
	if stalled.Token == taker.Token {
		t.Fatalf("both holders got token %d", taker.Token)
	}
	late := cardrail.WithIdempotencyMark(ctx, cardrail.IdempotencyMark{Scope: "alice", Key: "k1", Token: stalled.Token})
	if err := s.Tx(late, func(tx cardrail.Tx) error { return tx.SetSetting(late, "effect-stalled", "done") }); err == nil {
		t.Fatal("the stalled holder's effect committed after its key was taken over")
	}
	if _, err := s.Setting(ctx, "effect-stalled"); err == nil {
		t.Fatal("the stalled holder's effect is in the database")
	}
	if err := s.CompleteIdempotent(ctx, "alice", "k1", stalled.Token, 500, "application/json", []byte(`{}`)); err != nil {
		t.Fatalf("CompleteIdempotent: %v", err)
	}
	if err := s.ReleaseIdempotent(ctx, "alice", "k1", stalled.Token); err != nil {
		t.Fatalf("ReleaseIdempotent: %v", err)
	}
	// The key is still the taker's, running.
	begin(t, s, "alice", "k1", "fp", base.Add(4*time.Minute), cardrail.IdempotencyInProgress)
	mine := cardrail.WithIdempotencyMark(ctx, cardrail.IdempotencyMark{Scope: "alice", Key: "k1", Token: taker.Token})
	if err := s.Tx(mine, func(tx cardrail.Tx) error { return tx.SetSetting(mine, "effect-taker", "done") }); err != nil {
		t.Fatalf("the taker's effect: %v", err)
	}
	if err := s.CompleteIdempotent(ctx, "alice", "k1", taker.Token, 201, "application/json", []byte(`{"ok":true}`)); err != nil {
		t.Fatalf("CompleteIdempotent: %v", err)
	}
	got := begin(t, s, "alice", "k1", "fp", base.Add(5*time.Minute), cardrail.IdempotencyReplay)
	if got.Status != 201 || string(got.Body) != `{"ok":true}` {
		t.Fatalf("replayed %d %s", got.Status, got.Body)
	}
}

// testIdempotencyReserved: a request that reserved the reference of the
// object it creates (before calling the partner keyed by it) and then
// failed or died hands that reference to the next run of the same
// request, so the partner is asked with the same key again.
func testIdempotencyReserved(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	reserved := func(rec cardrail.IdempotencyRecord, want string) {
		t.Helper()
		if rec.Reserved != want {
			t.Fatalf("Reserved = %q, want %q", rec.Reserved, want)
		}
	}
	first := begin(t, s, "alice", "k1", "fp", base, cardrail.IdempotencyStarted)
	reserved(first, "")
	if err := s.ReserveIdempotent(ctx, "alice", "k1", first.Token+1, "card_stranger"); cardrail.ErrorCode(err) != cardrail.CodeIdempotencyInProgress {
		t.Fatalf("a stranger's reservation: %v", err)
	}
	if err := s.ReserveIdempotent(ctx, "alice", "k1", first.Token, "card_r1"); err != nil {
		t.Fatalf("ReserveIdempotent: %v", err)
	}

	// The request answered 5xx: released, but the retry gets the reference.
	if err := s.ReleaseIdempotent(ctx, "alice", "k1", first.Token); err != nil {
		t.Fatalf("ReleaseIdempotent: %v", err)
	}
	second := begin(t, s, "alice", "k1", "fp", base.Add(time.Second), cardrail.IdempotencyStarted)
	reserved(second, "card_r1")
	begin(t, s, "alice", "k1", "fp", base.Add(2*time.Second), cardrail.IdempotencyInProgress)
	if err := s.ReleaseIdempotent(ctx, "alice", "k1", first.Token); err != nil {
		t.Fatalf("ReleaseIdempotent: %v", err)
	}
	begin(t, s, "alice", "k1", "fp", base.Add(3*time.Second), cardrail.IdempotencyInProgress)

	// Its holder died: the takeover gets the reference too.
	third := begin(t, s, "alice", "k1", "fp", base.Add(3*time.Minute), cardrail.IdempotencyStarted)
	reserved(third, "card_r1")

	// A different request under a released key is a new one, with nothing
	// reserved; the original request is then the different one.
	if err := s.ReleaseIdempotent(ctx, "alice", "k1", third.Token); err != nil {
		t.Fatalf("ReleaseIdempotent: %v", err)
	}
	other := begin(t, s, "alice", "k1", "fp-other", base.Add(4*time.Minute), cardrail.IdempotencyStarted)
	reserved(other, "")
	begin(t, s, "alice", "k1", "fp", base.Add(4*time.Minute+time.Second), cardrail.IdempotencyReused)
	if err := s.ReleaseIdempotent(ctx, "alice", "k1", other.Token); err != nil {
		t.Fatalf("ReleaseIdempotent: %v", err)
	}
	// With nothing reserved, the release forgot the key altogether.
	reserved(begin(t, s, "alice", "k1", "fp", base.Add(5*time.Minute), cardrail.IdempotencyStarted), "")

	// A reservation whose effect then committed is an effect like any
	// other: never run again, and the 409 names what it created.
	rec := begin(t, s, "alice", "k2", "fp", base, cardrail.IdempotencyStarted)
	if err := s.ReserveIdempotent(ctx, "alice", "k2", rec.Token, "card_r2"); err != nil {
		t.Fatalf("ReserveIdempotent: %v", err)
	}
	mark := cardrail.WithIdempotencyMark(ctx, cardrail.IdempotencyMark{Scope: "alice", Key: "k2", Token: rec.Token, Created: "card_r2"})
	if err := s.Tx(mark, func(tx cardrail.Tx) error { return tx.SetSetting(mark, "effect-k2", "done") }); err != nil {
		t.Fatalf("Tx: %v", err)
	}
	if err := s.ReleaseIdempotent(ctx, "alice", "k2", rec.Token); err != nil {
		t.Fatalf("ReleaseIdempotent: %v", err)
	}
	if got := begin(t, s, "alice", "k2", "fp", base.Add(3*time.Minute), cardrail.IdempotencyResponseLost); got.Created != "card_r2" {
		t.Fatalf("Created = %q", got.Created)
	}
	if err := s.ReserveIdempotent(ctx, "alice", "k2", rec.Token, "card_r3"); cardrail.ErrorCode(err) != cardrail.CodeIdempotencyInProgress {
		t.Fatalf("reserving on an applied key: %v", err)
	}

	// A released reservation expires with its key.
	rec = begin(t, s, "alice", "k3", "fp", base, cardrail.IdempotencyStarted)
	if err := s.ReserveIdempotent(ctx, "alice", "k3", rec.Token, "card_r4"); err != nil {
		t.Fatalf("ReserveIdempotent: %v", err)
	}
	if err := s.ReleaseIdempotent(ctx, "alice", "k3", rec.Token); err != nil {
		t.Fatalf("ReleaseIdempotent: %v", err)
	}
	reserved(begin(t, s, "alice", "k3", "fp", base.Add(25*time.Hour), cardrail.IdempotencyStarted), "")
}

func testIdempotencyExpiry(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	done := begin(t, s, "alice", "done", "fp", base, cardrail.IdempotencyStarted)
	if err := s.CompleteIdempotent(ctx, "alice", "done", done.Token, 200, "application/json", []byte(`{}`)); err != nil {
		t.Fatalf("CompleteIdempotent: %v", err)
	}
	running := begin(t, s, "alice", "running", "fp", base, cardrail.IdempotencyStarted)
	mark := cardrail.WithIdempotencyMark(ctx, cardrail.IdempotencyMark{Scope: "alice", Key: "running", Token: running.Token})
	inTx(t, s, func(tx cardrail.Tx) error { return tx.SetSetting(mark, "effect", "done") })

	day := 24*time.Hour + time.Second
	for _, step := range []struct {
		key, fingerprint string
		at               time.Duration
		want             cardrail.IdempotencyOutcome
	}{
		{"done", "fp", 24*time.Hour - time.Second, cardrail.IdempotencyReplay},
		{"done", "fp", day, cardrail.IdempotencyStarted},
		{"done", "fp", day + time.Second, cardrail.IdempotencyInProgress},
		{"running", "fp-new", day, cardrail.IdempotencyStarted},
	} {
		begin(t, s, "alice", step.key, step.fingerprint, base.Add(step.at), step.want)
	}
}

func testIdempotencyPurge(t *testing.T, s *sqlstore.Store) {
	begin(t, s, "alice", "old", "fp", base, cardrail.IdempotencyStarted)
	begin(t, s, "bob", "old", "fp", base.Add(time.Minute), cardrail.IdempotencyStarted)
	begin(t, s, "alice", "new", "fp", base.Add(time.Hour), cardrail.IdempotencyStarted)

	n, err := s.PurgeIdempotent(t.Context(), base.Add(30*time.Minute))
	if err != nil {
		t.Fatalf("PurgeIdempotent: %v", err)
	}
	if n != 2 {
		t.Errorf("PurgeIdempotent deleted %d keys, want the 2 created before the cutoff", n)
	}
	at := base.Add(31 * time.Minute)
	begin(t, s, "alice", "old", "fp", at, cardrail.IdempotencyStarted)
	begin(t, s, "bob", "old", "fp", at, cardrail.IdempotencyStarted)
	begin(t, s, "alice", "new", "fp", at.Add(30*time.Minute), cardrail.IdempotencyInProgress)
}

func testIdempotencyScope(t *testing.T, s *sqlstore.Store) {
	begin(t, s, "alice", "k1", "fp-alice", base, cardrail.IdempotencyStarted)
	begin(t, s, "bob", "k1", "fp-bob", base, cardrail.IdempotencyStarted)
	begin(t, s, "alice", "k1", "fp-alice", base.Add(time.Second), cardrail.IdempotencyInProgress)
}
