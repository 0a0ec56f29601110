-- GET /ops/webhook-deliveries/?status=failed is how an operator finds what
-- did not arrive. Failed deliveries are rare, and with no index on status
-- the list read every delivery of the mode: 25 ms among 300,000, growing
-- with the table. Deliveries are not on the authorization path, and their
-- status changes already touch every index (it is in the partial indexes'
-- predicates), so one more costs the delivery worker little.

-- +goose Up
CREATE INDEX webhook_deliveries_by_status ON webhook_deliveries (livemode, status, reference);

-- +goose Down
DROP INDEX webhook_deliveries_by_status;
