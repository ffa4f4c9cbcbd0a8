//! Kandji connections (tenants): their records and encrypted API tokens.

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use super::StoreError;
use super::sql::Ts;

/// A Kandji tenant the connector can talk to. The API token is deliberately
/// not part of it; fetch it with [`ConnectionStore::connection_token`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Connection {
    /// `"conn_"` followed by a simple (hyphenless) UUID v4.
    pub id: String,
    pub name: String,
    pub api_url: String,
    pub requests_per_hour: Option<u32>,
    /// Whether a background sync keeps a device inventory for device-trust lookups.
    pub inventory_sync: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Input to [`ConnectionStore::create_connection`]. `Debug` redacts the token.
#[derive(Debug)]
pub struct NewConnection {
    pub name: String,
    pub api_url: String,
    pub api_token: SecretString,
    pub requests_per_hour: Option<u32>,
}

/// Input to [`ConnectionStore::update_connection`]: `None` leaves a field as it is.
/// `requests_per_hour: Some(None)` clears the limit. `Debug` redacts the token.
/// A new connection starts with `inventory_sync` off; turn it on with a patch.
#[derive(Debug, Default)]
pub struct ConnectionPatch {
    pub name: Option<String>,
    pub api_url: Option<String>,
    pub api_token: Option<SecretString>,
    pub requests_per_hour: Option<Option<u32>>,
    pub inventory_sync: Option<bool>,
}

impl ConnectionPatch {
    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.api_url.is_none()
            && self.api_token.is_none()
            && self.requests_per_hour.is_none()
            && self.inventory_sync.is_none()
    }
}

/// Kandji connections, their tokens encrypted at rest (associated data: the connection id).
#[async_trait::async_trait]
pub trait ConnectionStore: Send + Sync {
    async fn create_connection(&self, new: NewConnection) -> Result<Connection, StoreError>;

    /// All connections, oldest first.
    async fn list_connections(&self) -> Result<Vec<Connection>, StoreError>;

    async fn get_connection(&self, id: &str) -> Result<Option<Connection>, StoreError>;

    /// The decrypted API token of a connection; `Ok(None)` if there is no such
    /// connection, `Err(StoreError::Cipher(_))` if the stored ciphertext does
    /// not decrypt for this row.
    async fn connection_token(&self, id: &str) -> Result<Option<SecretString>, StoreError>;

    /// Applies `patch`; `Ok(None)` if there is no such connection. A non-empty
    /// patch sets `updated_at`; an empty patch returns the row unchanged.
    async fn update_connection(
        &self,
        id: &str,
        patch: ConnectionPatch,
    ) -> Result<Option<Connection>, StoreError>;

    /// `Ok(true)` if a connection was deleted.
    async fn delete_connection(&self, id: &str) -> Result<bool, StoreError>;
}

/// The columns of a [`ConnectionRow`], for `concat!` (sqlx takes only `&'static str` queries).
macro_rules! connection_columns {
    () => {
        "id, name, api_url, requests_per_hour, inventory_sync, created_at, updated_at"
    };
}
pub(super) use connection_columns;

#[derive(sqlx::FromRow)]
pub(super) struct ConnectionRow {
    id: String,
    name: String,
    api_url: String,
    requests_per_hour: Option<i64>,
    inventory_sync: bool,
    created_at: Ts,
    updated_at: Ts,
}

impl TryFrom<ConnectionRow> for Connection {
    type Error = StoreError;

    fn try_from(row: ConnectionRow) -> Result<Self, StoreError> {
        let requests_per_hour = row
            .requests_per_hour
            .map(u32::try_from)
            .transpose()
            .map_err(|_| StoreError::Db("requests_per_hour out of range in database".into()))?;
        Ok(Connection {
            id: row.id,
            name: row.name,
            api_url: row.api_url,
            requests_per_hour,
            inventory_sync: row.inventory_sync,
            created_at: row.created_at.0,
            updated_at: row.updated_at.0,
        })
    }
}

/// `impl ConnectionStore for SqlStore<$db>` (see `sql.rs` for why a macro).
macro_rules! connection_store {
    ($db:ty) => {
        const _: () = {
            use secrecy::{ExposeSecret, SecretString};

            use $crate::store::connections::{
                Connection, ConnectionPatch, ConnectionRow, ConnectionStore, NewConnection,
                connection_columns,
            };
            use $crate::store::sql::{SqlStore, Ts};
            use $crate::store::{StoreError, new_connection_id, now};

            #[async_trait::async_trait]
            impl ConnectionStore for SqlStore<$db> {
                async fn create_connection(
                    &self,
                    new: NewConnection,
                ) -> Result<Connection, StoreError> {
                    let id = new_connection_id();
                    let at = now();
                    let cipher = self.cipher.read().await;
                    let ciphertext = cipher.encrypt(&id, new.api_token.expose_secret());
                    sqlx::query(
                        "INSERT INTO connections (id, name, api_url, token_ciphertext, \
                         requests_per_hour, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $6)",
                    )
                    .bind(&id)
                    .bind(&new.name)
                    .bind(&new.api_url)
                    .bind(ciphertext)
                    .bind(new.requests_per_hour.map(i64::from))
                    .bind(Ts(at))
                    .execute(&self.pool)
                    .await?;
                    drop(cipher);
                    Ok(Connection {
                        id,
                        name: new.name,
                        api_url: new.api_url,
                        requests_per_hour: new.requests_per_hour,
                        inventory_sync: false,
                        created_at: at,
                        updated_at: at,
                    })
                }

                async fn list_connections(&self) -> Result<Vec<Connection>, StoreError> {
                    let rows: Vec<ConnectionRow> = sqlx::query_as(concat!(
                        "SELECT ",
                        connection_columns!(),
                        " FROM connections ORDER BY created_at, id"
                    ))
                    .fetch_all(&self.pool)
                    .await?;
                    rows.into_iter().map(Connection::try_from).collect()
                }

                async fn get_connection(&self, id: &str) -> Result<Option<Connection>, StoreError> {
                    let row: Option<ConnectionRow> = sqlx::query_as(concat!(
                        "SELECT ",
                        connection_columns!(),
                        " FROM connections WHERE id = $1"
                    ))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                    row.map(Connection::try_from).transpose()
                }

                async fn connection_token(
                    &self,
                    id: &str,
                ) -> Result<Option<SecretString>, StoreError> {
                    let cipher = self.cipher.read().await;
                    let ciphertext: Option<String> = sqlx::query_scalar(
                        "SELECT token_ciphertext FROM connections WHERE id = $1",
                    )
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                    match ciphertext {
                        None => Ok(None),
                        Some(c) => Ok(Some(cipher.decrypt(id, &c)?)),
                    }
                }

                async fn update_connection(
                    &self,
                    id: &str,
                    patch: ConnectionPatch,
                ) -> Result<Option<Connection>, StoreError> {
                    if patch.is_empty() {
                        return self.get_connection(id).await;
                    }
                    let cipher = self.cipher.read().await;
                    let ciphertext = patch
                        .api_token
                        .as_ref()
                        .map(|t| cipher.encrypt(id, t.expose_secret()));
                    let (set_rph, rph) = match patch.requests_per_hour {
                        Some(v) => (true, v.map(i64::from)),
                        None => (false, None),
                    };
                    // One statement, so there is no read-modify-write race. A NULL keeps a field.
                    let row: Option<ConnectionRow> = sqlx::query_as(concat!(
                        "UPDATE connections \
                         SET name = COALESCE($1, name), api_url = COALESCE($2, \
                         api_url), token_ciphertext = COALESCE($3, token_ciphertext), \
                         inventory_sync = COALESCE($4, inventory_sync), \
                         requests_per_hour = CASE WHEN $5 THEN $6 ELSE \
                         requests_per_hour END, updated_at = $7 \
                         WHERE id = $8 RETURNING ",
                        connection_columns!()
                    ))
                    .bind(patch.name)
                    .bind(patch.api_url)
                    .bind(ciphertext)
                    .bind(patch.inventory_sync)
                    .bind(set_rph)
                    .bind(rph)
                    .bind(Ts(now()))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                    drop(cipher);
                    row.map(Connection::try_from).transpose()
                }

                async fn delete_connection(&self, id: &str) -> Result<bool, StoreError> {
                    let done = sqlx::query("DELETE FROM connections WHERE id = $1")
                        .bind(id)
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() > 0)
                }
            }
        };
    };
}
pub(super) use connection_store;
