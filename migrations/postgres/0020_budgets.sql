-- The per-connection Kandji request budget shared by every replica: GCRA state, one row a
-- connection. `tat` is the theoretical arrival time of the next request; a request is allowed
-- when tat - now() <= the burst tolerance, and then moves tat on by one emission interval.
-- No foreign key: a row of a deleted connection is harmless and tiny.
CREATE TABLE budgets (
    connection_id  TEXT        PRIMARY KEY,
    tat            TIMESTAMPTZ NOT NULL
);
