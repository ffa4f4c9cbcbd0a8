-- Kandji events (the PostgreSQL twin of migrations/sqlite/0070, plus a poll lease): subscriptions to event cards, each connection's audit-log position, the
-- events detected (kept for replay until KANDJI_CONNECTOR_EVENTS_RETENTION_DAYS) and one
-- delivery per event and subscription (its webhook-id is its id, stable across retries,
-- restarts and replicas). Portable SQL as in 0001.

CREATE TABLE event_subscriptions (
    id                TEXT NOT NULL PRIMARY KEY,    -- "sub_" + uuid v4 (simple)
    owner             TEXT NOT NULL,                -- id of the API key that created it
    connection_id     TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    event             TEXT NOT NULL,                -- event card id
    filters           TEXT NOT NULL,                -- JSON object, as validated
    helper_ciphertext TEXT NOT NULL,                -- {"url","secret"} sealed like tokens, AAD = id
    callback_origin   TEXT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX event_subscriptions_by_connection ON event_subscriptions (connection_id);

-- Where a connection's audit-log poll goes on from: events at or after `audit_after` are read
-- again and deduplicated by (connection, event, source id).
CREATE TABLE event_positions (
    connection_id TEXT NOT NULL PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    audit_after   TIMESTAMPTZ NOT NULL,
    polls         BIGINT NOT NULL DEFAULT 0,
    updated_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE events (
    id            TEXT NOT NULL PRIMARY KEY,        -- "evt_" + digest of (connection, event, source id)
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    event         TEXT NOT NULL,
    source_id     TEXT NOT NULL,                    -- the audit event id (or inventory change id)
    occurred_at   TIMESTAMPTZ NOT NULL,
    payload       TEXT NOT NULL,                    -- JSON object sent to subscribers
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX events_by_connection ON events (connection_id, event, occurred_at);
CREATE INDEX events_by_created ON events (created_at);

CREATE TABLE event_deliveries (
    id              TEXT NOT NULL PRIMARY KEY,      -- the webhook-id: "msg_" + event + subscription
    event_id        TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    subscription_id TEXT NOT NULL REFERENCES event_subscriptions (id) ON DELETE CASCADE,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    lease_owner     TEXT NULL,                      -- the replica posting it now
    lease_until     TIMESTAMPTZ NULL,
    last_status     INTEGER NULL,
    last_error      TEXT NULL,
    last_body       TEXT NULL,
    last_attempt_at TIMESTAMPTZ NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX event_deliveries_due ON event_deliveries (state, next_attempt_at);
CREATE INDEX event_deliveries_by_subscription ON event_deliveries (subscription_id, updated_at);
CREATE INDEX event_deliveries_by_event ON event_deliveries (event_id);

-- Which replica polls a connection's audit log: one at a time (times are the database's).
CREATE TABLE event_leases (
    connection_id TEXT        PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    owner         TEXT        NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL
);
