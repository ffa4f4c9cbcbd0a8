-- The device's user's email in the inventory, for the Device User Changed event: '' when Kandji
-- lists no user, NULL when not yet read (rows synced before this migration), so the first sync
-- after it does not take every assigned device for a change.
ALTER TABLE inventory_devices ADD COLUMN user_email TEXT NULL;
