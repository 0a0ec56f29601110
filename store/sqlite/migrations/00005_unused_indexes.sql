-- Two indexes no query uses, each paid for on every authorization:
-- journal_lines_by_entry (lines are read by account and joined to their
-- entry through the entry's primary key) and events_by_mode (events are
-- listed by id and dispatched by seq, both served by their own keys).

-- +goose Up
DROP INDEX journal_lines_by_entry;
DROP INDEX events_by_mode;

-- +goose Down
CREATE INDEX journal_lines_by_entry ON journal_lines (entry);
CREATE INDEX events_by_mode ON events (livemode, seq);
