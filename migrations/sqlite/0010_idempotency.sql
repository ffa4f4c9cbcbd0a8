-- Idempotency keys of card invocations: the first answer is replayed for 24 hours.
-- The answer is encrypted (it may carry a PIN or a FileVault key); AAD = scope + key.
CREATE TABLE idempotency_keys (
    scope          TEXT NOT NULL,          -- hash of the caller's API key
    key            TEXT NOT NULL,          -- the caller's Idempotency-Key
    request_hash   TEXT NOT NULL,          -- SHA-256 of card id + request body
    status         INTEGER NULL,           -- NULL while the first request is in flight
    response       TEXT NULL,              -- "v1." + base64(nonce || ciphertext)
    created_at     TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
