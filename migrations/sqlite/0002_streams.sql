-- Streams: durable jobs that deliver every record of a list card to a helper-flow callback.
--
-- Portable SQL as in 0001 (TEXT/INTEGER, RFC 3339 UTC text timestamps, application ids).
-- A stream's progress is checkpointed in its row: every record below `done_below` is
-- finished (delivered or permanently failed), `done_above` is a JSON array of the finished
-- indices above it (bounded by the delivery window), and the cursor fetches the page that
-- starts at record `page_start`. A process that restarts resumes from there.

CREATE TABLE streams (
    id                 TEXT    PRIMARY KEY,         -- "str_" + uuid v4 (simple)
    owner              TEXT    NOT NULL,            -- id of the API key that started it (sees and cancels it)
    connection_id      TEXT    NOT NULL,            -- no foreign key: a stream outlives its connection in the history
    card_id            TEXT    NOT NULL,
    result_set         TEXT    NOT NULL,
    inputs             TEXT    NOT NULL,            -- JSON object, as validated
    options            TEXT    NOT NULL,            -- JSON object: the card's options (without helper_flow / record_limit)
    helper_ciphertext  TEXT    NULL,                -- {"url","secret","state"} sealed like tokens, AAD = id; NULL once finished
    callback_origin    TEXT    NOT NULL,            -- scheme://host[:port] of the callback, for display
    record_limit       INTEGER NULL CHECK (record_limit >= 0),
    state              TEXT    NOT NULL CHECK (state IN ('running', 'succeeded', 'failed', 'cancelled')),
    error              TEXT    NULL,
    record_count       INTEGER NOT NULL DEFAULT 0,  -- records delivered
    failed_deliveries  INTEGER NOT NULL DEFAULT 0,
    pages_fetched      INTEGER NOT NULL DEFAULT 0,
    done_below         INTEGER NOT NULL DEFAULT 0,
    done_above         TEXT    NOT NULL DEFAULT '[]',
    page_start         INTEGER NOT NULL DEFAULT 0,
    cursor_offset      INTEGER NOT NULL DEFAULT 0,
    cursor_page        INTEGER NOT NULL DEFAULT 1,
    cursor_next        TEXT    NULL,                -- query string of Kandji's `next` link to follow
    started_at         TEXT    NOT NULL,
    finished_at        TEXT    NULL,
    updated_at         TEXT    NOT NULL
);

CREATE INDEX streams_by_state ON streams (state);
CREATE INDEX streams_by_started ON streams (started_at);
CREATE INDEX streams_by_owner ON streams (owner, started_at);

-- Records the helper flow refused for good (or that ran out of retries), with its answer.
CREATE TABLE stream_failures (
    stream_id   TEXT    NOT NULL REFERENCES streams (id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL,
    webhook_id  TEXT    NOT NULL,
    status      INTEGER NULL,                       -- the callback's HTTP status; NULL when it never answered
    error       TEXT    NOT NULL,
    body        TEXT    NULL,                       -- the start of the callback's answer (at most 1 KiB)
    attempts    INTEGER NOT NULL,
    failed_at   TEXT    NOT NULL,
    PRIMARY KEY (stream_id, idx)
);
