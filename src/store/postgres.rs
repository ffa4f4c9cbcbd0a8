//! PostgreSQL, for several replicas sharing one database: what differs from SQLite.
//!
//! The same statements as SQLite (see `sql.rs`), plus what several replicas need:
//! * migrations run at open under sqlx's PostgreSQL advisory lock, and the key check under
//!   a transaction-scoped advisory lock, so replicas starting together do not race;
//! * stream leases: a replica runs a stream while it holds the row's lease, renewed by
//!   every checkpoint; expired leases are claimed with `FOR UPDATE SKIP LOCKED`;
//! * inventory leases: one replica at a time syncs a connection's devices from Kandji;
//! * a shared GCRA budget row per connection (see [`Coordination::budget_take`]).
//!
//! Lease times are the database's `now()`, so replicas' clocks need not agree.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::migrate::Migrator;
use sqlx::postgres::{
    PgArgumentBuffer, PgConnectOptions, PgPoolOptions, PgTypeInfo, PgValueRef, Postgres,
};
use sqlx::{ConnectOptions, Decode, Encode, Type};

use super::sql::{Backend, Lease, Query, SqlStore, Ts, sql_store};
use super::{BudgetTake, Coordination, Store, StoreError, TokenCipher};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

const MAX_CONNECTIONS: u32 = 10;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default stream lease; see [`Coordination::set_stream_lease`].
const DEFAULT_LEASE: Duration = Duration::from_secs(15);

pub(super) type PgStore = SqlStore<Postgres>;

sql_store!(Postgres);
impl Store for PgStore {}

/// This replica's part in leases.
pub(super) struct Replica {
    /// This process's name in `streams.lease_owner` and `inventory_leases.owner`.
    name: String,
    stream_lease_ms: AtomicU64,
}

impl Replica {
    fn stream_lease_secs(&self) -> f64 {
        self.stream_lease_ms.load(Ordering::Relaxed) as f64 / 1000.0
    }
}

/// Connects, migrates and checks the key.
pub(super) async fn open(url: &str, cipher: TokenCipher) -> Result<PgStore, StoreError> {
    let options: PgConnectOptions = url
        .parse()
        .map_err(|e: sqlx::Error| StoreError::InvalidUrl(redact(&e.to_string(), url)))?;
    let options = options.log_statements(tracing::log::LevelFilter::Trace);
    let pool = PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|e| StoreError::Db(redact(&e.to_string(), url)))?;
    // sqlx's migrator holds a session advisory lock while it migrates.
    if let Err(e) = MIGRATOR.run(&pool).await {
        pool.close().await;
        return Err(e.into());
    }
    let replica = Replica {
        name: format!("rep_{}", uuid::Uuid::new_v4().simple()),
        stream_lease_ms: AtomicU64::new(DEFAULT_LEASE.as_millis() as u64),
    };
    PgStore::new(pool, cipher, replica).await
}

/// Errors from sqlx can quote the URL; never let a password through.
fn redact(msg: &str, url: &str) -> String {
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_string))
    {
        Some(p) if !p.is_empty() => msg.replace(&p, "***"),
        _ => msg.to_string(),
    }
}

impl Backend for Postgres {
    type Leases = Replica;

    const BEGIN_WRITE: &'static str = "BEGIN";
    /// Lock id 0x6b61_6e64_6a69_0001 ("kandji" + 1), held until the transaction ends.
    const KEY_CHECK_LOCK: Option<&'static str> =
        Some("SELECT pg_advisory_xact_lock(7737587012360273921)");
    const ROTATION_LOCK: Option<&'static str> = Some(
        "LOCK TABLE connections, streams, idempotency_keys, event_subscriptions, meta IN EXCLUSIVE MODE",
    );
    /// The creating replica holds the lease from the start.
    const INSERT_STREAM: &'static str = "INSERT INTO streams \
         (id, owner, connection_id, card_id, result_set, inputs, options, helper_ciphertext, \
          callback_origin, record_limit, state, started_at, updated_at, lease_owner, \
          lease_expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'running', $11, $11, $12, \
          now() + make_interval(secs => $13))";
    /// Saving progress renews the lease; it applies only while this replica holds it.
    const CHECKPOINT_STREAM: &'static str = "UPDATE streams SET \
         done_below = $1, done_above = $2, page_start = $3, cursor_offset = $4, cursor_page = $5, \
         cursor_next = $6, record_count = $7, failed_deliveries = $8, pages_fetched = $9, \
         updated_at = $10, lease_expires_at = now() + make_interval(secs => $13) \
         WHERE id = $11 AND state = 'running' AND lease_owner = $12";
    const FINISH_STREAM: &'static str = "UPDATE streams SET \
         done_below = $1, done_above = $2, page_start = $3, cursor_offset = $4, cursor_page = $5, \
         cursor_next = $6, record_count = $7, failed_deliveries = $8, pages_fetched = $9, \
         state = $10, error = $11, finished_at = COALESCE(finished_at, $12), updated_at = $12, \
         helper_ciphertext = NULL, lease_owner = NULL, lease_expires_at = NULL \
         WHERE id = $13 AND ((state = 'running' AND lease_owner = $14) OR state = $10)";

    fn bind_lease<'q>(q: Query<'q, Self>, replica: &Replica, lease: Lease) -> Query<'q, Self> {
        let q = q.bind(replica.name.clone());
        match lease {
            Lease::Renew => q.bind(replica.stream_lease_secs()),
            Lease::Holder => q,
        }
    }
}

impl Type<Postgres> for Ts {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for Ts {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        Encode::<Postgres>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for Ts {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Ts(<DateTime<Utc> as Decode<Postgres>>::decode(value)?))
    }
}

/// Binds: connection id, emission interval (s), burst tolerance (s). Returns whether the request
/// is granted and, if not, how far (s) the stored `tat` is ahead of now.
const BUDGET_TAKE: &str = "WITH up AS ( \
       INSERT INTO budgets AS b (connection_id, tat) \
       VALUES ($1, now() + make_interval(secs => $2)) \
       ON CONFLICT (connection_id) DO UPDATE \
         SET tat = greatest(b.tat, now()) + make_interval(secs => $2) \
         WHERE b.tat - now() <= make_interval(secs => $3) \
       RETURNING 1) \
     SELECT EXISTS (SELECT 1 FROM up) AS ok, \
       (SELECT EXTRACT(EPOCH FROM (tat - now()))::float8 FROM budgets WHERE connection_id = $1) AS ahead";

/// Several replicas: leases held in the database, one budget row per connection.
#[async_trait::async_trait]
impl Coordination for PgStore {
    fn is_shared(&self) -> bool {
        true
    }

    fn set_stream_lease(&self, lease: Duration) {
        let ms = lease.as_millis().clamp(100, u128::from(u32::MAX)) as u64;
        self.leases.stream_lease_ms.store(ms, Ordering::Relaxed);
    }

    async fn claim_streams(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        // SKIP LOCKED: replicas sweeping at the same moment take different rows.
        let ids = sqlx::query_scalar(
            "UPDATE streams SET lease_owner = $1, lease_expires_at = now() + make_interval(secs => $2) \
             WHERE id IN ( \
               SELECT id FROM streams \
               WHERE state = 'running' AND (lease_expires_at IS NULL OR lease_expires_at < now()) \
               ORDER BY started_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING id",
        )
        .bind(&self.leases.name)
        .bind(self.leases.stream_lease_secs())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    async fn release_stream(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE streams SET lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = $1 AND lease_owner = $2",
        )
        .bind(id)
        .bind(&self.leases.name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn budget_take(
        &self,
        connection_id: &str,
        interval: Duration,
        tolerance: Duration,
    ) -> Result<BudgetTake, StoreError> {
        // One statement, one round trip: the row lock serialises replicas, and READ COMMITTED
        // re-checks the WHERE on the row's newest version.
        let (ok, ahead): (bool, Option<f64>) = sqlx::query_as(BUDGET_TAKE)
            .bind(connection_id)
            .bind(interval.as_secs_f64())
            .bind(tolerance.as_secs_f64())
            .fetch_one(&self.pool)
            .await?;
        if ok {
            Ok(BudgetTake::Granted)
        } else {
            let wait = ahead.unwrap_or(0.0) - tolerance.as_secs_f64();
            Ok(BudgetTake::Wait(Duration::from_secs_f64(wait.max(0.001))))
        }
    }

    async fn inventory_lease(&self, connection: &str, ttl: Duration) -> Result<bool, StoreError> {
        take_lease(self, "inventory_leases", connection, ttl).await
    }

    async fn inventory_lease_release(&self, connection: &str) -> Result<(), StoreError> {
        release_lease(self, "inventory_leases", connection).await
    }

    async fn events_lease(&self, connection: &str, ttl: Duration) -> Result<bool, StoreError> {
        take_lease(self, "event_leases", connection, ttl).await
    }

    async fn events_lease_release(&self, connection: &str) -> Result<(), StoreError> {
        release_lease(self, "event_leases", connection).await
    }
}

/// Takes or renews this replica's lease on `connection` in `table` (one row a connection: the
/// inventory sync's or the audit-log poller's); true while this replica holds it.
async fn take_lease(
    store: &PgStore,
    table: &'static str,
    connection: &str,
    ttl: Duration,
) -> Result<bool, StoreError> {
    let granted: Option<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {table} AS l (connection_id, owner, expires_at) \
         VALUES ($1, $2, now() + $3 * interval '1 millisecond') \
         ON CONFLICT (connection_id) DO UPDATE \
         SET owner = excluded.owner, expires_at = excluded.expires_at \
         WHERE l.owner = excluded.owner OR l.expires_at < now() \
         RETURNING owner"
    )))
    .bind(connection)
    .bind(&store.leases.name)
    .bind(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
    .fetch_optional(&store.pool)
    .await?;
    Ok(granted.is_some())
}

/// Gives up this replica's lease on `connection` in `table`, if it holds it.
async fn release_lease(
    store: &PgStore,
    table: &'static str,
    connection: &str,
) -> Result<(), StoreError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {table} WHERE connection_id = $1 AND owner = $2"
    )))
    .bind(connection)
    .bind(&store.leases.name)
    .execute(&store.pool)
    .await?;
    Ok(())
}
