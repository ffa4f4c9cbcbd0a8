//! The only way out to Kandji: base URL, auth, timeouts, response caps, budget and retries.
//! Every request to a tenant goes through [`KandjiClient::send`]; [`TenantCache`] resolves a
//! stored connection to the [`Tenant`] it sends to.

mod budget;
mod client;
mod tenants;
mod url;

pub use budget::{Budget, BudgetReport, Budgets, DEFAULT_REQUESTS_PER_HOUR};
pub use client::*;
pub use tenants::{TenantCache, TenantError};
pub use url::*;
