package api

// WebhookAdmin is what the operator API needs from webhook delivery. The
// webhook package implements it.
type WebhookAdmin interface{}
