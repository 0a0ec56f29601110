-- PostgreSQL's migration 00009 makes text columns compare byte by byte.
-- SQLite's BINARY collation already does, so there is nothing to do; this
-- keeps the version sequences in step.

-- +goose Up
SELECT 1;

-- +goose Down
SELECT 1;
