-- Creating a card calls the issuing partner before the card's transaction,
-- with an idempotency key derived from the card's reference. A request that
-- failed after the partner issued (the database refused the insert, the
-- client went away, the process died) used to lose that reference: the key
-- was released, or taken over, and the retry drew a new reference, so the
-- partner issued a second card. The reference is now reserved with the
-- key (created_ref, before the call) and a released key whose request
-- reserved one is kept, marked released, so the retry reuses it and the
-- partner answers with the card it already issued.

-- +goose Up
ALTER TABLE idempotency_keys ADD COLUMN released BOOLEAN NOT NULL DEFAULT FALSE;

-- +goose Down
ALTER TABLE idempotency_keys DROP COLUMN released;
