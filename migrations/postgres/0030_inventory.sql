-- Device inventory for device-trust lookups: the PostgreSQL twin of migrations/sqlite/0020.
ALTER TABLE connections ADD COLUMN inventory_sync BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE inventory_devices (
    connection_id   TEXT        NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    serial_key      TEXT        NOT NULL,          -- upper-case serial number
    device_id       TEXT        NOT NULL,
    platform        TEXT        NULL,
    os_version      TEXT        NULL,
    blueprint_name  TEXT        NULL,
    last_check_in   TIMESTAMPTZ NULL,
    mdm_enabled     BOOLEAN     NOT NULL,
    agent_installed BOOLEAN     NOT NULL,
    is_missing      BOOLEAN     NOT NULL,
    is_removed      BOOLEAN     NOT NULL,
    last_seen       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (connection_id, serial_key)
);

CREATE TABLE inventory_syncs (
    connection_id    TEXT        PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    last_started_at  TIMESTAMPTZ NOT NULL,
    last_finished_at TIMESTAMPTZ NOT NULL,
    devices          BIGINT      NOT NULL,
    kandji_calls     BIGINT      NOT NULL
);
