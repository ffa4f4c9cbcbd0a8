//! The only way out to Kandji: base URL, auth, timeouts, response caps (and, per issue 4,
//! budget and retries). Every request to a tenant goes through [`KandjiClient::send`].

mod budget;
mod client;
mod url;

pub use budget::{Budget, BudgetReport, Budgets, DEFAULT_REQUESTS_PER_HOUR};
pub use client::*;
pub use url::*;
