//! kandji-connector: hosts Okta-Workflows-style action cards for the Kandji API.
pub mod simulator;
pub mod store;
pub mod catalog;
pub mod error;
pub mod kandji;
pub mod engine;
