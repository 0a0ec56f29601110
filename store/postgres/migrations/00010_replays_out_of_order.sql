-- A delivery an operator replays after it was delivered or failed is sent
-- again outside the per-object order: later events of the object have
-- already gone out (or may go), and a replay that keeps failing must not
-- hold them back for its whole retry schedule.

-- +goose Up
ALTER TABLE webhook_deliveries ADD COLUMN replayed BOOLEAN NOT NULL DEFAULT FALSE;

-- +goose Down
ALTER TABLE webhook_deliveries DROP COLUMN replayed;
