//! Every black-box test, in one test binary: the real server on 127.0.0.1:0 against the
//! simulated Kandji tenant (harness/), one module per concern.
//!
//! One binary links once, where a file per test crate linked the whole service sixteen times.
//! To add tests: a new file `tests/it/<name>.rs` and `mod <name>;` below. A test that needs an
//! outside program carries `needs_<program>` in its name (see harness/mod.rs and the
//! requirement table in scripts/test.sh); PostgreSQL's are `needs_postgres::*` below and the
//! `::needs_postgres` halves of `both!`.

mod harness;

mod api;
mod card_fixtures;
mod card_rules;
mod cards_2025;
mod cards_custom;
mod cards_devices;
mod cards_lists;
mod catalog;
mod console;
mod demo;
mod deployment;
mod events;
mod healthcheck;
mod mcp;
mod metrics;
mod needs_postgres;
mod paging_order;
mod preview;
mod readme;
mod resilience;
mod retention;
mod secrets;
mod security;
mod simulator;
mod store;
mod streams;
mod trust;
