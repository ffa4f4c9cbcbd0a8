//! Persistence behind one trait.
//!
//! Callers see only [`Store`] (through [`open`]) and the plain data types in
//! this module. The SQLite implementation is the default; a PostgreSQL one
//! will follow behind the same trait.
//!
//! Kandji API tokens are encrypted at rest with [`TokenCipher`]. A key-check
//! value in the `meta` table detects, at [`open`], a secret key that differs
//! from the one the stored tokens were encrypted with.

mod crypto;
mod inventory;
mod postgres;
mod sqlite;
mod streams;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::SecretString;

pub use crypto::{CipherError, TokenCipher};
pub use inventory::{InventoryDevice, InventorySync};
pub use streams::{DeliveryFailure, NewStream, Stream, StreamCheckpoint, StreamJob, StreamState};

/// A Kandji tenant the connector can talk to. The API token is deliberately
/// not part of it; fetch it with [`Store::connection_token`].
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

/// Input to [`Store::create_connection`]. `Debug` redacts the token.
#[derive(Debug)]
pub struct NewConnection {
    pub name: String,
    pub api_url: String,
    pub api_token: SecretString,
    pub requests_per_hour: Option<u32>,
}

/// Input to [`Store::update_connection`]: `None` leaves a field as it is.
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

/// The outcome of [`Store::idempotency_claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// The key was free and is now held by this request.
    Claimed,
    /// The same request was answered before: replay this.
    Done { status: u16, response: String },
    /// The same request is still in flight.
    InFlight,
    /// The key was used with a different request.
    Mismatch,
}

/// The outcome of [`Store::budget_take`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetTake {
    /// One request's worth of budget was taken.
    Granted,
    /// Nothing was taken; budget is available again after this long.
    Wait(Duration),
}

/// Errors from the store. Messages never contain tokens or keys.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached in time (pool timed out, connection refused or lost,
    /// SQLite busy): a retry later may succeed.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Db(String),
    #[error("token encryption error: {0}")]
    Cipher(#[from] CipherError),
    #[error("the secret key does not match the one the stored tokens were encrypted with")]
    WrongSecretKey,
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        let unavailable = match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => true,
            // SQLite's SQLITE_BUSY / SQLITE_LOCKED (and their extended codes): another writer held
            // the file for longer than the busy timeout. PostgreSQL's codes are not numbers.
            sqlx::Error::Database(d)
                if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() =>
            {
                matches!(
                    d.code()
                        .and_then(|c| c.parse::<u32>().ok())
                        .map(|c| c & 0xff),
                    Some(5 | 6)
                )
            }
            // PostgreSQL: the server is shutting down or out of connections (class 57P, 53300).
            sqlx::Error::Database(d) => matches!(
                d.code().as_deref(),
                Some("57P01" | "57P02" | "57P03" | "53300")
            ),
            _ => false,
        };
        if unavailable {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Db(e.to_string())
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Db(format!("migration failed: {e}"))
    }
}

/// Persistence for the connector.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

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

    /// Re-encrypts every token, every stored helper flow (and the key-check
    /// value) under `new` in one transaction and from then on uses `new`.
    /// Returns the number of tokens re-encrypted. On error nothing changes.
    async fn rotate_secret_key(&self, new: &TokenCipher) -> Result<usize, StoreError>;

    /// Records a new running stream, its helper flow encrypted (associated data: the stream id).
    async fn create_stream(&self, new: NewStream) -> Result<Stream, StoreError>;

    async fn get_stream(&self, id: &str) -> Result<Option<Stream>, StoreError>;

    /// The most recently started streams first, at most `limit`, optionally only those of
    /// `owner` and only those in `state`.
    async fn list_streams(
        &self,
        owner: Option<&str>,
        state: Option<StreamState>,
        limit: u32,
    ) -> Result<Vec<Stream>, StoreError>;

    /// A running stream with its decrypted helper flow and checkpoint; `Ok(None)` if there is
    /// no such stream or it is no longer running.
    async fn stream_job(&self, id: &str) -> Result<Option<StreamJob>, StoreError>;

    /// Ids of the running streams, oldest first (to resume at start-up).
    async fn running_streams(&self) -> Result<Vec<String>, StoreError>;

    /// Saves a running stream's progress and its new delivery failures in one transaction.
    /// `Ok(false)` (and nothing saved) if the stream is no longer running.
    async fn checkpoint_stream(
        &self,
        id: &str,
        checkpoint: &StreamCheckpoint,
        failures: &[DeliveryFailure],
    ) -> Result<bool, StoreError>;

    /// Ends a stream: final progress and failures, `state`, `error`, `finished_at`, and erases
    /// the helper flow. Applies while the stream is running, or (to record a cancelled runner's
    /// last progress) when it is already in `state`; `Ok(false)` otherwise.
    async fn finish_stream(
        &self,
        id: &str,
        state: StreamState,
        error: Option<&str>,
        checkpoint: &StreamCheckpoint,
        failures: &[DeliveryFailure],
    ) -> Result<bool, StoreError>;

    /// Marks a running stream cancelled (erasing its helper flow); returns the stream in
    /// whatever state it now has, `Ok(None)` if there is no such stream.
    async fn cancel_stream(&self, id: &str) -> Result<Option<Stream>, StoreError>;

    /// A stream's delivery failures by index, those above `after` (exclusive), at most `limit`.
    async fn stream_failures(
        &self,
        id: &str,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<DeliveryFailure>, StoreError>;

    /// Claims an idempotency key for a request. Returns what is already there, if anything
    /// (records older than `not_before` are deleted first and do not count).
    async fn idempotency_claim(
        &self,
        scope: &str,
        key: &str,
        request_hash: &str,
        not_before: DateTime<Utc>,
    ) -> Result<IdempotencyClaim, StoreError>;

    /// Stores the answer of a claimed key (encrypted).
    async fn idempotency_complete(
        &self,
        scope: &str,
        key: &str,
        status: u16,
        response: &str,
    ) -> Result<(), StoreError>;

    /// Releases a claim whose request never reached Kandji, so it can be tried again.
    async fn idempotency_release(&self, scope: &str, key: &str) -> Result<(), StoreError>;

    /// Up to `limit` inventory devices of a connection whose serial key sorts after `after`,
    /// in serial-key order (so a large inventory loads in bounded batches).
    async fn inventory_devices(
        &self,
        connection: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<InventoryDevice>, StoreError>;

    /// Writes new or changed devices and deletes gone ones (by serial key), in one transaction.
    async fn inventory_apply(
        &self,
        connection: &str,
        upserts: &[InventoryDevice],
        deletes: &[String],
    ) -> Result<(), StoreError>;

    /// Records a completed sync.
    async fn inventory_sync_done(
        &self,
        connection: &str,
        sync: &InventorySync,
    ) -> Result<(), StoreError>;

    /// The last completed sync of a connection, if any.
    async fn inventory_last_sync(
        &self,
        connection: &str,
    ) -> Result<Option<InventorySync>, StoreError>;

    /// Forgets a connection's inventory and sync record (the sync was turned off).
    async fn inventory_clear(&self, connection: &str) -> Result<(), StoreError>;

    /// Takes or renews, for `ttl`, the right to sync this connection's inventory from Kandji;
    /// `false` while another replica holds it (that replica's syncs are then loaded from the
    /// store). A store used by one process only always grants it.
    async fn inventory_lease(&self, _connection: &str, _ttl: Duration) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// Gives the lease up (at shutdown or when the sync is turned off), if this replica holds it.
    async fn inventory_lease_release(&self, _connection: &str) -> Result<(), StoreError> {
        Ok(())
    }
    /// How long a stream's lease lasts without a checkpoint renewing it (PostgreSQL; a single
    /// SQLite process needs no leases). Set once at start-up, from the stream configuration.
    fn set_stream_lease(&self, _lease: Duration) {}

    /// Takes over running streams that no live replica holds (never leased, or the lease has
    /// expired), at most `limit`, and returns their ids, oldest first; this process then holds
    /// their leases. PostgreSQL claims with `FOR UPDATE SKIP LOCKED`, so replicas sweeping at
    /// once take different streams. The default (one process) is [`Store::running_streams`].
    async fn claim_streams(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        let mut ids = self.running_streams().await?;
        ids.truncate(limit as usize);
        Ok(ids)
    }

    /// Gives up this process's lease on a stream (at shutdown, after its last checkpoint) so
    /// another replica can resume it at once. The default does nothing.
    async fn release_stream(&self, _id: &str) -> Result<(), StoreError> {
        Ok(())
    }

    /// Whether several replicas share this store (PostgreSQL): then streams are leased and
    /// swept for (see [`Store::claim_streams`]) and the Kandji client takes each connection's
    /// request budget with [`Store::budget_take`].
    fn is_shared(&self) -> bool {
        false
    }

    /// GCRA on the connection's shared budget row: a request is granted when the row's
    /// theoretical arrival time is at most `tolerance` ahead of now, and moves it on by
    /// `interval`. Atomic across replicas. The default grants everything (no shared budget).
    async fn budget_take(
        &self,
        _connection_id: &str,
        _interval: Duration,
        _tolerance: Duration,
    ) -> Result<BudgetTake, StoreError> {
        Ok(BudgetTake::Granted)
    }

    /// Closes the underlying pool gracefully (for SQLite this checkpoints the
    /// write-ahead log). Further calls fail. The default does nothing.
    async fn close(&self) {}
}

/// Opens the store named by `database_url`, runs its migrations and verifies
/// that `cipher` holds the key the stored tokens were encrypted with.
///
/// * `sqlite://path`, `sqlite:path` (optionally `?mode=rwc`), `sqlite::memory:`:
///   SQLite. The file is created if missing unless the URL gives another
///   `mode`.
/// * `postgres://…`, `postgresql://…`: PostgreSQL, shared by any number of replicas.
///   Migrations are applied under an advisory lock. `options=-csearch_path%3D<schema>` in the
///   URL selects a schema (which must exist).
pub async fn open(database_url: &str, cipher: TokenCipher) -> Result<Arc<dyn Store>, StoreError> {
    let url = database_url.trim();
    if url.starts_with("sqlite:") {
        let store = sqlite::SqliteStore::open(url, cipher).await?;
        Ok(Arc::new(store))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = postgres::PgStore::open(url, cipher).await?;
        Ok(Arc::new(store))
    } else {
        // Never echo the URL: a PostgreSQL URL can carry a password.
        Err(StoreError::InvalidUrl(
            "expected a URL starting with sqlite: or postgres://".into(),
        ))
    }
}

/// Timestamps are stored as RFC 3339 text in UTC with microsecond precision
/// (`2025-01-02T03:04:05.123456Z`): sortable as text, and the precision
/// PostgreSQL's `timestamptz` keeps, so values round-trip unchanged.
fn now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

fn format_ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn parse_ts(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StoreError::Db(format!("invalid timestamp in database: {s:?}")))
}

fn new_connection_id() -> String {
    format!("conn_{}", uuid::Uuid::new_v4().simple())
}

fn new_stream_id() -> String {
    format!("str_{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::StoreError;
    use sqlx::Connection;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
    use std::time::Duration;

    #[test]
    fn pool_and_connection_failures_are_unavailable_other_errors_are_not() {
        assert!(matches!(
            StoreError::from(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            StoreError::from(sqlx::Error::Io(
                std::io::ErrorKind::ConnectionRefused.into()
            )),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            StoreError::from(sqlx::Error::RowNotFound),
            StoreError::Db(_)
        ));
    }

    #[tokio::test]
    async fn a_busy_sqlite_file_is_unavailable_a_broken_statement_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("busy.db"))
            .create_if_missing(true)
            .busy_timeout(Duration::ZERO);
        let mut holder = SqliteConnection::connect_with(&options).await.unwrap();
        let mut other = SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&mut holder)
            .await
            .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut holder)
            .await
            .unwrap();
        let busy = sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut other)
            .await
            .unwrap_err();
        assert!(
            matches!(StoreError::from(busy), StoreError::Unavailable(_)),
            "a locked file is a transient condition"
        );
        let broken = sqlx::query("INSERT INTO no_such_table VALUES (1)")
            .execute(&mut other)
            .await
            .unwrap_err();
        assert!(matches!(StoreError::from(broken), StoreError::Db(_)));
    }
}
