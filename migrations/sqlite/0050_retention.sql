-- Retention: finished streams (and, by cascade, their failures) are deleted oldest first once
-- older than KANDJI_CONNECTOR_RETENTION_DAYS.
CREATE INDEX streams_by_finished ON streams (finished_at);
