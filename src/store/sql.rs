//! The body both SQL backends share: [`SqlStore`], generic over sqlx's `Database`.
//!
//! Each statement is written once, with `$1`-style placeholders (SQLite reads them as
//! PostgreSQL does), bound once, and read into one `FromRow` struct per table. What really
//! differs stays with the backend: a few statements and transaction locks ([`Backend`]), how a
//! timestamp is stored ([`Ts`]), opening and migrations, and multi-replica coordination
//! (each backend's `impl Coordination`).
//!
//! Rust does not imply `where` clauses, so every shared `impl` repeats the same short list:
//! the backend's connection runs queries, and the column types the body reads and binds
//! ([`Col`]) are supported. A concern added later (its trait, its SQL `impl`, its migrations)
//! copies that list and nothing else.

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::query::Query as SqlxQuery;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Type};
use tokio::sync::RwLock;

use super::{Lifecycle, StoreError, TokenCipher};

/// `meta` key of the key-check value (see [`TokenCipher::fingerprint`]).
const KEY_CHECK: &str = "token_key_check";

/// A query of backend `DB` with its own argument type.
pub(super) type Query<'q, DB> = SqlxQuery<'q, DB, <DB as Database>::Arguments>;

/// A column type the shared body binds and reads on backend `DB`.
pub(super) trait Col<DB: Database>:
    Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>
{
}
impl<DB: Database, T> Col<DB> for T where
    T: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>
{
}

/// An optional value to bind: sqlx implements `Encode` for `Option` once per backend rather
/// than for every `Database`, so the shared body binds `Opt(value)`. (Reading an `Option` needs
/// nothing: `Decode` for `Option` is generic.)
pub(super) struct Opt<T>(pub Option<T>);

impl<DB: Database, T: Type<DB>> Type<DB> for Opt<T> {
    fn type_info() -> DB::TypeInfo {
        T::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        T::compatible(ty)
    }
}

impl<'q, DB: Database, T: Encode<'q, DB> + Type<DB>> Encode<'q, DB> for Opt<T> {
    fn encode_by_ref(&self, buf: &mut DB::ArgumentBuffer) -> Result<IsNull, BoxDynError> {
        match &self.0 {
            Some(v) => v.encode_by_ref(buf),
            None => Ok(IsNull::Yes),
        }
    }

    fn produces(&self) -> Option<DB::TypeInfo> {
        match &self.0 {
            Some(v) => v.produces(),
            None => Some(T::type_info()),
        }
    }
}

/// A timestamp as its backend stores it: `timestamptz` on PostgreSQL; on SQLite, RFC 3339 text
/// in UTC with microseconds (`2025-01-02T03:04:05.123456Z`), which sorts as text. Values are
/// truncated to microseconds ([`super::now`]), the precision both keep, so they round-trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Ts(pub DateTime<Utc>);

impl From<Ts> for DateTime<Utc> {
    fn from(t: Ts) -> Self {
        t.0
    }
}

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
pub(super) trait Backend: Database<Arguments: IntoArguments<Self>> {
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

    /// How many rows a statement changed (each backend's result type has it, no trait does).
    fn rows_affected(done: &Self::QueryResult) -> u64;
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

impl<DB: Backend> SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Type<DB> + Encode<'a, DB> + ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    String: Col<DB>,
    i64: Col<DB>,
    i32: Col<DB>,
    bool: Col<DB>,
    Ts: Col<DB>,
{
    /// Checks (or, on a fresh database, records) the key-check value on a migrated database,
    /// then holds `cipher` for the store. The pool is closed if this fails.
    pub(super) async fn new(
        pool: Pool<DB>,
        cipher: TokenCipher,
        leases: DB::Leases,
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
    pub(super) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, DB>, StoreError> {
        Ok(self.pool.begin_with(DB::BEGIN_WRITE).await?)
    }

    async fn check_key(pool: &Pool<DB>, cipher: &TokenCipher) -> Result<(), StoreError> {
        let mut tx = pool.begin_with(DB::BEGIN_WRITE).await?;
        if let Some(lock) = DB::KEY_CHECK_LOCK {
            sqlx::query(lock).execute(&mut *tx).await?;
        }
        let stored: Option<String> = sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
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
                // No key-check yet. Normally a fresh database; if tokens exist anyway (the row was
                // lost), make sure this key reads them before vouching for it.
                let any: Option<(String, String)> =
                    sqlx::query_as("SELECT id, token_ciphertext FROM connections LIMIT 1")
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
        conn: &mut DB::Connection,
        cipher: &TokenCipher,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(KEY_CHECK)
        .bind(cipher.fingerprint())
        .execute(conn)
        .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl<DB: Backend> Lifecycle for SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Type<DB> + Encode<'a, DB> + ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    String: Col<DB>,
    i64: Col<DB>,
    i32: Col<DB>,
    bool: Col<DB>,
    Ts: Col<DB>,
{
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn rotate_secret_key(&self, new: &TokenCipher) -> Result<usize, StoreError> {
        let mut cipher = self.cipher.write().await;
        let mut tx = self.begin_write().await?;
        if let Some(lock) = DB::ROTATION_LOCK {
            sqlx::query(lock).execute(&mut *tx).await?;
        }
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, token_ciphertext FROM connections ORDER BY id")
                .fetch_all(&mut *tx)
                .await?;
        for (id, old) in &rows {
            let token = cipher.decrypt(id, old)?;
            sqlx::query("UPDATE connections SET token_ciphertext = $1 WHERE id = $2")
                .bind(new.encrypt(id, token.expose_secret()))
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let helpers: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, helper_ciphertext FROM streams \
             WHERE helper_ciphertext IS NOT NULL ORDER BY id",
        )
        .fetch_all(&mut *tx)
        .await?;
        for (id, old) in &helpers {
            let helper = cipher.decrypt(id, old)?;
            sqlx::query("UPDATE streams SET helper_ciphertext = $1 WHERE id = $2")
                .bind(new.encrypt(id, helper.expose_secret()))
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let answers: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT scope, key, response FROM idempotency_keys WHERE response IS NOT NULL",
        )
        .fetch_all(&mut *tx)
        .await?;
        for (scope, key, old) in &answers {
            let aad = super::idempotency::aad(scope, key);
            let plain = cipher.decrypt(&aad, old)?;
            sqlx::query("UPDATE idempotency_keys SET response = $1 WHERE scope = $2 AND key = $3")
                .bind(new.encrypt(&aad, plain.expose_secret()))
                .bind(scope.as_str())
                .bind(key.as_str())
                .execute(&mut *tx)
                .await?;
        }
        Self::set_key_check(&mut tx, new).await?;
        tx.commit().await?;
        *cipher = new.clone();
        Ok(rows.len())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// A count or index as the databases keep it (a signed 64-bit integer).
pub(super) fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Db("a counter is out of range".into()))
}

/// A stored count or index, which is never negative.
pub(super) fn to_u64(v: i64, col: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Db(format!("negative {col} in database")))
}
