//! The body both SQL backends share: [`SqlStore`] and the `impl`s of the concern traits.
//!
//! Each statement is written once, with `$1`-style placeholders (SQLite reads them as
//! PostgreSQL does), bound once, and read into one `FromRow` struct per table. What really
//! differs stays with the backend: a few statements and transaction locks ([`Backend`]), how a
//! timestamp is stored ([`Ts`]), opening and migrations, and multi-replica coordination (each
//! backend's `impl Coordination`).
//!
//! The `impl`s are `macro_rules!` bodies, expanded once per backend by [`sql_store!`], rather
//! than generic over sqlx's `Database`. Written generically, every `impl` had to repeat a
//! nine-line `where` clause (Rust does not imply bounds on `&mut DB::Connection`, `&str`,
//! `String`, `i64`…), bind every `Option` through a wrapper (sqlx implements `Encode` for
//! `Option` once per backend, not generically) and read `rows_affected` through a hook. The
//! macro bodies are that same code on a concrete backend: plain sqlx, checked by the compiler
//! for each backend, formatted by rustfmt. (rustfmt leaves a whole macro unformatted if one
//! line in it cannot fit 100 columns, string lines included: keep SQL lines in the bodies
//! short.)
//!
//! A concern added later is a file with its types, its trait, its `macro_rules!` body (after
//! the pattern of `connections.rs`) and one line in [`sql_store!`]; the compiler then asks
//! both backends for it.

use chrono::{DateTime, Utc};
use sqlx::Pool;
use sqlx::query::Query as SqlxQuery;
use tokio::sync::RwLock;

use super::{StoreError, TokenCipher};

/// `meta` key of the key-check value (see [`TokenCipher::fingerprint`]).
pub(super) const KEY_CHECK: &str = "token_key_check";

/// A query of backend `DB` with its own argument type.
pub(super) type Query<'q, DB> = SqlxQuery<'q, DB, <DB as sqlx::Database>::Arguments>;

/// A timestamp as its backend stores it: `timestamptz` on PostgreSQL; on SQLite, RFC 3339 text
/// in UTC with microseconds (`2025-01-02T03:04:05.123456Z`), which sorts as text. Values are
/// truncated to microseconds ([`super::now`]), the precision both keep, so they round-trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Ts(pub DateTime<Utc>);

/// Which of this process's lease parameters a statement binds after its shared ones
/// (see [`Backend::bind_lease`]).
#[derive(Clone, Copy, Debug)]
pub(super) enum Lease {
    /// The holder, then the lease length: the statement takes or renews the lease.
    Renew,
    /// The holder only: the statement applies only while this process holds the lease.
    Holder,
}

/// What differs between the SQL backends inside the shared body. Opening, migrations,
/// timestamps ([`Ts`]) and [`super::Coordination`] are each backend's own.
pub(super) trait Backend: sqlx::Database {
    /// This process's part in stream leases (PostgreSQL: its replica name and the lease
    /// length); `()` for a store used by one process.
    type Leases: Send + Sync + 'static;

    /// Starts a transaction that writes. SQLite: `BEGIN IMMEDIATE` takes the write lock at
    /// once, so another process cannot write between this transaction's reads and writes.
    const BEGIN_WRITE: &'static str;
    /// Run first in the transaction that checks or records the key check, if anything
    /// (PostgreSQL: an advisory lock, so replicas starting together do not race).
    const KEY_CHECK_LOCK: Option<&'static str>;
    /// Run first in the key rotation's transaction, if anything (PostgreSQL: other replicas
    /// may read meanwhile but not write what is being re-encrypted).
    const ROTATION_LOCK: Option<&'static str>;
    /// Records a running stream. Binds: id, owner, connection_id, card_id, result_set, inputs,
    /// options, helper_ciphertext, callback_origin, record_limit, started_at (also
    /// updated_at), then [`Lease::Renew`].
    const INSERT_STREAM: &'static str;
    /// Saves a running stream's progress. Binds: the checkpoint ($1–$9), updated_at, id, then
    /// [`Lease::Renew`]. Applies only to a running stream (that this process holds).
    const CHECKPOINT_STREAM: &'static str;
    /// Ends a stream and erases its helper flow. Binds: the checkpoint ($1–$9), state, error,
    /// finished_at (also updated_at), id, then [`Lease::Holder`]. Applies while the stream is
    /// running (held by this process), or when it is already in `state`.
    const FINISH_STREAM: &'static str;

    /// Binds this process's lease parameters, if the backend has leases.
    fn bind_lease<'q>(q: Query<'q, Self>, leases: &Self::Leases, lease: Lease) -> Query<'q, Self>;
}

/// A store on one SQL database. `DB::Leases` is what the backend keeps for leases.
pub(super) struct SqlStore<DB: Backend> {
    pub(super) pool: Pool<DB>,
    /// Held for reading by every operation that encrypts or decrypts (for the whole
    /// operation), and for writing by key rotation, so no token is ever written under a key
    /// that a concurrent rotation has just retired.
    pub(super) cipher: RwLock<TokenCipher>,
    pub(super) leases: DB::Leases,
}

/// Implements every concern of [`super::Store`] but [`super::Coordination`] for
/// `SqlStore<$db>`: invoked once in each backend's module.
macro_rules! sql_store {
    ($db:ty) => {
        $crate::store::sql::lifecycle!($db);
        $crate::store::connections::connection_store!($db);
        $crate::store::streams::stream_store!($db);
        $crate::store::idempotency::idempotency_store!($db);
        $crate::store::inventory::inventory_store!($db);
        $crate::store::events::event_store!($db);
    };
}
pub(super) use sql_store;

/// Opening (the key check), write transactions and [`super::Lifecycle`].
macro_rules! lifecycle {
    ($db:ty) => {
        const _: () = {
            use secrecy::ExposeSecret;
            use tokio::sync::RwLock;

            use $crate::store::sql::{Backend, KEY_CHECK, SqlStore};
            use $crate::store::{Lifecycle, StoreError, TokenCipher};

            impl SqlStore<$db> {
                /// Checks (or, on a fresh database, records) the key-check value on a migrated
                /// database, then holds `cipher` for the store. Closes the pool if this fails.
                pub(super) async fn new(
                    pool: sqlx::Pool<$db>,
                    cipher: TokenCipher,
                    leases: <$db as Backend>::Leases,
                ) -> Result<Self, StoreError> {
                    match Self::check_key(&pool, &cipher).await {
                        Ok(()) => Ok(Self {
                            pool,
                            cipher: RwLock::new(cipher),
                            leases,
                        }),
                        Err(e) => {
                            pool.close().await;
                            Err(e)
                        }
                    }
                }

                /// A write transaction (see [`Backend::BEGIN_WRITE`]).
                pub(super) async fn begin_write(
                    &self,
                ) -> Result<sqlx::Transaction<'static, $db>, StoreError> {
                    Ok(self.pool.begin_with(<$db>::BEGIN_WRITE).await?)
                }

                async fn check_key(
                    pool: &sqlx::Pool<$db>,
                    cipher: &TokenCipher,
                ) -> Result<(), StoreError> {
                    let mut tx = pool.begin_with(<$db>::BEGIN_WRITE).await?;
                    if let Some(lock) = <$db>::KEY_CHECK_LOCK {
                        sqlx::query(lock).execute(&mut *tx).await?;
                    }
                    let stored: Option<String> =
                        sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
                            .bind(KEY_CHECK)
                            .fetch_optional(&mut *tx)
                            .await?;
                    match stored {
                        Some(check) => {
                            if !cipher.verify_fingerprint(&check) {
                                return Err(StoreError::WrongSecretKey);
                            }
                        }
                        None => {
                            // No key-check yet. Normally a fresh database; if tokens exist
                            // anyway (the row was lost), make sure this key reads them before
                            // vouching for it.
                            let any: Option<(String, String)> = sqlx::query_as(
                                "SELECT id, token_ciphertext FROM connections LIMIT 1",
                            )
                            .fetch_optional(&mut *tx)
                            .await?;
                            if let Some((id, ciphertext)) = any {
                                cipher
                                    .decrypt(&id, &ciphertext)
                                    .map_err(|_| StoreError::WrongSecretKey)?;
                            }
                            Self::set_key_check(&mut tx, cipher).await?;
                        }
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn set_key_check(
                    conn: &mut <$db as sqlx::Database>::Connection,
                    cipher: &TokenCipher,
                ) -> Result<(), StoreError> {
                    sqlx::query(
                        "INSERT INTO meta (key, value) \
                         VALUES ($1, $2) \
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    )
                    .bind(KEY_CHECK)
                    .bind(cipher.fingerprint())
                    .execute(conn)
                    .await?;
                    Ok(())
                }
            }

            impl SqlStore<$db> {
                /// Re-encrypts under `new` the `(id, ciphertext)` rows `select` reads, whose
                /// associated data is their id, writing each back with `update` (binds: the
                /// ciphertext, the id). Returns how many.
                async fn reseal(
                    conn: &mut <$db as sqlx::Database>::Connection,
                    old: &TokenCipher,
                    new: &TokenCipher,
                    select: &'static str,
                    update: &'static str,
                ) -> Result<usize, StoreError> {
                    let rows: Vec<(String, String)> =
                        sqlx::query_as(select).fetch_all(&mut *conn).await?;
                    for (id, sealed) in &rows {
                        let plain = old.decrypt(id, sealed)?;
                        sqlx::query(update)
                            .bind(new.encrypt(id, plain.expose_secret()))
                            .bind(id)
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(rows.len())
                }
            }

            #[async_trait::async_trait]
            impl Lifecycle for SqlStore<$db> {
                async fn ping(&self) -> Result<(), StoreError> {
                    sqlx::query("SELECT 1").execute(&self.pool).await?;
                    Ok(())
                }

                async fn rotate_secret_key(&self, new: &TokenCipher) -> Result<usize, StoreError> {
                    let mut cipher = self.cipher.write().await;
                    let mut tx = self.begin_write().await?;
                    if let Some(lock) = <$db>::ROTATION_LOCK {
                        sqlx::query(lock).execute(&mut *tx).await?;
                    }
                    let connections = Self::reseal(
                        &mut tx,
                        &cipher,
                        new,
                        "SELECT id, token_ciphertext FROM connections ORDER BY id",
                        "UPDATE connections SET token_ciphertext = $1 WHERE id = $2",
                    )
                    .await?;
                    Self::reseal(
                        &mut tx,
                        &cipher,
                        new,
                        "SELECT id, helper_ciphertext \
                         FROM streams \
                         WHERE helper_ciphertext IS NOT NULL \
                         ORDER BY id",
                        "UPDATE streams SET helper_ciphertext = $1 WHERE id = $2",
                    )
                    .await?;
                    Self::reseal(
                        &mut tx,
                        &cipher,
                        new,
                        "SELECT id, helper_ciphertext FROM event_subscriptions ORDER BY id",
                        "UPDATE event_subscriptions SET helper_ciphertext = $1 WHERE id = $2",
                    )
                    .await?;
                    let answers: Vec<(String, String, String)> = sqlx::query_as(
                        "SELECT scope, key, response \
                         FROM idempotency_keys \
                         WHERE response IS NOT NULL",
                    )
                    .fetch_all(&mut *tx)
                    .await?;
                    for (scope, key, old) in &answers {
                        let aad = $crate::store::idempotency::aad(scope, key);
                        let plain = cipher.decrypt(&aad, old)?;
                        sqlx::query(
                            "UPDATE idempotency_keys \
                             SET response = $1 \
                             WHERE scope = $2 AND key = $3",
                        )
                        .bind(new.encrypt(&aad, plain.expose_secret()))
                        .bind(scope)
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                    }
                    Self::set_key_check(&mut tx, new).await?;
                    tx.commit().await?;
                    *cipher = new.clone();
                    Ok(connections)
                }

                async fn close(&self) {
                    self.pool.close().await;
                }
            }
        };
    };
}
pub(super) use lifecycle;

/// A count or index as the databases keep it (a signed 64-bit integer).
pub(super) fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Db("a counter is out of range".into()))
}

/// A stored count or index, which is never negative.
pub(super) fn to_u64(v: i64, col: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Db(format!("negative {col} in database")))
}
