-- An idempotency key whose request took effect but whose response was lost
-- (the server stopped in between) answers 409 idempotency_response_lost.
-- For a request that created an object, that left the client without the
-- object's reference. The reference is now recorded with the key in the
-- transaction that applies the effect, and the 409 names it.

-- +goose Up
ALTER TABLE idempotency_keys ADD COLUMN created_ref TEXT;

-- +goose Down
ALTER TABLE idempotency_keys DROP COLUMN created_ref;
