//! Tests that need PostgreSQL (KANDJI_CONNECTOR_TEST_POSTGRES_URL; scripts/test.sh sets it when
//! PostgreSQL answers at 127.0.0.1:5432 and otherwise reports these as skipped). Each test gets
//! a fresh schema.

mod outage;
mod scale_out;
