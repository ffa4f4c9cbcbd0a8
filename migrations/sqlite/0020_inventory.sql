-- Device inventory for device-trust lookups (issue 6): per connection, opt-in.
--
-- inventory_devices holds what the background sync last saw of each device, keyed by the
-- upper-cased serial number; a restart loads it so lookups are answered before the first sync.
-- Rows are written only when a device changes (or first appears); `last_seen` is when that row
-- was written, and every row left after a completed sync was seen by it (rows a completed sync
-- did not see are deleted), so a row's freshness is the later of `last_seen` and the last
-- completed sync's start (inventory_syncs.last_started_at).

ALTER TABLE connections ADD COLUMN inventory_sync INTEGER NOT NULL DEFAULT 0
    CHECK (inventory_sync IN (0, 1));

CREATE TABLE inventory_devices (
    connection_id   TEXT    NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    serial_key      TEXT    NOT NULL,          -- upper-case serial number
    device_id       TEXT    NOT NULL,
    platform        TEXT    NULL,
    os_version      TEXT    NULL,
    blueprint_name  TEXT    NULL,
    last_check_in   TEXT    NULL,              -- RFC 3339 UTC
    mdm_enabled     INTEGER NOT NULL,
    agent_installed INTEGER NOT NULL,
    is_missing      INTEGER NOT NULL,
    is_removed      INTEGER NOT NULL,
    last_seen       TEXT    NOT NULL,          -- RFC 3339 UTC
    PRIMARY KEY (connection_id, serial_key)
);

-- The last completed sync of each connection's inventory.
CREATE TABLE inventory_syncs (
    connection_id    TEXT    PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    last_started_at  TEXT    NOT NULL,
    last_finished_at TEXT    NOT NULL,
    devices          INTEGER NOT NULL,
    kandji_calls     INTEGER NOT NULL
);
