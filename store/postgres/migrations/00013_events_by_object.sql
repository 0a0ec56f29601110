-- GET /ops/events/?object= lists one object's events, newest first. With
-- only the event id indexed, it walked every event of the table backwards
-- until it had a page: 193 ms for a card's two events among 130,000, and
-- growing with the table. The object's events now have an index in the
-- list's order. It costs one index entry per event, so one per
-- authorization on the authorization path; ?type= has none, as every type
-- but the authorization's own is rare and its own fills a page at once.

-- +goose Up
CREATE INDEX events_by_object ON events (object_ref, id);

-- +goose Down
DROP INDEX events_by_object;
