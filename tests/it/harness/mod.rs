//! The test harness, shared by every test module:
//! - `TestApp` (app.rs): the real server on 127.0.0.1:0 and its simulated Kandji tenant, built
//!   with `TestApp::builder()` (tenant, store, keys, budget, any config tweak); `Api` calls any
//!   running connector and asserts problem+json answers (`Resp::problem`).
//! - `TestDb` and `both!` (db.rs): SQLite or a PostgreSQL schema of the test's own.
//! - kandji.rs: what reached the simulated Kandji tenant, exactly (method, path, query, body).
//! - `Receiver` (receiver.rs): a helper-flow callback receiver whose answers can be switched,
//!   and `wait_for` a number of callbacks.
//! - `Binary` (binary.rs): the real `kandji-connector` binary, started, killed, its logs read.
//! - `repo_file`, `builtin_card`, `operator_cards` (files.rs): the repository's files, and
//!   operator cards made from built-in ones.
//! - `eventually` (wait.rs).
//!
//! Tests that need an outside program carry `needs_<program>` in their name (`needs_postgres`);
//! scripts/test.sh probes for each and skips those tests, visibly, when it is missing.
#![allow(dead_code)]

mod app;
mod binary;
mod db;
mod files;
pub mod kandji;
mod receiver;
mod wait;

pub use app::{API_KEY, Api, Resp, TestApp, devices, start_sim};
pub use binary::{Binary, address as binary_address};
pub(crate) use db::both;
pub use db::{PgSchema, TestDb};
pub use files::{builtin_card, operator_cards, repo_file};
pub use receiver::{Answer, Hit, Receiver, SECRET, assert_signed, helper_flow};
pub use wait::eventually;
