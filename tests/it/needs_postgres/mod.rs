//! Tests that need PostgreSQL, at KANDJI_CONNECTOR_TEST_POSTGRES_URL (scripts/test.sh points it at
//! the local server unless it is set, and reports these tests as skipped when none answers). Each
//! test gets a fresh schema.

mod events;
mod outage;
mod scale_out;
