-- PostgreSQL drops the foreign keys on the authorization path in its
-- migration 00004; SQLite keeps them, since here a key check is an
-- in-process index lookup. This migration keeps the two version sequences
-- in step.

-- +goose Up
SELECT 1;

-- +goose Down
SELECT 1;
