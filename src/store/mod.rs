//! Persistence behind one trait, [`Store`], made of one trait per concern:
//! [`ConnectionStore`], [`StreamStore`], [`IdempotencyStore`], [`InventoryStore`],
//! [`EventStore`], [`Coordination`] (what several replicas sharing the store need) and [`Lifecycle`].
//! Call sites take an `Arc<dyn Store>` from [`open`]; a trait object's supertrait methods
//! need no imports.
//!
//! Two backends: SQLite (the default, one process) and PostgreSQL (any number of replicas).
//! They share one body (`sql.rs` and each concern's file: every statement, binding and row
//! mapping written once); each backend's module holds only what really differs: opening and
//! migrations, a few statements and locks, how timestamps are stored, and its
//! [`Coordination`], which has no default methods.
//!
//! A new concern is a new file with its data types, its trait and its body for the SQL
//! backends, one more supertrait of [`Store`], and a migration per backend.
//!
//! Kandji API tokens (and helper flows and idempotent answers) are encrypted at rest with
//! [`TokenCipher`]. A key-check value in the `meta` table detects, at [`open`], a secret key
//! that differs from the one the stored tokens were encrypted with.

mod connections;
mod coordination;
mod crypto;
mod events;
mod idempotency;
mod inventory;
mod postgres;
mod sql;
mod sqlite;
mod streams;

use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use connections::{Connection, ConnectionPatch, ConnectionStore, NewConnection};
pub use coordination::{BudgetTake, Coordination};
pub use crypto::{CipherError, TokenCipher};
pub use events::{
    DeliveryOutcome, DeliveryRecord, DueDelivery, EventStore, NewEvent, NewSubscription,
    StoredEvent, Subscription, delivery_id,
};
pub use idempotency::{IdempotencyClaim, IdempotencyStore};
pub use inventory::{InventoryDevice, InventoryStore, InventorySync};
pub use streams::{
    DeliveryFailure, NewStream, Stream, StreamCheckpoint, StreamJob, StreamState, StreamStore,
};

/// Persistence for the connector: every concern, on one database. A backend implements each
/// concern trait, then says `impl Store for … {}`; leaving one out does not compile.
pub trait Store:
    Lifecycle
    + ConnectionStore
    + StreamStore
    + IdempotencyStore
    + InventoryStore
    + EventStore
    + Coordination
    + Send
    + Sync
    + 'static
{
}

/// The database itself: reachability, the secret key, closing.
#[async_trait::async_trait]
pub trait Lifecycle: Send + Sync {
    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Re-encrypts every token, every stored helper flow and idempotent answer (and the
    /// key-check value) under `new` in one transaction and from then on uses `new`.
    /// Returns the number of tokens re-encrypted. On error nothing changes.
    async fn rotate_secret_key(&self, new: &TokenCipher) -> Result<usize, StoreError>;

    /// Closes the underlying pool gracefully (for SQLite this checkpoints the
    /// write-ahead log). Further calls fail.
    async fn close(&self);
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
        crate::telemetry::store_error(unavailable);
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
        Ok(Arc::new(sqlite::open(url, cipher).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::open(url, cipher).await?))
    } else {
        // Never echo the URL: a PostgreSQL URL can carry a password.
        Err(StoreError::InvalidUrl(
            "expected a URL starting with sqlite: or postgres://".into(),
        ))
    }
}

/// Now, truncated to microseconds: the precision both backends keep, so a timestamp
/// round-trips unchanged.
fn now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

fn new_connection_id() -> String {
    format!("conn_{}", uuid::Uuid::new_v4().simple())
}

fn new_stream_id() -> String {
    format!("str_{}", uuid::Uuid::new_v4().simple())
}

fn new_subscription_id() -> String {
    format!("sub_{}", uuid::Uuid::new_v4().simple())
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
