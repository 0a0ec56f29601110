package cardrail

import (
	"crypto/rand"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// Reference prefixes, one per object type.
const (
	PrefixCard          = "card"
	PrefixAuthorization = "auth"
	PrefixDispute       = "dsp"
	PrefixWallet        = "wal"
	PrefixEvent         = "evt"
	PrefixTransaction   = "txn"
	PrefixEntry         = "je"
	PrefixWebhook       = "we"
	PrefixDelivery      = "whd"
	PrefixRequest       = "req"
	PrefixAudit         = "aud"
)

var (
	refMu      sync.Mutex
	refEntropy = ulid.Monotonic(rand.Reader, 0)
)

// NewReference returns an opaque, type-prefixed, time-sortable reference such
// as "card_01JD…". References made by one process sort strictly in creation
// order; lowercase keeps them readable in URLs.
func NewReference(prefix string) string {
	refMu.Lock()
	id := ulid.MustNew(ulid.Timestamp(time.Now()), refEntropy)
	refMu.Unlock()
	return render(prefix, id)
}

// NewReferencesAt mints one reference per prefix and reads clock once,
// all under the lock that orders references. Of two calls, the one that
// mints the earlier references also reads the earlier (or the same) time,
// so objects stamped with that time as their created_at list in
// created_at order when listed by reference.
func NewReferencesAt(clock func() time.Time, prefixes ...string) ([]string, time.Time) {
	ids := make([]ulid.ULID, len(prefixes))
	refMu.Lock()
	now := clock()
	ms := ulid.Timestamp(time.Now())
	for i := range ids {
		ids[i] = ulid.MustNew(ms, refEntropy)
	}
	refMu.Unlock()
	refs := make([]string, len(prefixes))
	for i, prefix := range prefixes {
		refs[i] = render(prefix, ids[i])
	}
	return refs, now
}

// NewReferenceAt is NewReferencesAt for one reference.
func NewReferenceAt(clock func() time.Time, prefix string) (string, time.Time) {
	refs, now := NewReferencesAt(clock, prefix)
	return refs[0], now
}

// ReferenceTime is the time, to the millisecond, at which ref was minted.
func ReferenceTime(ref string) (time.Time, bool) {
	i := strings.LastIndexByte(ref, '_')
	if i < 0 {
		return time.Time{}, false
	}
	id, err := ulid.ParseStrict(strings.ToUpper(ref[i+1:]))
	if err != nil {
		return time.Time{}, false
	}
	return ulid.Time(id.Time()).UTC(), true
}

// render writes a reference: its prefix, "_", and the ULID in lowercase.
func render(prefix string, id ulid.ULID) string {
	var text [ulid.EncodedSize]byte
	_ = id.MarshalTextTo(text[:]) // cannot fail: the buffer is the right size
	var b strings.Builder
	b.Grow(len(prefix) + 1 + len(text))
	b.WriteString(prefix)
	b.WriteByte('_')
	for _, c := range text {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// HasPrefix reports whether ref is a reference of the given type: the
// prefix, "_", and 26 lowercase letters and digits.
func HasPrefix(ref, prefix string) bool {
	body, ok := strings.CutPrefix(ref, prefix+"_")
	if !ok || len(body) != ulid.EncodedSize {
		return false
	}
	for i := range len(body) {
		if c := body[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}
