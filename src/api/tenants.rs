//! Connections resolved to Kandji tenants, cached briefly so an invocation does not read and
//! decrypt its connection on every call. Changes made through this process invalidate at once;
//! changes made by another replica are seen within the cache's lifetime.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::FieldError;
use crate::kandji::{ApiBaseUrl, Tenant};
use crate::store::{Store, StoreError};

/// Why a connection could not be resolved to a tenant.
pub enum TenantError {
    /// No such connection: the caller's `connection` field is wrong.
    Unknown(FieldError),
    /// The store failed or holds something unusable.
    Store(StoreError),
}

const TTL: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct TenantCache {
    map: Mutex<HashMap<String, (Tenant, Instant)>>,
}

impl TenantCache {
    /// The connection's tenant.
    pub async fn get(&self, store: &dyn Store, connection: &str) -> Result<Tenant, TenantError> {
        if let Some((t, at)) = self.map.lock().expect("tenant cache").get(connection)
            && at.elapsed() < TTL
        {
            return Ok(t.clone());
        }
        let unknown = || {
            TenantError::Unknown(FieldError::new(
                &["connection"],
                "no such connection",
                "unknown_connection",
            ))
        };
        let conn = store
            .get_connection(connection)
            .await
            .map_err(TenantError::Store)?
            .ok_or_else(unknown)?;
        let token = store
            .connection_token(connection)
            .await
            .map_err(TenantError::Store)?
            .ok_or_else(unknown)?;
        let base = ApiBaseUrl::parse(&conn.api_url).map_err(|e| {
            TenantError::Store(StoreError::Db(format!(
                "connection {connection}: the stored API URL is invalid: {e}"
            )))
        })?;
        let tenant = Tenant::new(conn.id, base, token, conn.requests_per_hour);
        let mut map = self.map.lock().expect("tenant cache");
        if map.len() > 10_000 {
            map.clear();
        }
        map.insert(connection.to_string(), (tenant.clone(), Instant::now()));
        Ok(tenant)
    }

    pub fn invalidate(&self, connection: &str) {
        self.map.lock().expect("tenant cache").remove(connection);
    }
}
