-- +goose Up
CREATE TABLE disputes (
    reference         TEXT    PRIMARY KEY,
    livemode          BOOLEAN NOT NULL,
    owner             TEXT    NOT NULL,
    authorization_ref TEXT    NOT NULL REFERENCES authorizations (reference),
    card              TEXT    NOT NULL REFERENCES cards (reference),
    status            TEXT    NOT NULL CHECK (status IN ('open', 'submitted', 'won', 'lost', 'canceled')),
    reason            TEXT    NOT NULL,
    amount            BIGINT  NOT NULL CHECK (amount > 0),
    currency          TEXT    NOT NULL,
    description       TEXT,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL
);
CREATE INDEX disputes_by_owner ON disputes (livemode, owner, reference);
CREATE INDEX disputes_by_authorization ON disputes (authorization_ref);
-- One undecided case per authorization, whatever the race.
CREATE UNIQUE INDEX disputes_one_pending ON disputes (authorization_ref) WHERE status IN ('open', 'submitted');

-- +goose Down
DROP TABLE disputes;
