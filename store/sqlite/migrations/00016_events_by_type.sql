-- GET /ops/events/?type= lists one type's events, newest first, and had no
-- index of its own: a type nobody has emitted lately (card.frozen among a
-- million authorizations) walked every event backwards until it had a
-- page, or to the table's start. Every type but card.authorization.created
-- is now indexed in the list's order. That one is left out because it is
-- written once per authorization, on the path whose throughput matters
-- most, and an index entry for each cost as much again as the object index
-- (migration 00013); being most of the table, it fills a page at once
-- without one. A query can use this index only when it repeats the
-- index's condition, so the store adds it to every ?type= list but that
-- one's.

-- +goose Up
CREATE INDEX events_by_type ON events (type, id)
    WHERE type <> 'card.authorization.created';

-- +goose Down
DROP INDEX events_by_type;
