//! Connections resolved to Kandji tenants, cached briefly so an invocation, a stream or an
//! inventory sync does not read and decrypt its connection on every call. One cache serves the
//! whole process: changes made through this process invalidate it at once; changes made by
//! another replica are seen within the cache's lifetime.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{ApiBaseUrl, Tenant};
use crate::store::{Store, StoreError};

/// Why a connection could not be resolved to a tenant.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// No such connection (never created, or deleted).
    #[error("no such connection")]
    Unknown,
    /// The store failed or holds something unusable.
    #[error(transparent)]
    Store(StoreError),
}

const TTL: Duration = Duration::from_secs(5);
/// Entries kept at most; past that the cache starts afresh.
const MAX_ENTRIES: usize = 10_000;

/// The process's connection-to-tenant cache (cheap to clone: clones share it).
#[derive(Clone)]
pub struct TenantCache {
    store: Arc<dyn Store>,
    map: Arc<Mutex<HashMap<String, (Tenant, Instant)>>>,
}

impl TenantCache {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            map: Arc::default(),
        }
    }

    /// The connection's tenant.
    pub async fn get(&self, connection: &str) -> Result<Tenant, TenantError> {
        if let Some((t, at)) = self.lock().get(connection)
            && at.elapsed() < TTL
        {
            return Ok(t.clone());
        }
        let store = self.store.as_ref();
        let conn = store
            .get_connection(connection)
            .await
            .map_err(TenantError::Store)?
            .ok_or(TenantError::Unknown)?;
        let token = store
            .connection_token(connection)
            .await
            .map_err(TenantError::Store)?
            .ok_or(TenantError::Unknown)?;
        let base = ApiBaseUrl::parse(&conn.api_url).map_err(|e| {
            TenantError::Store(StoreError::Db(format!(
                "connection {connection}: the stored API URL is invalid: {e}"
            )))
        })?;
        let tenant = Tenant::new(conn.id, base, token, conn.requests_per_hour);
        let mut map = self.lock();
        if map.len() > MAX_ENTRIES {
            map.clear();
        }
        map.insert(connection.to_string(), (tenant.clone(), Instant::now()));
        Ok(tenant)
    }

    /// Forgets the connection (it was changed or deleted).
    pub fn invalidate(&self, connection: &str) {
        self.lock().remove(connection);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Tenant, Instant)>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use secrecy::{ExposeSecret, SecretString};

    use super::*;
    use crate::store::{ConnectionPatch, NewConnection, TokenCipher};

    #[tokio::test]
    async fn serves_from_the_cache_until_invalidated_and_clones_share_it() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = crate::store::open(&url, TokenCipher::generate().0)
            .await
            .unwrap();
        let conn = store
            .create_connection(NewConnection {
                name: "t".into(),
                api_url: "https://accuhive.api.kandji.io".into(),
                api_token: SecretString::from("token-one"),
                requests_per_hour: Some(60),
            })
            .await
            .unwrap();
        let cache = TenantCache::new(store.clone());
        let other = cache.clone();
        let t = cache.get(&conn.id).await.unwrap();
        assert_eq!(t.token.expose_secret(), "token-one");
        assert_eq!(t.requests_per_hour, 60);
        let patch = ConnectionPatch {
            api_token: Some(SecretString::from("token-two")),
            ..Default::default()
        };
        store.update_connection(&conn.id, patch).await.unwrap();
        // Within its lifetime the cache answers without reading the store.
        let t = other.get(&conn.id).await.unwrap();
        assert_eq!(t.token.expose_secret(), "token-one");
        // One invalidation reaches every clone.
        cache.invalidate(&conn.id);
        let t = other.get(&conn.id).await.unwrap();
        assert_eq!(t.token.expose_secret(), "token-two");
        assert!(matches!(
            cache.get("conn_missing").await,
            Err(TenantError::Unknown)
        ));
        store.delete_connection(&conn.id).await.unwrap();
        cache.invalidate(&conn.id);
        assert!(matches!(
            other.get(&conn.id).await,
            Err(TenantError::Unknown)
        ));
    }
}
