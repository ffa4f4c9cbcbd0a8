//! SQLite, the default store, for one process: what differs from PostgreSQL.
//!
//! A file (write-ahead log, `synchronous = NORMAL`) or an in-memory database; writes take the
//! file's lock at the start of their transaction; timestamps are RFC 3339 text. One process
//! runs every stream and sync, and its Kandji budget is its own, so [`Coordination`] grants
//! everything.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteArgumentsBuffer, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions,
    SqliteSynchronous, SqliteTypeInfo, SqliteValueRef,
};
use sqlx::{Decode, Encode, Sqlite, Type};

use super::sql::{Backend, Lease, Query, SqlStore, Ts, sql_store};
use super::{BudgetTake, Coordination, Store, StoreError, TokenCipher};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: u32 = 8;

pub(super) type SqliteStore = SqlStore<Sqlite>;

sql_store!(Sqlite);
impl Store for SqliteStore {}

/// Opens (creating it if the URL allows) the database, migrates it and checks the key.
pub(super) async fn open(url: &str, cipher: TokenCipher) -> Result<SqliteStore, StoreError> {
    let (database, mode) = split_url(url);
    let in_memory = database == ":memory:" || mode == Some("memory");

    let mut options = SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::InvalidUrl(e.to_string()))?
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT);
    let pool_options = if in_memory {
        // An in-memory database lives only as long as a connection to it: keep exactly one,
        // forever.
        SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        if mode.is_none() {
            options = options.create_if_missing(true);
        }
        options = options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        SqlitePoolOptions::new().max_connections(MAX_CONNECTIONS)
    };

    let pool = pool_options.connect_with(options).await?;
    if let Err(e) = MIGRATOR.run(&pool).await {
        pool.close().await;
        return Err(e.into());
    }
    SqliteStore::new(pool, cipher, ()).await
}

/// Splits a `sqlite:` URL into its database part and its `mode` parameter.
fn split_url(url: &str) -> (&str, Option<&str>) {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    let mode = params
        .split('&')
        .find_map(|pair| pair.strip_prefix("mode="));
    (database, mode)
}

impl Backend for Sqlite {
    type Leases = ();

    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const KEY_CHECK_LOCK: Option<&'static str> = None;
    const ROTATION_LOCK: Option<&'static str> = None;
    const INSERT_STREAM: &'static str = "INSERT INTO streams \
         (id, owner, connection_id, card_id, result_set, inputs, options, helper_ciphertext, \
          callback_origin, record_limit, state, started_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'running', $11, $11)";
    const CHECKPOINT_STREAM: &'static str = "UPDATE streams SET \
         done_below = $1, done_above = $2, page_start = $3, cursor_offset = $4, cursor_page = $5, \
         cursor_next = $6, record_count = $7, failed_deliveries = $8, pages_fetched = $9, \
         updated_at = $10 \
         WHERE id = $11 AND state = 'running'";
    const FINISH_STREAM: &'static str = "UPDATE streams SET \
         done_below = $1, done_above = $2, page_start = $3, cursor_offset = $4, cursor_page = $5, \
         cursor_next = $6, record_count = $7, failed_deliveries = $8, pages_fetched = $9, \
         state = $10, error = $11, finished_at = COALESCE(finished_at, $12), updated_at = $12, \
         helper_ciphertext = NULL \
         WHERE id = $13 AND (state = 'running' OR state = $10)";

    fn bind_lease<'q>(q: Query<'q, Self>, _: &(), _: Lease) -> Query<'q, Self> {
        q
    }
}

impl Type<Sqlite> for Ts {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for Ts {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        let text = self.0.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        Encode::<Sqlite>::encode(text, buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Ts {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Sqlite>>::decode(value)?;
        let t = DateTime::parse_from_rfc3339(text)
            .map_err(|_| format!("invalid timestamp in database: {text:?}"))?;
        Ok(Ts(t.with_timezone(&Utc)))
    }
}

/// One process: it runs every stream and sync, and its Kandji budget is its own.
#[async_trait::async_trait]
impl Coordination for SqliteStore {
    fn is_shared(&self) -> bool {
        false
    }

    /// No leases: the process that opened the file runs its streams.
    fn set_stream_lease(&self, _lease: Duration) {}

    /// Every running stream is this process's (at start-up, those the last run left).
    async fn claim_streams(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM streams WHERE state = 'running' ORDER BY started_at, id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn release_stream(&self, _id: &str) -> Result<(), StoreError> {
        Ok(())
    }

    /// The Kandji client keeps this process's budget itself ([`Self::is_shared`] is false).
    async fn budget_take(
        &self,
        _connection_id: &str,
        _interval: Duration,
        _tolerance: Duration,
    ) -> Result<BudgetTake, StoreError> {
        Ok(BudgetTake::Granted)
    }

    async fn inventory_lease(&self, _connection: &str, _ttl: Duration) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn inventory_lease_release(&self, _connection: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn events_lease(&self, _connection: &str, _ttl: Duration) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn events_lease_release(&self, _connection: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{SecondsFormat, TimeZone};
    use secrecy::SecretString;

    use super::*;
    use crate::store::{ConnectionStore, NewConnection};

    #[tokio::test]
    async fn timestamps_are_rfc3339_text_with_microseconds_and_bad_ones_are_errors() {
        let (cipher, _) = TokenCipher::generate();
        let store = open("sqlite::memory:", cipher).await.unwrap();
        let c = store
            .create_connection(NewConnection {
                name: "acme".into(),
                api_url: "https://acme.api.kandji.io".into(),
                api_token: SecretString::from("t".repeat(36)),
                requests_per_hour: None,
            })
            .await
            .unwrap();
        let (created, updated): (String, String) =
            sqlx::query_as("SELECT created_at, updated_at FROM connections WHERE id = $1")
                .bind(&c.id)
                .fetch_one(&store.pool)
                .await
                .unwrap();
        // The format earlier versions wrote, so existing files keep sorting and comparing.
        assert_eq!(
            created,
            c.created_at.to_rfc3339_opts(SecondsFormat::Micros, true)
        );
        assert_eq!(created.len(), "2025-01-02T03:04:05.123456Z".len());
        assert_eq!(updated, created);

        let set = |at: &'static str| {
            sqlx::query("UPDATE connections SET updated_at = $1 WHERE id = $2")
                .bind(at)
                .bind(c.id.clone())
        };
        set("2025-01-02T03:04:05.123456Z")
            .execute(&store.pool)
            .await
            .unwrap();
        let read = store.get_connection(&c.id).await.unwrap().unwrap();
        let expected = Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap()
            + chrono::Duration::microseconds(123_456);
        assert_eq!(read.updated_at, expected);

        set("yesterday").execute(&store.pool).await.unwrap();
        match store.get_connection(&c.id).await {
            Err(StoreError::Db(msg)) => assert!(
                msg.contains("invalid timestamp in database: \"yesterday\""),
                "{msg}"
            ),
            other => panic!("expected a database error, got {other:?}"),
        }
    }
}
