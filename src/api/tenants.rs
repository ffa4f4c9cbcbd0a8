//! Connections resolved to Kandji tenants, cached briefly so an invocation does not read and
//! decrypt its connection on every call. Changes made through this process invalidate at once;
//! changes made by another replica are seen within the cache's lifetime.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::FieldError;
use crate::kandji::{ApiBaseUrl, Tenant};
use crate::store::Store;

const TTL: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct TenantCache {
    map: Mutex<HashMap<String, (Tenant, Instant)>>,
}

impl TenantCache {
    /// The connection's tenant; `Err(Some(field error))` when unknown, `Err(None)` when the store failed.
    pub async fn get(
        &self,
        store: &dyn Store,
        connection: &str,
    ) -> Result<Tenant, Option<FieldError>> {
        if let Some((t, at)) = self.map.lock().expect("tenant cache").get(connection)
            && at.elapsed() < TTL
        {
            return Ok(t.clone());
        }
        let unknown = || {
            Some(FieldError::new(
                &["connection"],
                "no such connection",
                "unknown_connection",
            ))
        };
        let conn = store
            .get_connection(connection)
            .await
            .map_err(|_| None)?
            .ok_or_else(unknown)?;
        let token = store
            .connection_token(connection)
            .await
            .map_err(|_| None)?
            .ok_or_else(unknown)?;
        let base = ApiBaseUrl::parse(&conn.api_url).map_err(|_| None)?;
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
