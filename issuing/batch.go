package issuing

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/ledger"
)

// BatchConfig tunes the authorization engine.
type BatchConfig struct {
	// MaxBatch bounds the authorizations one transaction decides (default
	// 256).
	MaxBatch int
	// Executors is how many batches may be in flight at once, each in its
	// own transaction and with its own share of the cards (default 2; the
	// app picks one per core on PostgreSQL). While an executor commits,
	// its queue fills.
	Executors int
	// Linger is how long an executor that found work waits for more before
	// it starts (default 0: take what is queued, so a lone request pays
	// nothing and a burst batches itself behind the commit in flight).
	Linger time.Duration
}

// batchTimeout bounds one batch's transaction short of its commit (which
// is never cut short: see sqlstore's Tx). A batch takes milliseconds; one
// that waits longer is stuck behind a lock something outside the engine
// holds (an operator's psql session, a migration) or on a database in
// trouble. Each executor decides one batch at a time for its share of the
// cards, so the bound is also how long such a lock can stall that share:
// past it the batch is decided again one authorization at a time, and the
// authorizations on the locked card are answered 503 undecided.
const batchTimeout = 3 * time.Second

// authJob is one authorization waiting for a batch.
type authJob struct {
	ctx     context.Context
	caller  cardrail.Caller
	card    string
	attempt cardrail.AuthorizationAttempt
	done    chan authResult
	// ref is the authorization's reference, minted by the first try that
	// reaches its decision (decideBatch's stamp) and kept, so that a
	// retry can tell whether that try committed; at is that stamp's time,
	// the authorization's created_at whichever try records it.
	ref string
	at  time.Time
	// retry is set when the job is decided again after its batch failed;
	// uncertain, when that batch's commit went unconfirmed, so it may
	// stand.
	retry, uncertain bool
}

type authResult struct {
	auth *cardrail.Authorization
	err  error
}

// engine decides authorizations in batches: one transaction, one commit,
// many answers. The decision stays the pure cardrail.Decide; what batching
// changes is only how many decisions share a commit.
type engine struct {
	s   *Service
	cfg BatchConfig
	// One queue per executor, and each card always goes to the same one:
	// two batches in flight never want the same card, so an executor never
	// waits for another's commit to release a card lock. (Another process
	// on the same database may still contend; the database's locks settle
	// that.)
	queues []chan *authJob
	stop   chan struct{}
	wg     sync.WaitGroup

	batches, decided, fallbacks atomic.Int64
	busy                        atomic.Int64 // nanoseconds spent in batch transactions
	// approved and declined count the decisions that committed; declined
	// has one counter per reason, made before the executors start and
	// never added to after, so reading it needs no lock.
	approved atomic.Int64
	declined map[cardrail.DeclineReason]*atomic.Int64
}

// BatchStats are the authorization engine's running totals.
type BatchStats struct {
	Batches   int64         // transactions committed or attempted
	Decided   int64         // authorizations they decided
	Fallbacks int64         // batches retried one authorization at a time
	Busy      time.Duration // time spent inside batch transactions, summed over executors
	// Approved and Declined count the authorizations whose transaction
	// committed, declines by reason (every reason is present, zero or not).
	Approved int64
	Declined map[cardrail.DeclineReason]int64
}

// BatchStats reports the engine's totals since start.
func (s *Service) BatchStats() BatchStats {
	e := s.engine
	st := BatchStats{Batches: e.batches.Load(), Decided: e.decided.Load(), Fallbacks: e.fallbacks.Load(), Busy: time.Duration(e.busy.Load()),
		Approved: e.approved.Load(), Declined: make(map[cardrail.DeclineReason]int64, len(e.declined))}
	for reason, n := range e.declined {
		st.Declined[reason] = n.Load()
	}
	return st
}

func newEngine(s *Service, cfg BatchConfig) *engine {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 256
	}
	if cfg.Executors <= 0 {
		cfg.Executors = 2
	}
	e := &engine{s: s, cfg: cfg, stop: make(chan struct{}), declined: make(map[cardrail.DeclineReason]*atomic.Int64, len(cardrail.DeclineReasons))}
	for _, r := range cardrail.DeclineReasons {
		e.declined[r] = new(atomic.Int64)
	}
	for range cfg.Executors {
		q := make(chan *authJob, 4*cfg.MaxBatch)
		e.queues = append(e.queues, q)
		e.wg.Add(1)
		go e.run(q)
	}
	return e
}

// close stops the executors after the queue drains.
func (e *engine) close() {
	close(e.stop)
	e.wg.Wait()
}

func (e *engine) submit(j *authJob) (*cardrail.Authorization, error) {
	select {
	case e.queues[partition(j.card, len(e.queues))] <- j:
	case <-j.ctx.Done():
		return nil, j.ctx.Err()
	case <-e.stop:
		return nil, cardrail.Errorf(cardrail.CodeServiceUnavailable, "The service is shutting down.")
	}
	// Once queued the job is decided even if the caller leaves, so that the
	// answer is never ambiguous: the effect and its idempotency mark commit
	// together or not at all.
	r := <-j.done
	return r.auth, r.err
}

// partition picks a card's queue (FNV-1a of its reference).
func partition(card string, n int) int {
	h := uint32(2166136261)
	for i := 0; i < len(card); i++ {
		h ^= uint32(card[i])
		h *= 16777619
	}
	return int(h % uint32(n))
}

func (e *engine) run(queue chan *authJob) {
	defer e.wg.Done()
	for {
		var first *authJob
		select {
		case first = <-queue:
		case <-e.stop:
			// Drain what was queued before stopping.
			for {
				select {
				case j := <-queue:
					e.process([]*authJob{j}, time.Now().Add(batchTimeout))
				default:
					return
				}
			}
		}
		batch := []*authJob{first}
		var linger <-chan time.Time
		if e.cfg.Linger > 0 {
			linger = time.After(e.cfg.Linger)
		}
	fill:
		for len(batch) < e.cfg.MaxBatch {
			select {
			case j := <-queue:
				batch = append(batch, j)
			default:
				if linger == nil {
					break fill
				}
				select {
				case j := <-queue:
					batch = append(batch, j)
				case <-linger:
					break fill
				}
			}
		}
		e.process(batch, time.Now().Add(batchTimeout))
	}
}

// process decides a batch in one transaction. If the transaction fails as
// a whole, each job is decided alone, so one failing authorization never
// takes the others with it. A panic (a bug) fails the batch's requests with
// an internal error instead of taking the process down.
func (e *engine) process(batch []*authJob, deadline time.Time) (err error) {
	answered := false
	defer func() {
		if v := recover(); v != nil {
			e.s.log.Error("authorization batch panicked", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if !answered {
				for _, j := range batch {
					select {
					case j.done <- authResult{err: &cardrail.Error{Code: cardrail.CodeInternal, Op: "authorizations.Create", Err: fmt.Errorf("panic: %v", v)}}:
					default: // already answered
					}
				}
			}
		}
	}()
	err = e.decide(batch, deadline)
	answered = true
	return err
}

// decide runs process's work, its transaction bounded by deadline, and
// returns the transaction's error once every job in batch is answered.
func (e *engine) decide(batch []*authJob, deadline time.Time) error {
	live := batch[:0:0]
	for _, j := range batch {
		// A caller who left before its job's first turn is answered with
		// nothing applied. A retry is decided whoever is waiting: its
		// first try may have committed.
		if err := j.ctx.Err(); err != nil && !j.retry {
			j.done <- authResult{err: err}
			continue
		}
		live = append(live, j)
	}
	if len(live) == 0 {
		return nil
	}
	var results []authResult
	start := time.Now()
	// Callers may leave, but a batch's transaction must not hang on a stuck
	// database forever: it is bounded on its own.
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	err := e.s.store.Tx(ctx, func(tx cardrail.Tx) error {
		var err error
		results, err = e.s.decideBatch(ctx, tx, live)
		return err
	})
	e.busy.Add(int64(time.Since(start)))
	e.batches.Add(1)
	if err != nil && ctx.Err() != nil && !errors.Is(err, cardrail.ErrOutcomeUnknown) {
		// Out of time before the commit (which the deadline never cuts
		// short), whatever error the database gave for it (a cancelled
		// statement, an interrupted busy wait): nothing was applied.
		err = fmt.Errorf("%w: %w", errTimedOut, err)
	}
	if err != nil {
		if len(live) > 1 {
			e.fallbacks.Add(1)
			e.s.log.Warn("authorization batch failed; deciding one by one", "size", len(live), "error", err.Error())
			// A failure at commit leaves the outcome unknown: the batch
			// may have committed. Each retry first looks for its own
			// authorization, under the card's lock, which waits for the
			// first try's transaction to end. A card whose authorization
			// ran out of time is locked: its other authorizations here are
			// answered at once rather than each waiting as long again. The
			// one-by-one pass as a whole gets two batches' time, so that a
			// lock on the whole database (SQLite's writer, held from
			// outside) stalls the executor for seconds, not a batch's
			// length times its size. A job skipped so, or whose own retry
			// fails, is told nothing was applied only when the batch
			// surely rolled back.
			uncertain := errors.Is(err, cardrail.ErrOutcomeUnknown)
			stuck := map[string]bool{}
			budget := time.Now().Add(2 * batchTimeout)
			for _, j := range live {
				j.retry, j.uncertain = true, uncertain
				if stuck[j.card] || !time.Now().Before(budget) {
					j.done <- authResult{err: unanswered(j, errTimedOut)}
					continue
				}
				deadline := time.Now().Add(batchTimeout)
				if deadline.After(budget) {
					deadline = budget
				}
				if err := e.process([]*authJob{j}, deadline); errors.Is(err, errTimedOut) {
					stuck[j.card] = true
				}
			}
			return err
		}
		results = []authResult{{err: unanswered(live[0], err)}}
	}
	e.decided.Add(int64(len(live)))
	if err == nil {
		e.count(results)
	}
	for i, j := range live {
		j.done <- results[i]
	}
	return err
}

// errTimedOut marks a batch whose transaction ran out of time (batchTimeout).
var errTimedOut = errors.New("authorization batch ran out of time")

// unanswered is the error for a job whose transaction failed with err.
// Only when it surely rolled back (out of time before its commit) may the
// caller be told nothing was applied; after a batch whose commit went
// unconfirmed the first try may stand, and the caller is told so.
func unanswered(j *authJob, err error) error {
	switch {
	case j.uncertain || errors.Is(err, cardrail.ErrOutcomeUnknown):
		return &cardrail.Error{Code: cardrail.CodeOutcomeUnknown, Op: "authorizations.Create", Err: err, Message: fmt.Sprintf(
			"The database stopped answering while this authorization committed, so whether it took effect is unknown. "+
				"Read the card's authorizations (GET /authorizations/?card=%s) to see, or retry with the same Idempotency-Key, which applies it at most once.", j.card)}
	case errors.Is(err, errTimedOut):
		return &cardrail.Error{Code: cardrail.CodeServiceUnavailable, Op: "authorizations.Create", Err: err, Message: fmt.Sprintf(
			"The authorization could not be decided within %s: card %s was locked by another operation, or the database was slow. Nothing was applied; retry it.",
			batchTimeout, j.card)}
	}
	return cardrail.WithOp("authorizations.Create", err)
}

// count adds a committed batch's decisions to the approved and declined
// totals. A retried job that found its first try committed counts here, as
// that try's batch failed before counting it.
func (e *engine) count(results []authResult) {
	for _, r := range results {
		switch {
		case r.err != nil || r.auth == nil:
		case r.auth.DeclineReason != nil:
			if n := e.declined[*r.auth.DeclineReason]; n != nil {
				n.Add(1)
			}
		default:
			e.approved.Add(1)
		}
	}
}

// decideBatch runs under the locks of every card in the batch: it reads
// their positions with a handful of set-based statements, lets the pure
// decision decide each attempt in arrival order (an approval lowers what the
// next attempt on the same card sees), and writes every effect with
// multi-row statements.
func (s *Service) decideBatch(ctx context.Context, tx cardrail.Tx, jobs []*authJob) ([]authResult, error) {
	refs := make([]string, 0, len(jobs))
	for _, j := range jobs {
		refs = append(refs, j.card)
	}
	slices.Sort(refs)
	refs = slices.Compact(refs)
	first := s.now()
	day, month := cardrail.DayWindow(first), cardrail.MonthWindow(first)
	locked, err := tx.LockCardsForAuthorization(ctx, refs, day, month)
	if err != nil {
		return nil, err
	}
	// The batch's time and its authorizations' and events' references come
	// from one stamp, taken once the cards are locked: another executor's
	// batch stamped later has later references and a later created_at, so
	// lists by reference are lists by created_at. (References minted as
	// requests arrived would not be: a batch's locking read takes a round
	// trip, and two executors' batches overlap.)
	prefixes := make([]string, 0, 2*len(jobs))
	for range jobs {
		prefixes = append(prefixes, cardrail.PrefixAuthorization, cardrail.PrefixEvent)
	}
	stamped, now := cardrail.NewReferencesAt(s.now, prefixes...)
	if d, m := cardrail.DayWindow(now), cardrail.MonthWindow(now); d != day || m != month {
		// Midnight UTC passed during the locking read: read the spend
		// windows again, as of the new day. The rows are this
		// transaction's already.
		day, month = d, m
		if locked, err = tx.LockCardsForAuthorization(ctx, refs, day, month); err != nil {
			return nil, err
		}
	}
	cards := make(map[string]*cardrail.Card, len(locked))
	positions := make(map[string]*cardrail.CardPosition, len(locked))
	balances := make(map[string]int64, 2*len(locked))
	for _, l := range locked {
		c := l.Card
		cards[c.Reference] = c
		balances[ledger.CardAvailableAccount(c.Reference)] = c.Balance.Available
		balances[ledger.CardHeldAccount(c.Reference)] = c.Balance.Held
		positions[c.Reference] = &cardrail.CardPosition{
			ProgramEnabled: l.ProgramEnabled, Status: c.Status, Currency: c.Currency, Limits: l.Limits,
			Controls: c.SpendingControls, Available: c.Balance.Available, DailyUsed: l.DailyUsed, MonthlyUsed: l.MonthlyUsed,
		}
	}

	results := make([]authResult, len(jobs))
	var (
		auths   []*cardrail.Authorization
		events  []*cardrail.Event
		entries []ledger.Entry
		marks   []cardrail.IdempotencyMark
	)
	deltas := map[string]int64{}
	for i, j := range jobs {
		card := cards[j.card]
		if card == nil || card.Livemode != j.caller.Livemode || card.Owner != j.caller.Subject {
			results[i].err = cardrail.NotFound("card", j.card)
			continue
		}
		if j.ref == "" {
			j.ref, j.at = stamped[2*i], now
		} else if j.retry {
			// The first try reached its decision and may have
			// committed it.
			prior, err := tx.Authorization(ctx, card.Livemode, card.Owner, j.ref)
			if err == nil {
				results[i].auth = prior // the failed batch did commit
				continue
			}
			if !errors.Is(err, cardrail.ErrNoRows) {
				return nil, err
			}
		}
		pos := positions[card.Reference]
		auth := &cardrail.Authorization{
			Object: "authorization", Reference: j.ref, Card: card.Reference,
			Amount: j.attempt.Amount, Currency: j.attempt.Currency, Merchant: j.attempt.Merchant, Livemode: card.Livemode,
			Owner: card.Owner, CreatedAt: j.at, UpdatedAt: j.at,
		}
		if reason := cardrail.Decide(*pos, j.attempt); reason != "" {
			auth.Status, auth.DeclineReason = cardrail.AuthDeclined, &reason
		} else {
			*pos = pos.Apply(j.attempt)
			expires := j.at.Add(s.cfg.HoldWindow)
			auth.Status, auth.HeldAmount, auth.ExpiresAt = cardrail.AuthPending, j.attempt.Amount, &expires
			e := ledger.Move(ledger.TypeHold, card.Livemode, card.Currency, ledger.CardAvailableAccount(card.Reference), ledger.CardHeldAccount(card.Reference), j.attempt.Amount)
			e.Card, e.Authorization = card.Reference, auth.Reference
			entries = append(entries, e)
			deltas[card.Reference] += j.attempt.Amount
		}
		ev, err := cardrail.NewEventWithID(stamped[2*i+1], cardrail.EventAuthorizationCreated, auth.Livemode, auth.Reference, auth, now)
		if err != nil {
			return nil, err
		}
		auths, events = append(auths, auth), append(events, &ev)
		if m, ok := cardrail.IdempotencyMarkFrom(j.ctx); ok {
			m.Created = auth.Reference
			marks = append(marks, m)
		}
		results[i].auth = auth
	}
	if err := tx.PostBatch(ctx, entries, balances); err != nil {
		if _, short := ledger.IsInsufficientFunds(err); short {
			// The decisions read balances under the cards' locks, so the
			// ledger refusing them means storage and decision disagree:
			// fail the batch, and the one-by-one retry sorts it out.
			return nil, errors.Join(errors.New("batch hold refused by the ledger"), err)
		}
		return nil, err
	}
	if err := tx.AddSpendMany(ctx, day, month, deltas); err != nil {
		return nil, err
	}
	if err := tx.InsertAuthorizations(ctx, auths); err != nil {
		return nil, err
	}
	if err := tx.InsertEvents(ctx, events); err != nil {
		return nil, err
	}
	if err := tx.MarkIdempotent(ctx, marks); err != nil {
		return nil, err
	}
	return results, nil
}
