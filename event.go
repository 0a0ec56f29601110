package cardrail

import (
	"encoding/json"
	"strconv"
	"time"
)

// Event types. Every event is written in the same transaction as the change
// it reports.
const (
	EventWalletDebited        = "wallet.debited"
	EventWalletCredited       = "wallet.credited"
	EventCardCreated          = "card.created"
	EventCardUpdated          = "card.updated"
	EventCardFunded           = "card.funded"
	EventCardWithdrawn        = "card.withdrawn"
	EventCardFrozen           = "card.frozen"
	EventCardUnfrozen         = "card.unfrozen"
	EventCardTerminated       = "card.terminated"
	EventAuthorizationCreated = "card.authorization.created"
	EventAuthorizationUpdated = "card.authorization.updated"
	EventDisputeCreated       = "card.dispute.created"
	EventDisputeUpdated       = "card.dispute.updated"
)

// EventTypes lists every event type, for validating webhook filters.
var EventTypes = []string{
	EventWalletDebited, EventWalletCredited, EventCardCreated, EventCardUpdated,
	EventCardFunded, EventCardWithdrawn, EventCardFrozen, EventCardUnfrozen,
	EventCardTerminated, EventAuthorizationCreated, EventAuthorizationUpdated,
	EventDisputeCreated, EventDisputeUpdated,
}

// Event is one stored event in its delivery envelope. ObjectRef orders
// deliveries per object.
type Event struct {
	ID        string    `json:"id"`
	Object    string    `json:"object"`
	Type      string    `json:"type"`
	CreatedAt time.Time `json:"created_at"`
	Livemode  bool      `json:"livemode"`
	Data      EventData `json:"data"`

	ObjectRef string `json:"-"`
}

// EventData carries the object as the API renders it at the moment of the
// change.
type EventData struct {
	Object json.RawMessage `json:"object"`
}

// AppendJSON appends the event as json.Marshal renders it. The object is
// already JSON, so this only frames it: json.Marshal would validate and
// re-compact it, a cost the authorization path pays once per decision.
func (e *Event) AppendJSON(b []byte) ([]byte, error) {
	var err error
	field := func(name string, v any) {
		if err != nil {
			return
		}
		var enc []byte
		if enc, err = json.Marshal(v); err == nil {
			b = append(append(b, name...), enc...)
		}
	}
	b = append(b, '{')
	field(`"id":`, e.ID)
	field(`,"object":`, e.Object)
	field(`,"type":`, e.Type)
	field(`,"created_at":`, e.CreatedAt)
	b = append(b, `,"livemode":`...)
	b = strconv.AppendBool(b, e.Livemode)
	b = append(b, `,"data":{"object":`...)
	if len(e.Data.Object) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, e.Data.Object...)
	}
	b = append(b, "}}"...)
	return b, err
}

// NewEvent builds an event about obj; it fails only if obj cannot be
// rendered, which is a programming error.
func NewEvent(typ string, livemode bool, objectRef string, obj any, now time.Time) (Event, error) {
	return NewEventWithID(NewReference(PrefixEvent), typ, livemode, objectRef, obj, now)
}

// NewEventWithID is NewEvent for an id the caller minted (with
// NewReferencesAt, beside the time it passes as now).
func NewEventWithID(id, typ string, livemode bool, objectRef string, obj any, now time.Time) (Event, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return Event{}, err
	}
	return Event{ID: id, Object: "event", Type: typ, CreatedAt: now.UTC(),
		Livemode: livemode, Data: EventData{Object: b}, ObjectRef: objectRef}, nil
}

// AuditRecord is one operator (or audited) action: who, what, when, and the
// object before and after.
type AuditRecord struct {
	Object    string          `json:"object"`
	Reference string          `json:"reference"`
	Actor     string          `json:"actor"`
	Action    string          `json:"action"`
	Target    string          `json:"target"`
	Before    json.RawMessage `json:"before"`
	After     json.RawMessage `json:"after"`
	Livemode  bool            `json:"livemode"`
	RequestID string          `json:"request_id"`
	CreatedAt time.Time       `json:"created_at"`
}
