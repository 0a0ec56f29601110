-- Deleting a webhook endpoint fails its pending deliveries. A dispatcher
-- that had read the endpoints before the delete committed could still queue
-- deliveries to it afterwards, and those stayed pending for ever: nothing
-- claims a delivery whose endpoint is gone, replay refuses it, and the
-- pending count never fell. The delete now waits for the dispatch cursor;
-- this fails the deliveries such a race left behind, as the delete would
-- have.

-- +goose Up
UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL, lease_until = NULL, lease_token = NULL,
    head = FALSE, updated_at = (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT
WHERE status = 'pending' AND NOT EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.reference = webhook_deliveries.endpoint);

-- +goose Down
-- Nothing to undo: the deliveries were never going to be sent.
SELECT 1;
