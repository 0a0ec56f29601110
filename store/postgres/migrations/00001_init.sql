-- +goose Up
-- Times are Unix microseconds (BIGINT) and JSON is TEXT in both databases,
-- so that one set of SQL statements serves PostgreSQL and SQLite alike.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE programs (
    livemode   BOOLEAN NOT NULL,
    code       TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    brand      TEXT    NOT NULL,
    card_type  TEXT    NOT NULL,
    currency   TEXT    NOT NULL,
    markets    TEXT    NOT NULL,
    limits     TEXT    NOT NULL,
    status     TEXT    NOT NULL CHECK (status IN ('enabled', 'disabled')),
    providers  TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL,
    PRIMARY KEY (livemode, code)
);

CREATE TABLE provider_states (
    livemode BOOLEAN NOT NULL,
    name     TEXT    NOT NULL,
    enabled  BOOLEAN NOT NULL,
    PRIMARY KEY (livemode, name)
);

CREATE TABLE cards (
    reference         TEXT    PRIMARY KEY,
    livemode          BOOLEAN NOT NULL,
    owner             TEXT    NOT NULL,
    program           TEXT    NOT NULL,
    provider          TEXT,
    status            TEXT    NOT NULL,
    status_reason     TEXT,
    type              TEXT    NOT NULL,
    brand             TEXT    NOT NULL,
    currency          TEXT    NOT NULL,
    last4             TEXT,
    exp_month         INTEGER,
    exp_year          INTEGER,
    nickname          TEXT,
    spending_controls TEXT    NOT NULL,
    metadata          TEXT    NOT NULL,
    key_id            TEXT,
    sealed_pan        BYTEA,
    provider_card_id  TEXT,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL
);
CREATE INDEX cards_by_owner ON cards (livemode, owner, reference);
CREATE INDEX cards_by_status ON cards (livemode, status, reference);

-- Every balance lives here and only changes together with the journal lines
-- that explain it. Wallets and cards are floored at zero; system accounts are
-- the other side of money entering and leaving and may go negative.
CREATE TABLE accounts (
    id         TEXT    PRIMARY KEY,
    kind       TEXT    NOT NULL,
    livemode   BOOLEAN NOT NULL,
    currency   TEXT    NOT NULL,
    owner      TEXT,
    balance    BIGINT  NOT NULL DEFAULT 0,
    created_at BIGINT  NOT NULL,
    CHECK (balance >= 0 OR kind IN ('funding', 'network_settlement', 'dispute_recovery'))
);
CREATE UNIQUE INDEX wallets_by_owner ON accounts (livemode, owner, currency) WHERE kind = 'wallet';

CREATE TABLE journal_entries (
    reference         TEXT    PRIMARY KEY,
    livemode          BOOLEAN NOT NULL,
    type              TEXT    NOT NULL,
    currency          TEXT    NOT NULL,
    card              TEXT,
    authorization_ref TEXT,
    dispute           TEXT,
    created_at        BIGINT  NOT NULL
);

CREATE TABLE journal_lines (
    reference     TEXT   PRIMARY KEY,
    entry         TEXT   NOT NULL REFERENCES journal_entries (reference),
    account       TEXT   NOT NULL REFERENCES accounts (id),
    amount        BIGINT NOT NULL CHECK (amount <> 0),
    balance_after BIGINT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX journal_lines_by_account ON journal_lines (account, reference);
CREATE INDEX journal_lines_by_entry ON journal_lines (entry);

CREATE TABLE authorizations (
    reference       TEXT    PRIMARY KEY,
    livemode        BOOLEAN NOT NULL,
    owner           TEXT    NOT NULL,
    card            TEXT    NOT NULL REFERENCES cards (reference),
    status          TEXT    NOT NULL,
    amount          BIGINT  NOT NULL CHECK (amount > 0),
    currency        TEXT    NOT NULL,
    held_amount     BIGINT  NOT NULL CHECK (held_amount >= 0),
    settled_amount  BIGINT  NOT NULL CHECK (settled_amount >= 0),
    reversed_amount BIGINT  NOT NULL CHECK (reversed_amount >= 0),
    refunded_amount BIGINT  NOT NULL CHECK (refunded_amount >= 0 AND refunded_amount <= settled_amount),
    merchant        TEXT    NOT NULL,
    decline_reason  TEXT,
    expires_at      BIGINT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    CHECK (status = 'declined' OR amount = held_amount + settled_amount + reversed_amount)
);
CREATE INDEX authorizations_by_owner ON authorizations (livemode, owner, reference);
CREATE INDEX authorizations_by_card ON authorizations (card, reference);
CREATE INDEX authorizations_pending ON authorizations (expires_at) WHERE status = 'pending';

-- Approved spend per card and UTC window ("d20261124", "m202611"), kept in
-- the same transaction as the authorizations it sums.
CREATE TABLE card_spend (
    card   TEXT   NOT NULL,
    period TEXT   NOT NULL,
    amount BIGINT NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (card, period)
);

CREATE TABLE cardholders (
    livemode   BOOLEAN NOT NULL,
    subject    TEXT    NOT NULL,
    kyc        TEXT    NOT NULL,
    updated_at BIGINT  NOT NULL,
    PRIMARY KEY (livemode, subject)
);

-- The transactional outbox: written with the change it reports.
CREATE TABLE events (
    seq        BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         TEXT    NOT NULL UNIQUE,
    type       TEXT    NOT NULL,
    livemode   BOOLEAN NOT NULL,
    object_ref TEXT    NOT NULL,
    payload    TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);
CREATE INDEX events_by_mode ON events (livemode, seq);

CREATE TABLE audit_log (
    reference  TEXT    PRIMARY KEY,
    livemode   BOOLEAN NOT NULL,
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    target     TEXT    NOT NULL,
    before     TEXT,
    after      TEXT,
    request_id TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);
CREATE INDEX audit_log_by_mode ON audit_log (livemode, reference);

CREATE TABLE idempotency_keys (
    scope           TEXT    NOT NULL,
    key             TEXT    NOT NULL,
    fingerprint     TEXT    NOT NULL,
    applied         BOOLEAN NOT NULL DEFAULT FALSE,
    response_status INTEGER,
    response_body   BYTEA,
    response_type   TEXT,
    created_at      BIGINT  NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

-- +goose Down
DROP TABLE idempotency_keys;
DROP TABLE audit_log;
DROP TABLE events;
DROP TABLE cardholders;
DROP TABLE card_spend;
DROP TABLE authorizations;
DROP TABLE journal_lines;
DROP TABLE journal_entries;
DROP TABLE accounts;
DROP TABLE cards;
DROP TABLE provider_states;
DROP TABLE programs;
DROP TABLE settings;
