-- Every authorization updates its card's row (spend windows) and two
-- balance rows. PostgreSQL can update a row in place (a heap-only tuple:
-- no index entries, no new page) only when the row's page has room, and
-- pages filled to the brim by card creation have none. At a million cards
-- 40% of those updates were not heap-only: each wrote a new page and a new
-- entry in every index of the table, and after a checkpoint each such page
-- went into the WAL whole. Leave a fifth of each page free for updates.
-- Only pages written from now on are laid out this way.

-- +goose Up
ALTER TABLE cards SET (fillfactor = 80);
ALTER TABLE accounts SET (fillfactor = 80);

-- +goose Down
ALTER TABLE cards RESET (fillfactor);
ALTER TABLE accounts RESET (fillfactor);
