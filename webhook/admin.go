package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cardrail/cardrail"
)

// EndpointParams are what an operator registers.
type EndpointParams struct {
	URL    string
	Events []string
}

// validEvents checks an endpoint's event filter: a non-empty list of known
// event types, or ["*"] for all of them. It returns the list deduplicated.
func validEvents(events []string) ([]string, error) {
	if len(events) == 0 {
		return nil, cardrail.Invalid(cardrail.FieldError{Field: "events", Message: `must list at least one event type, or "*" for all`})
	}
	var out []string
	var unknown []cardrail.FieldError
	for i, t := range events {
		switch {
		case t == AllEvents && len(events) > 1:
			return nil, cardrail.Invalid(cardrail.FieldError{Field: fmt.Sprintf("events[%d]", i), Message: `"*" must be the only entry`})
		case t != AllEvents && !slices.Contains(cardrail.EventTypes, t):
			unknown = append(unknown, cardrail.FieldError{Field: fmt.Sprintf("events[%d]", i), Message: fmt.Sprintf("%q is not an event type", t)})
		case !slices.Contains(out, t):
			out = append(out, t)
		}
	}
	if len(unknown) > 0 {
		return nil, &cardrail.Error{Code: cardrail.CodeUnknownEventType, Fields: unknown,
			Message: "Unknown event type; the types are: " + strings.Join(cardrail.EventTypes, ", ") + "."}
	}
	return out, nil
}

// auditJSON renders an object for the audit log; callers pass views
// without secrets.
func auditJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}

// CreateEndpoint registers an endpoint in the operator's mode and returns it
// with its secret, which is never shown again. Errors: validation_failed,
// unknown_event_type, webhook_url_refused.
func (w *Worker) CreateEndpoint(ctx context.Context, c cardrail.Caller, p EndpointParams, requestID string) (*Endpoint, error) {
	if strings.TrimSpace(p.URL) == "" {
		return nil, cardrail.Invalid(cardrail.FieldError{Field: "url", Message: "is required"})
	}
	events, err := validEvents(p.Events)
	if err != nil {
		return nil, err
	}
	if err := w.checkURL(ctx, p.URL, c.Livemode); err != nil {
		return nil, err
	}
	secret, err := newSecret()
	if err != nil {
		return nil, cardrail.WithOp("webhooks.CreateEndpoint", err)
	}
	ref, now := cardrail.NewReferenceAt(w.now, cardrail.PrefixWebhook)
	e := &Endpoint{Reference: ref, Object: ObjectEndpoint, URL: p.URL,
		Events: events, Livemode: c.Livemode, CreatedAt: now, Secret: secret}
	stored := *e
	if stored.Secret, err = w.sealSecret(e.Reference, secret); err != nil {
		return nil, cardrail.WithOp("webhooks.CreateEndpoint", err)
	}
	ctx = cardrail.WithIdempotentCreation(ctx, e.Reference)
	err = w.store.WebhookTx(ctx, func(tx Tx) error {
		if err := tx.InsertWebhookEndpoint(ctx, &stored); err != nil {
			return err
		}
		e.AfterSeq = stored.AfterSeq
		shown := *e
		shown.Secret = ""
		audit, at := cardrail.NewReferenceAt(w.now, cardrail.PrefixAudit)
		return tx.InsertAudit(ctx, &cardrail.AuditRecord{Reference: audit,
			Actor: c.Subject, Action: "webhook_endpoint.created", Target: e.Reference, After: auditJSON(shown),
			Livemode: c.Livemode, RequestID: requestID, CreatedAt: at})
	})
	if err != nil {
		return nil, cardrail.WithOp("webhooks.CreateEndpoint", err)
	}
	return e, nil
}

// Endpoints lists the operator's mode's endpoints, newest first.
func (w *Worker) Endpoints(ctx context.Context, c cardrail.Caller) ([]Endpoint, error) {
	es, err := w.store.WebhookEndpoints(ctx, c.Livemode)
	if err != nil {
		return nil, cardrail.WithOp("webhooks.Endpoints", err)
	}
	return es, nil
}

// DeleteEndpoint removes an endpoint of the operator's mode and fails its
// pending deliveries. Errors: not_found.
func (w *Worker) DeleteEndpoint(ctx context.Context, c cardrail.Caller, ref, requestID string) (*Endpoint, error) {
	var gone *Endpoint
	err := w.store.WebhookTx(ctx, func(tx Tx) error {
		audit, now := cardrail.NewReferenceAt(w.now, cardrail.PrefixAudit)
		var err error
		if gone, err = tx.DeleteWebhookEndpoint(ctx, c.Livemode, ref, now); err != nil {
			return err
		}
		return tx.InsertAudit(ctx, &cardrail.AuditRecord{Reference: audit,
			Actor: c.Subject, Action: "webhook_endpoint.deleted", Target: ref, Before: auditJSON(gone),
			Livemode: c.Livemode, RequestID: requestID, CreatedAt: now})
	})
	if errors.Is(err, cardrail.ErrNoRows) {
		return nil, cardrail.NotFound("webhook endpoint", ref)
	}
	if err != nil {
		return nil, cardrail.WithOp("webhooks.DeleteEndpoint", err)
	}
	return gone, nil
}

// Deliveries lists the operator's mode's deliveries with their attempts,
// newest first.
func (w *Worker) Deliveries(ctx context.Context, c cardrail.Caller, f DeliveryFilter) (cardrail.Page[Delivery], error) {
	f.Livemode = c.Livemode
	p, err := w.store.WebhookDeliveries(ctx, f)
	if err != nil {
		return p, cardrail.WithOp("webhooks.Deliveries", err)
	}
	return p, nil
}

// deliveryState is a delivery as the audit log keeps it.
type deliveryState struct {
	Reference    string         `json:"reference"`
	Endpoint     string         `json:"endpoint"`
	Event        string         `json:"event"`
	Status       DeliveryStatus `json:"status"`
	AttemptCount int            `json:"attempt_count"`
}

// ReplayDelivery queues a delivery again, due now, with a fresh retry
// schedule, whatever its status. Errors: not_found, conflict (its endpoint
// was deleted).
func (w *Worker) ReplayDelivery(ctx context.Context, c cardrail.Caller, ref, requestID string) (*Delivery, error) {
	err := w.store.WebhookTx(ctx, func(tx Tx) error {
		d, err := tx.WebhookDeliveryForUpdate(ctx, c.Livemode, ref)
		if errors.Is(err, cardrail.ErrNoRows) {
			return cardrail.NotFound("webhook delivery", ref)
		}
		if err != nil {
			return err
		}
		if _, err := tx.WebhookEndpoint(ctx, c.Livemode, d.Endpoint); errors.Is(err, cardrail.ErrNoRows) {
			return cardrail.Errorf(cardrail.CodeConflict, "Delivery %s cannot be replayed: its endpoint %s was deleted.", ref, d.Endpoint)
		} else if err != nil {
			return err
		}
		audit, now := cardrail.NewReferenceAt(w.now, cardrail.PrefixAudit)
		if err := tx.RequeueWebhookDelivery(ctx, ref, now); err != nil {
			return err
		}
		before := deliveryState{d.Reference, d.Endpoint, d.Event, d.Status, d.AttemptCount}
		after := deliveryState{d.Reference, d.Endpoint, d.Event, DeliveryPending, 0}
		return tx.InsertAudit(ctx, &cardrail.AuditRecord{Reference: audit,
			Actor: c.Subject, Action: "webhook_delivery.replayed", Target: ref, Before: auditJSON(before),
			After: auditJSON(after), Livemode: c.Livemode, RequestID: requestID, CreatedAt: now})
	})
	if err != nil {
		return nil, cardrail.WithOp("webhooks.ReplayDelivery", err)
	}
	d, err := w.store.WebhookDelivery(ctx, c.Livemode, ref)
	if err != nil {
		return nil, cardrail.WithOp("webhooks.ReplayDelivery", err)
	}
	return d, nil
}
