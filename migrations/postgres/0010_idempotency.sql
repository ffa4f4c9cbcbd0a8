-- Idempotency keys of card invocations: the PostgreSQL twin of migrations/sqlite/0010.
CREATE TABLE idempotency_keys (
    scope          TEXT        NOT NULL,
    key            TEXT        NOT NULL,
    request_hash   TEXT        NOT NULL,
    status         INTEGER     NULL,           -- NULL while the first request is in flight
    response       TEXT        NULL,           -- "v1." + base64(nonce || ciphertext)
    created_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
