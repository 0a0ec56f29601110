-- PostgreSQL's migration 00008 leaves room in card and balance pages for
-- in-place updates. SQLite rewrites a row in place whatever its page's
-- fill, so there is nothing to do; this keeps the version sequences in
-- step.

-- +goose Up
SELECT 1;

-- +goose Down
SELECT 1;
