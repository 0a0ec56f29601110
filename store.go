package cardrail

import (
	"context"
	"errors"
	"time"

	"github.com/cardrail/cardrail/ledger"
)

// ErrNoRows is returned (wrapped) by storage lookups that find nothing; the
// issuing layer turns it into a not_found error naming the object.
var ErrNoRows = errors.New("no rows")

// ErrStale is returned by conditional updates whose precondition no longer
// holds (another request changed the object first).
var ErrStale = errors.New("stale: the object changed")

// ListParams are a list request's paging: Limit items older than Cursor (a
// reference), newest first.
type ListParams struct {
	Limit  int
	Cursor string
}

// Page is one page of a newest-first list.
type Page[T any] struct {
	Data       []T
	HasMore    bool
	NextCursor *string
}

// CardFilter selects cards. Owner "" means every owner (operators).
type CardFilter struct {
	Livemode bool
	Owner    string
	Status   CardStatus
	ListParams
}

// AuthorizationFilter selects authorizations.
type AuthorizationFilter struct {
	Livemode bool
	Owner    string
	Card     string
	ListParams
}

// Store is the storage both databases implement (store/sqlite,
// store/postgres); store/storetest holds the contract suite they share.
type Store interface {
	Reader
	IdempotencyStore
	// Tx runs fn in one write transaction. Serialization failures and
	// deadlocks are retried, so fn may run more than once and must not have
	// effects outside the transaction. An error from fn rolls back.
	Tx(ctx context.Context, fn func(Tx) error) error
	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	Close() error
	// Dialect names the database ("sqlite", "postgres").
	Dialect() string
}

// Reader is every read. Lookups by reference return an error wrapping
// ErrNoRows when nothing matches the mode and owner.
type Reader interface {
	Programs(ctx context.Context, livemode bool) ([]Program, error)
	Program(ctx context.Context, livemode bool, code string) (*Program, error)
	ProviderStates(ctx context.Context, livemode bool) (map[string]bool, error)

	Card(ctx context.Context, livemode bool, owner, ref string) (*Card, error)
	Cards(ctx context.Context, f CardFilter) (Page[Card], error)
	CardSecret(ctx context.Context, livemode bool, ref string) (CardSecret, error)
	// CardsSealedOutside lists, in reference order after after, up to
	// limit cards of either mode whose number is sealed under a key other
	// than keyID.
	CardsSealedOutside(ctx context.Context, keyID, after string, limit int) ([]SealedCard, error)
	CardTransactions(ctx context.Context, livemode bool, card string, p ListParams) (Page[CardTransaction], error)

	Wallets(ctx context.Context, livemode bool, owner string) ([]Wallet, error)
	Cardholder(ctx context.Context, livemode bool, subject string) (*Cardholder, error)

	Authorization(ctx context.Context, livemode bool, owner, ref string) (*Authorization, error)
	Authorizations(ctx context.Context, f AuthorizationFilter) (Page[Authorization], error)
	// StaleAuthorizations lists pending authorizations whose hold expired
	// before now, oldest first.
	StaleAuthorizations(ctx context.Context, now time.Time, limit int) ([]Authorization, error)

	Dispute(ctx context.Context, livemode bool, owner, ref string) (*Dispute, error)
	Disputes(ctx context.Context, f DisputeFilter) (Page[Dispute], error)
	AuditLog(ctx context.Context, livemode bool, p ListParams) (Page[AuditRecord], error)
	Events(ctx context.Context, f EventFilter) (Page[Event], error)

	// ExpiredCards lists cards still active, frozen or blocked whose expiry
	// month ended before the given year and month, oldest expiry first.
	ExpiredCards(ctx context.Context, year, month, limit int) ([]Card, error)

	// AccountBalances sums every account by mode, currency and kind.
	AccountBalances(ctx context.Context, livemode bool) ([]AccountBalance, error)

	Setting(ctx context.Context, key string) (string, error)
}

// Tx is one write transaction: every read through it sees the transaction's
// own writes, and the ForUpdate reads lock the row until commit.
type Tx interface {
	Reader

	ProgramForUpdate(ctx context.Context, livemode bool, code string) (*Program, error)
	SaveProgram(ctx context.Context, p *Program) error
	SetProviderState(ctx context.Context, s ProviderState) error

	// CardForUpdate locks a card; owner "" means any owner.
	CardForUpdate(ctx context.Context, livemode bool, owner, ref string) (*Card, error)
	InsertCard(ctx context.Context, c *Card, s CardSecret) error
	SetCardSecret(ctx context.Context, ref string, s CardSecret) error
	// ResealCard stores to, a card's number sealed anew, if the card's is
	// still sealed under from, and reports whether it was.
	ResealCard(ctx context.Context, from string, to SealedCard) (bool, error)
	// UpdateCard writes c's mutable fields if the stored status is one of
	// from (any status when from is empty), else returns ErrStale.
	UpdateCard(ctx context.Context, c *Card, from ...CardStatus) error

	// Wallet returns the owner's wallet in currency, creating it empty.
	Wallet(ctx context.Context, livemode bool, owner, currency string) (*Wallet, error)
	// Post applies a balanced entry: lines and balances together. A line
	// that would take a floored account below zero fails the whole entry with
	// *ledger.InsufficientFunds and applies nothing.
	Post(ctx context.Context, e *ledger.Entry) error

	AuthorizationForUpdate(ctx context.Context, livemode bool, owner, ref string) (*Authorization, error)
	// UpdateAuthorization writes a's amounts and status if the stored status
	// is from, else returns ErrStale.
	UpdateAuthorization(ctx context.Context, a *Authorization, from AuthorizationStatus) error
	// SpendUsed returns the card's approved spend in each window.
	SpendUsed(ctx context.Context, card string, windows ...string) (map[string]int64, error)
	AddSpend(ctx context.Context, card, window string, delta int64) error

	DisputeForUpdate(ctx context.Context, livemode bool, owner, ref string) (*Dispute, error)
	InsertDispute(ctx context.Context, d *Dispute) error
	// UpdateDispute writes d's status if the stored status is from, else
	// returns ErrStale.
	UpdateDispute(ctx context.Context, d *Dispute, from DisputeStatus) error
	// DisputedAmount sums the authorization's active disputes and counts
	// its pending ones.
	DisputedAmount(ctx context.Context, authorization string) (amount int64, pending int, err error)

	// The set-based statements of the authorization batch: each does for
	// many objects what its singular sibling does for one.

	// LockCardsForAuthorization locks the cards (any mode and owner) in
	// reference order and returns, in one read, those that exist with their
	// program's switch and limits and their spend in the day and month
	// windows.
	LockCardsForAuthorization(ctx context.Context, refs []string, day, month string) ([]LockedCard, error)
	// AddSpendMany raises each card's day and month spend windows by its
	// positive delta.
	AddSpendMany(ctx context.Context, day, month string, deltas map[string]int64) error
	// PostBatch applies many balanced entries with one balance update per
	// statement; like Post, a floored account that would go negative fails
	// the whole batch and applies nothing. known may give the balances of
	// accounts the caller read under lock in this transaction; when it
	// covers every account, no balance has to be read back and the writes
	// travel in one round trip.
	PostBatch(ctx context.Context, entries []ledger.Entry, known map[string]int64) error
	InsertAuthorizations(ctx context.Context, as []*Authorization) error
	InsertEvents(ctx context.Context, es []*Event) error
	// MarkIdempotent records that the requests holding these keys applied
	// their effect in this transaction.
	MarkIdempotent(ctx context.Context, marks []IdempotencyMark) error

	SetCardholder(ctx context.Context, c *Cardholder) error
	// DeleteCardholder removes an operator's verdict, reporting whether
	// there was one.
	DeleteCardholder(ctx context.Context, livemode bool, subject string) (bool, error)
	InsertEvent(ctx context.Context, e *Event) error
	InsertAudit(ctx context.Context, a *AuditRecord) error
	SetSetting(ctx context.Context, key, value string) error
}

// AccountBalance is the sum of one kind of account in a mode and currency.
type AccountBalance struct {
	Currency string      `json:"currency"`
	Kind     ledger.Kind `json:"kind"`
	Balance  int64       `json:"balance"`
	Accounts int         `json:"accounts"`
}

type idempotencyMarkKey struct{}

// IdempotencyMark names an idempotency key whose request is in flight,
// and the object the request creates, once it is known.
type IdempotencyMark struct {
	Scope, Key string
	// Token is the holder's, from BeginIdempotent: a holder whose key was
	// taken over cannot mark it applied.
	Token   int64
	Created string
	// Reserved is the reference an earlier holder of the key reserved for
	// the object the request creates (see IdempotencyStore.ReserveIdempotent);
	// the request creates it under that reference.
	Reserved string
}

// WithIdempotencyMark asks storage to record, inside every write transaction
// made with ctx, that the request holding this key has applied its effect.
// After a crash that lost the response, a retry can then tell an effect that
// committed (never run again) from one that did not (safe to run).
func WithIdempotencyMark(ctx context.Context, m IdempotencyMark) context.Context {
	return context.WithValue(ctx, idempotencyMarkKey{}, m)
}

// WithoutIdempotencyMark hides any mark from the transactions made with
// the returned context: for work a request does that is not its effect
// (an expiry applied on the way), which must not mark its key applied.
func WithoutIdempotencyMark(ctx context.Context) context.Context {
	return context.WithValue(ctx, idempotencyMarkKey{}, nil)
}

// WithIdempotentCreation notes, for a request that holds an idempotency
// key, the reference of the object it is about to create. Storage records
// it with the key in the transaction that applies the effect, so that a
// retry whose response was lost can still be told what was created.
func WithIdempotentCreation(ctx context.Context, ref string) context.Context {
	m, ok := IdempotencyMarkFrom(ctx)
	if !ok {
		return ctx
	}
	m.Created = ref
	return WithIdempotencyMark(ctx, m)
}

// IdempotencyMarkFrom returns the mark set by WithIdempotencyMark.
func IdempotencyMarkFrom(ctx context.Context) (IdempotencyMark, bool) {
	m, ok := ctx.Value(idempotencyMarkKey{}).(IdempotencyMark)
	return m, ok
}

// IdempotencyOutcome says what a retried request with a known key gets.
type IdempotencyOutcome int

// Outcomes of beginning an idempotent request.
const (
	// IdempotencyStarted: the key is new (or its earlier holder died before
	// applying anything); run the request.
	IdempotencyStarted IdempotencyOutcome = iota
	// IdempotencyReplay: the stored response is to be replayed.
	IdempotencyReplay
	// IdempotencyInProgress: another request with the key is running.
	IdempotencyInProgress
	// IdempotencyReused: the key was used with a different request.
	IdempotencyReused
	// IdempotencyResponseLost: the request's effect committed but its
	// holder died before storing the response (a crash in that window); the
	// effect is never run again, and the client has to read the object
	// (Created, when the request created one).
	IdempotencyResponseLost
)

// IdempotencyRecord is a stored response.
type IdempotencyRecord struct {
	Outcome     IdempotencyOutcome
	Status      int
	ContentType string
	Body        []byte
	// Created is, for IdempotencyResponseLost, the object the request
	// created, when it created one.
	Created string
	// Token is, for IdempotencyStarted, the holder's fencing token: its
	// mark, its response and its release take effect only while the key is
	// still its own, not after a later request took over a key it held
	// past the stale threshold.
	Token int64
	// Reserved is, for IdempotencyStarted, the reference an earlier run of
	// the same request reserved before it failed or its process died.
	Reserved string
}

// IdempotencyStore keeps idempotency keys for 24 hours, scoped per caller.
type IdempotencyStore interface {
	BeginIdempotent(ctx context.Context, scope, key, fingerprint string, now time.Time) (IdempotencyRecord, error)
	CompleteIdempotent(ctx context.Context, scope, key string, token int64, status int, contentType string, body []byte) error
	// ReserveIdempotent records, before a request calls an outside party
	// keyed by the reference of the object it creates, that reference
	// with the key. A later run of the same request, after this one
	// failed or its process died, then gets it back (Reserved) and makes
	// the same call, which the outside party answers with what it already
	// made. Only the key's holder (token) can reserve: anyone else gets an
	// idempotency_request_in_progress error.
	ReserveIdempotent(ctx context.Context, scope, key string, token int64, ref string) error
	// ReleaseIdempotent forgets a key whose response is not to be stored
	// (401, 429, 5xx), so a retry runs afresh, keeping only a reserved
	// reference for it.
	ReleaseIdempotent(ctx context.Context, scope, key string, token int64) error
	// PurgeIdempotent deletes keys created before cutoff.
	PurgeIdempotent(ctx context.Context, cutoff time.Time) (int64, error)
}

// LockedCard is a card read under its lock with everything the
// authorization decision needs besides the attempt. The card's Metadata is
// not read: nothing in a decision looks at it.
type LockedCard struct {
	Card           *Card
	ProgramEnabled bool
	Limits         Limits
	DailyUsed      int64
	MonthlyUsed    int64
}
