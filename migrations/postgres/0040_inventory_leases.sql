-- Which replica syncs a connection's device inventory: one at a time, so several replicas do not
-- each page through Kandji's whole device list (the others load what it stores). A lease that is
-- not renewed expires, and another replica takes over. Times are the database's (no clock skew).
CREATE TABLE inventory_leases (
    connection_id TEXT        PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    owner         TEXT        NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL
);
