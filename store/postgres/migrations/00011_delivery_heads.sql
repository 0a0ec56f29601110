-- Deliveries to an endpoint about one object go out in outbox order, so
-- only the first pending one of each (endpoint, object) may be claimed.
-- Claiming used to find those by walking every due delivery and probing for
-- an earlier one: behind a first delivery that was backing off, every later
-- one was due and blocked, and each claim walked all of them (68 ms at a
-- backlog of 10,000, growing with it). Now the first pending, not replayed
-- delivery of each (endpoint, object) is marked as its head: it is set when
-- a delivery is queued behind nothing, and handed on when the head
-- finishes. A claim reads heads (and replays) only.

-- +goose Up
ALTER TABLE webhook_deliveries ADD COLUMN head BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE webhook_deliveries d SET head = TRUE
WHERE d.status = 'pending' AND d.replayed = FALSE AND NOT EXISTS (
    SELECT 1 FROM webhook_deliveries p WHERE p.endpoint = d.endpoint AND p.object_ref = d.object_ref
    AND p.status = 'pending' AND p.replayed = FALSE AND p.event_seq < d.event_seq);
CREATE INDEX webhook_deliveries_heads ON webhook_deliveries (next_attempt_at, event_seq) WHERE status = 'pending' AND head;
CREATE INDEX webhook_deliveries_replays ON webhook_deliveries (next_attempt_at, event_seq) WHERE status = 'pending' AND replayed;
DROP INDEX webhook_deliveries_due;

-- +goose Down
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
DROP INDEX webhook_deliveries_replays;
DROP INDEX webhook_deliveries_heads;
ALTER TABLE webhook_deliveries DROP COLUMN head;
