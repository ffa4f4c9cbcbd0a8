-- Streams: the PostgreSQL twin of migrations/sqlite/0002, plus a lease.
--
-- Several replicas share these rows. A replica runs a stream while it holds its lease
-- (`lease_owner`, `lease_expires_at`), renewed by every checkpoint; a replica that dies
-- stops renewing and another claims the stream (SELECT ... FOR UPDATE SKIP LOCKED) once
-- the lease has expired, resuming from the checkpoint.

CREATE TABLE streams (
    id                 TEXT        PRIMARY KEY,     -- "str_" + uuid v4 (simple)
    owner              TEXT        NOT NULL,
    connection_id      TEXT        NOT NULL,        -- no foreign key: a stream outlives its connection
    card_id            TEXT        NOT NULL,
    result_set         TEXT        NOT NULL,
    inputs             TEXT        NOT NULL,        -- JSON object, as validated (text: kept byte for byte)
    options            TEXT        NOT NULL,
    helper_ciphertext  TEXT        NULL,            -- sealed like tokens, AAD = id; NULL once finished
    callback_origin    TEXT        NOT NULL,
    record_limit       BIGINT      NULL CHECK (record_limit >= 0),
    state              TEXT        NOT NULL CHECK (state IN ('running', 'succeeded', 'failed', 'cancelled')),
    error              TEXT        NULL,
    record_count       BIGINT      NOT NULL DEFAULT 0,
    failed_deliveries  BIGINT      NOT NULL DEFAULT 0,
    pages_fetched      BIGINT      NOT NULL DEFAULT 0,
    done_below         BIGINT      NOT NULL DEFAULT 0,
    done_above         TEXT        NOT NULL DEFAULT '[]',
    page_start         BIGINT      NOT NULL DEFAULT 0,
    cursor_offset      BIGINT      NOT NULL DEFAULT 0,
    cursor_page        BIGINT      NOT NULL DEFAULT 1,
    cursor_next        TEXT        NULL,
    started_at         TIMESTAMPTZ NOT NULL,
    finished_at        TIMESTAMPTZ NULL,
    updated_at         TIMESTAMPTZ NOT NULL,
    lease_owner        TEXT        NULL,            -- the replica running it
    lease_expires_at   TIMESTAMPTZ NULL             -- another replica may take it over after this
);

CREATE INDEX streams_by_state ON streams (state);
CREATE INDEX streams_by_started ON streams (started_at);
CREATE INDEX streams_by_owner ON streams (owner, started_at);
CREATE INDEX streams_running_lease ON streams (lease_expires_at) WHERE state = 'running';

CREATE TABLE stream_failures (
    stream_id   TEXT        NOT NULL REFERENCES streams (id) ON DELETE CASCADE,
    idx         BIGINT      NOT NULL,
    webhook_id  TEXT        NOT NULL,
    status      INTEGER     NULL,
    error       TEXT        NOT NULL,
    body        TEXT        NULL,
    attempts    BIGINT      NOT NULL,
    failed_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (stream_id, idx)
);
