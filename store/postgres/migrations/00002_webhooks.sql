-- +goose Up
-- Webhook delivery: endpoints, the dispatcher's cursor over the events
-- outbox, one delivery per event and endpoint, and every attempt.

CREATE TABLE webhook_endpoints (
    reference  TEXT    PRIMARY KEY,
    livemode   BOOLEAN NOT NULL,
    url        TEXT    NOT NULL,
    events     TEXT    NOT NULL,
    secret     TEXT    NOT NULL,
    -- The outbox head at registration: the endpoint gets later events.
    after_seq  BIGINT  NOT NULL,
    created_at BIGINT  NOT NULL
);
CREATE INDEX webhook_endpoints_by_mode ON webhook_endpoints (livemode, reference);

-- One row: the last event turned into deliveries. A gap in events.seq may be
-- a transaction that has not committed yet; horizon_seq and horizon_xid
-- record when such a gap was seen (every seq below horizon_seq was taken by a
-- transaction older than horizon_xid; horizon_at is the time), so that the
-- gap is passed once all those transactions have ended and it is known to be
-- a rollback.
CREATE TABLE webhook_dispatch (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq    BIGINT  NOT NULL,
    horizon_seq BIGINT,
    horizon_xid BIGINT,
    horizon_at  BIGINT
);
INSERT INTO webhook_dispatch (id, last_seq) SELECT 1, COALESCE(MAX(seq), 0) FROM events;

CREATE TABLE webhook_deliveries (
    reference       TEXT    PRIMARY KEY,
    livemode        BOOLEAN NOT NULL,
    endpoint        TEXT    NOT NULL,
    event_id        TEXT    NOT NULL,
    event_seq       BIGINT  NOT NULL,
    event_type      TEXT    NOT NULL,
    object_ref      TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempt_count   INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    -- A worker's claim: until lease_until no other worker sends it.
    lease_until     BIGINT,
    lease_token     TEXT,
    delivered_at    BIGINT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    UNIQUE (endpoint, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_in_order ON webhook_deliveries (endpoint, object_ref, event_seq) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_mode ON webhook_deliveries (livemode, reference);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint, reference);

CREATE TABLE webhook_attempts (
    seq          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery     TEXT    NOT NULL REFERENCES webhook_deliveries (reference),
    attempted_at BIGINT  NOT NULL,
    duration_ms  BIGINT  NOT NULL,
    status_code  INTEGER,
    error        TEXT
);
CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery, seq);

-- +goose Down
DROP TABLE webhook_attempts;
DROP TABLE webhook_deliveries;
DROP TABLE webhook_dispatch;
DROP TABLE webhook_endpoints;
