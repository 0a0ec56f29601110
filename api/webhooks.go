package api

import (
	"context"
	"net/http"
	"slices"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/webhook"
)

// WebhookAdmin is what the operator API needs from webhook delivery; every
// method acts in the caller's mode. *webhook.Worker implements it.
type WebhookAdmin interface {
	// CreateEndpoint returns the endpoint with its secret, shown only here.
	// Errors: validation_failed, unknown_event_type, webhook_url_refused.
	CreateEndpoint(ctx context.Context, c cardrail.Caller, p webhook.EndpointParams, requestID string) (*webhook.Endpoint, error)
	Endpoints(ctx context.Context, c cardrail.Caller) ([]webhook.Endpoint, error)
	// DeleteEndpoint returns the removed endpoint. Errors: not_found.
	DeleteEndpoint(ctx context.Context, c cardrail.Caller, ref, requestID string) (*webhook.Endpoint, error)
	Deliveries(ctx context.Context, c cardrail.Caller, f webhook.DeliveryFilter) (cardrail.Page[webhook.Delivery], error)
	// ReplayDelivery queues a delivery again. Errors: not_found, conflict.
	ReplayDelivery(ctx context.Context, c cardrail.Caller, ref, requestID string) (*webhook.Delivery, error)
}

var _ WebhookAdmin = (*webhook.Worker)(nil)

// webhookRoutes are the operator's webhook administration (§9).
func webhookRoutes() []route {
	return []route{
		{"POST", "/ops/webhook-endpoints/", "opsCreateWebhookEndpoint", operator, false, createWebhookEndpoint},
		{"GET", "/ops/webhook-endpoints/", "opsListWebhookEndpoints", operator, false, listWebhookEndpoints},
		{"DELETE", "/ops/webhook-endpoints/{ref}/", "opsDeleteWebhookEndpoint", operator, false, deleteWebhookEndpoint},
		{"GET", "/ops/webhook-deliveries/", "opsListWebhookDeliveries", operator, false, listWebhookDeliveries},
		{"POST", "/ops/webhook-deliveries/{ref}/replay/", "opsReplayWebhookDelivery", operator, false, replayWebhookDelivery},
	}
}

func (s *Server) webhooks() (WebhookAdmin, error) {
	if s.cfg.Webhooks == nil {
		return nil, cardrail.Errorf(cardrail.CodeServiceUnavailable, "Webhook delivery is not configured on this server.")
	}
	return s.cfg.Webhooks, nil
}

type createWebhookEndpointRequest struct {
	URL    string   `json:"url"`
	Events []string `json:"events"`
}

func createWebhookEndpoint(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	wh, err := s.webhooks()
	if err != nil {
		return 0, nil, err
	}
	var req createWebhookEndpointRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	e, err := wh.CreateEndpoint(r.Context(), c, webhook.EndpointParams{URL: req.URL, Events: req.Events}, info(r).id)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, shownOnce{e}, nil
}

func listWebhookEndpoints(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	wh, err := s.webhooks()
	if err != nil {
		return 0, nil, err
	}
	es, err := wh.Endpoints(r.Context(), c)
	if err != nil {
		return 0, nil, err
	}
	page, err := refPage(r, cardrail.PrefixWebhook, es, func(e webhook.Endpoint) string { return e.Reference })
	return http.StatusOK, page, err
}

func deleteWebhookEndpoint(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	wh, err := s.webhooks()
	if err != nil {
		return 0, nil, err
	}
	if err := decode(r, &emptyRequest{}); err != nil {
		return 0, nil, err
	}
	ref := r.PathValue("ref")
	if !cardrail.HasPrefix(ref, cardrail.PrefixWebhook) {
		return 0, nil, cardrail.NotFound("webhook endpoint", ref)
	}
	e, err := wh.DeleteEndpoint(r.Context(), c, ref, info(r).id)
	return http.StatusOK, e, err
}

func listWebhookDeliveries(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	wh, err := s.webhooks()
	if err != nil {
		return 0, nil, err
	}
	p, err := listParams(r, cardrail.PrefixDelivery)
	if err != nil {
		return 0, nil, err
	}
	q := r.URL.Query()
	f := webhook.DeliveryFilter{Endpoint: q.Get("endpoint"), Status: webhook.DeliveryStatus(q.Get("status")), ListParams: p}
	if f.Endpoint != "" && !cardrail.HasPrefix(f.Endpoint, cardrail.PrefixWebhook) {
		return 0, nil, cardrail.Invalid(cardrail.FieldError{Field: "endpoint", Message: "is not a webhook endpoint reference"})
	}
	if f.Status != "" && !slices.Contains(webhook.DeliveryStatuses, f.Status) {
		return 0, nil, cardrail.Invalid(cardrail.FieldError{Field: "status", Message: "must be pending, delivered or failed"})
	}
	page, err := wh.Deliveries(r.Context(), c, f)
	return http.StatusOK, renderPage(page), err
}

func replayWebhookDelivery(s *Server, r *http.Request, c cardrail.Caller) (int, any, error) {
	wh, err := s.webhooks()
	if err != nil {
		return 0, nil, err
	}
	if err := decode(r, &emptyRequest{}); err != nil {
		return 0, nil, err
	}
	ref := r.PathValue("ref")
	if !cardrail.HasPrefix(ref, cardrail.PrefixDelivery) {
		return 0, nil, cardrail.NotFound("webhook delivery", ref)
	}
	d, err := wh.ReplayDelivery(r.Context(), c, ref, info(r).id)
	return http.StatusOK, d, err
}
