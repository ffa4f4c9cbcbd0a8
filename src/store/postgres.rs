//! PostgreSQL implementation of [`Store`], for several replicas sharing one database.
//!
//! Same behaviour as the SQLite store, plus what several replicas need:
//! * migrations run at open under sqlx's PostgreSQL advisory lock, and the key check under
//!   a transaction-scoped advisory lock, so replicas starting together do not race;
//! * stream leases: a replica runs a stream while it holds the row's lease, renewed by
//!   every checkpoint; expired leases are claimed with `FOR UPDATE SKIP LOCKED`;
//! * a shared GCRA budget row per connection (see [`Store::budget_take`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Row};
use tokio::sync::RwLock;

use super::{
    BudgetTake, Connection, ConnectionPatch, DeliveryFailure, IdempotencyClaim, InventoryDevice,
    InventorySync, NewConnection, NewStream, Store, StoreError, Stream, StreamCheckpoint,
    StreamJob, StreamState, TokenCipher, new_connection_id, new_stream_id, now,
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

const KEY_CHECK: &str = "token_key_check";
/// Advisory lock (transaction scope) taken while checking or recording the key check.
const KEY_CHECK_LOCK: i64 = 0x6b61_6e64_6a69_0001;
const MAX_CONNECTIONS: u32 = 10;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default stream lease; see [`Store::set_stream_lease`].
const DEFAULT_LEASE: Duration = Duration::from_secs(15);

const CONNECTION_COLUMNS_ALL: &str = "SELECT id, name, api_url, requests_per_hour, inventory_sync, created_at, updated_at \
     FROM connections ORDER BY created_at, id";
const SELECT_ONE: &str = "SELECT id, name, api_url, requests_per_hour, inventory_sync, created_at, updated_at \
     FROM connections WHERE id = $1";
const UPDATE_ONE: &str = "UPDATE connections SET \
     name = COALESCE($1, name), \
     api_url = COALESCE($2, api_url), \
     token_ciphertext = COALESCE($3, token_ciphertext), \
     requests_per_hour = CASE WHEN $4 THEN $5 ELSE requests_per_hour END, \
     updated_at = $6, \
     inventory_sync = COALESCE($8, inventory_sync) \
     WHERE id = $7 \
     RETURNING id, name, api_url, requests_per_hour, inventory_sync, created_at, updated_at";

pub(super) struct PgStore {
    pool: PgPool,
    cipher: RwLock<TokenCipher>,
    /// This process's name in `streams.lease_owner`.
    replica: String,
    lease_ms: AtomicU64,
}

impl PgStore {
    pub(super) async fn open(url: &str, cipher: TokenCipher) -> Result<Self, StoreError> {
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
        match Self::prepare(&pool, &cipher).await {
            Ok(()) => Ok(Self {
                pool,
                cipher: RwLock::new(cipher),
                replica: format!("rep_{}", uuid::Uuid::new_v4().simple()),
                lease_ms: AtomicU64::new(DEFAULT_LEASE.as_millis() as u64),
            }),
            Err(e) => {
                pool.close().await;
                Err(e)
            }
        }
    }

    async fn prepare(pool: &PgPool, cipher: &TokenCipher) -> Result<(), StoreError> {
        // sqlx's migrator holds a session advisory lock while it migrates.
        MIGRATOR.run(pool).await?;

        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(KEY_CHECK_LOCK)
            .execute(&mut *tx)
            .await?;
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
                let any: Option<(String, String)> =
                    sqlx::query_as("SELECT id, token_ciphertext FROM connections LIMIT 1")
                        .fetch_optional(&mut *tx)
                        .await?;
                if let Some((id, ciphertext)) = any {
                    cipher
                        .decrypt(&id, &ciphertext)
                        .map_err(|_| StoreError::WrongSecretKey)?;
                }
                set_key_check(&mut tx, cipher).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    fn lease_secs(&self) -> f64 {
        self.lease_ms.load(Ordering::Relaxed) as f64 / 1000.0
    }
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

async fn set_key_check(conn: &mut PgConnection, cipher: &TokenCipher) -> Result<(), StoreError> {
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

fn row_to_connection(row: &PgRow) -> Result<Connection, StoreError> {
    let requests_per_hour: Option<i64> = row.try_get("requests_per_hour")?;
    let requests_per_hour = requests_per_hour
        .map(u32::try_from)
        .transpose()
        .map_err(|_| StoreError::Db("requests_per_hour out of range in database".into()))?;
    Ok(Connection {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        api_url: row.try_get("api_url")?,
        requests_per_hour,
        inventory_sync: row.try_get("inventory_sync")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

#[async_trait::async_trait]
impl Store for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_connection(&self, new: NewConnection) -> Result<Connection, StoreError> {
        let id = new_connection_id();
        let at = now();
        let cipher = self.cipher.read().await;
        let ciphertext = cipher.encrypt(&id, new.api_token.expose_secret());
        sqlx::query(
            "INSERT INTO connections \
             (id, name, api_url, token_ciphertext, requests_per_hour, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(&new.name)
        .bind(&new.api_url)
        .bind(&ciphertext)
        .bind(new.requests_per_hour.map(i64::from))
        .bind(at)
        .bind(at)
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
        let rows = sqlx::query(CONNECTION_COLUMNS_ALL)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(row_to_connection).collect()
    }

    async fn get_connection(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        let row = sqlx::query(SELECT_ONE)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(row_to_connection).transpose()
    }

    async fn connection_token(&self, id: &str) -> Result<Option<SecretString>, StoreError> {
        let cipher = self.cipher.read().await;
        let ciphertext: Option<String> =
            sqlx::query_scalar("SELECT token_ciphertext FROM connections WHERE id = $1")
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
        let row = sqlx::query(UPDATE_ONE)
            .bind(patch.name)
            .bind(patch.api_url)
            .bind(ciphertext)
            .bind(set_rph)
            .bind(rph)
            .bind(now())
            .bind(id)
            .bind(patch.inventory_sync)
            .fetch_optional(&self.pool)
            .await?;
        drop(cipher);
        row.as_ref().map(row_to_connection).transpose()
    }

    async fn delete_connection(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM connections WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn rotate_secret_key(&self, new: &TokenCipher) -> Result<usize, StoreError> {
        let mut cipher = self.cipher.write().await;
        let mut tx = self.pool.begin().await?;
        // Other replicas may read meanwhile but not write what is being re-encrypted.
        sqlx::query("LOCK TABLE connections, streams, idempotency_keys, meta IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, token_ciphertext FROM connections ORDER BY id")
                .fetch_all(&mut *tx)
                .await?;
        for (id, old) in &rows {
            let token = cipher.decrypt(id, old)?;
            let sealed = new.encrypt(id, token.expose_secret());
            sqlx::query("UPDATE connections SET token_ciphertext = $1 WHERE id = $2")
                .bind(sealed)
                .bind(id)
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
            let sealed = new.encrypt(id, helper.expose_secret());
            sqlx::query("UPDATE streams SET helper_ciphertext = $1 WHERE id = $2")
                .bind(sealed)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let answers: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT scope, key, response FROM idempotency_keys WHERE response IS NOT NULL",
        )
        .fetch_all(&mut *tx)
        .await?;
        for (scope, key, old) in &answers {
            let aad = format!("idem:{scope}:{key}");
            let plain = cipher.decrypt(&aad, old)?;
            sqlx::query("UPDATE idempotency_keys SET response = $1 WHERE scope = $2 AND key = $3")
                .bind(new.encrypt(&aad, plain.expose_secret()))
                .bind(scope)
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        set_key_check(&mut tx, new).await?;
        tx.commit().await?;
        *cipher = new.clone();
        Ok(rows.len())
    }

    async fn create_stream(&self, new: NewStream) -> Result<Stream, StoreError> {
        let id = new_stream_id();
        let at = now();
        let cipher = self.cipher.read().await;
        let sealed = cipher.encrypt(&id, new.helper_flow.expose_secret());
        let limit = new
            .record_limit
            .map(i64::try_from)
            .transpose()
            .map_err(|_| StoreError::Db("record_limit out of range".into()))?;
        // The creating replica holds the lease from the start.
        sqlx::query(
            "INSERT INTO streams \
             (id, owner, connection_id, card_id, result_set, inputs, options, helper_ciphertext, \
              callback_origin, record_limit, state, started_at, updated_at, lease_owner, \
              lease_expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'running', $11, $11, $12, \
              now() + make_interval(secs => $13))",
        )
        .bind(&id)
        .bind(&new.owner)
        .bind(&new.connection_id)
        .bind(&new.card_id)
        .bind(&new.result_set)
        .bind(new.inputs.to_string())
        .bind(new.options.to_string())
        .bind(&sealed)
        .bind(&new.callback_origin)
        .bind(limit)
        .bind(at)
        .bind(&self.replica)
        .bind(self.lease_secs())
        .execute(&self.pool)
        .await?;
        drop(cipher);
        Ok(Stream {
            id,
            owner: new.owner,
            connection_id: new.connection_id,
            card_id: new.card_id,
            result_set: new.result_set,
            callback_origin: new.callback_origin,
            record_limit: new.record_limit,
            state: StreamState::Running,
            error: None,
            record_count: 0,
            failed_deliveries: 0,
            pages_fetched: 0,
            started_at: at,
            finished_at: None,
            updated_at: at,
        })
    }

    async fn get_stream(&self, id: &str) -> Result<Option<Stream>, StoreError> {
        let row = sqlx::query(SELECT_STREAM)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(row_to_stream).transpose()
    }

    async fn list_streams(
        &self,
        owner: Option<&str>,
        state: Option<StreamState>,
        limit: u32,
    ) -> Result<Vec<Stream>, StoreError> {
        let rows = sqlx::query(LIST_STREAMS)
            .bind(owner)
            .bind(state.map(StreamState::as_str))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(row_to_stream).collect()
    }

    async fn stream_job(&self, id: &str) -> Result<Option<StreamJob>, StoreError> {
        let cipher = self.cipher.read().await;
        let row = sqlx::query(SELECT_JOB)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let stream = row_to_stream(&row)?;
        let sealed: Option<String> = row.try_get("helper_ciphertext")?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        if stream.state != StreamState::Running {
            return Ok(None);
        }
        let helper_flow = cipher.decrypt(id, &sealed)?;
        let json = |col: &str| -> Result<serde_json::Value, StoreError> {
            let text: String = row.try_get(col)?;
            serde_json::from_str(&text)
                .map_err(|_| StoreError::Db(format!("invalid JSON in streams.{col}")))
        };
        let done_above: Vec<u64> = serde_json::from_value(json("done_above")?)
            .map_err(|_| StoreError::Db("invalid streams.done_above".into()))?;
        let checkpoint = StreamCheckpoint {
            done_below: get_u64(&row, "done_below")?,
            done_above,
            page_start: get_u64(&row, "page_start")?,
            cursor_offset: get_u64(&row, "cursor_offset")?,
            cursor_page: get_u64(&row, "cursor_page")?,
            cursor_next: row.try_get("cursor_next")?,
            record_count: stream.record_count,
            failed_deliveries: stream.failed_deliveries,
            pages_fetched: stream.pages_fetched,
        };
        Ok(Some(StreamJob {
            inputs: json("inputs")?,
            options: json("options")?,
            helper_flow,
            checkpoint,
            stream,
        }))
    }

    async fn running_streams(&self) -> Result<Vec<String>, StoreError> {
        let ids = sqlx::query_scalar(
            "SELECT id FROM streams WHERE state = 'running' ORDER BY started_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    fn set_stream_lease(&self, lease: Duration) {
        let ms = lease.as_millis().clamp(100, u128::from(u32::MAX)) as u64;
        self.lease_ms.store(ms, Ordering::Relaxed);
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
        .bind(&self.replica)
        .bind(self.lease_secs())
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
        .bind(&self.replica)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn checkpoint_stream(
        &self,
        id: &str,
        checkpoint: &StreamCheckpoint,
        failures: &[DeliveryFailure],
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Saving progress renews the lease; it applies only while this replica holds it.
        let done = bind_checkpoint(sqlx::query(CHECKPOINT_STREAM), checkpoint)?
            .bind(now())
            .bind(id)
            .bind(&self.replica)
            .bind(self.lease_secs())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        insert_failures(&mut tx, id, failures).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn finish_stream(
        &self,
        id: &str,
        state: StreamState,
        error: Option<&str>,
        checkpoint: &StreamCheckpoint,
        failures: &[DeliveryFailure],
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let at = now();
        let done = bind_checkpoint(sqlx::query(FINISH_STREAM), checkpoint)?
            .bind(state.as_str())
            .bind(error)
            .bind(at)
            .bind(id)
            .bind(&self.replica)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        insert_failures(&mut tx, id, failures).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn cancel_stream(&self, id: &str) -> Result<Option<Stream>, StoreError> {
        let at = now();
        sqlx::query(
            "UPDATE streams SET state = 'cancelled', helper_ciphertext = NULL, \
             finished_at = $1, updated_at = $1 WHERE id = $2 AND state = 'running'",
        )
        .bind(at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        self.get_stream(id).await
    }

    async fn stream_failures(
        &self,
        id: &str,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<DeliveryFailure>, StoreError> {
        let after = after.map(to_i64).transpose()?.unwrap_or(-1);
        let rows = sqlx::query(
            "SELECT idx, webhook_id, status, error, body, attempts, failed_at \
             FROM stream_failures WHERE stream_id = $1 AND idx > $2 ORDER BY idx LIMIT $3",
        )
        .bind(id)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let status: Option<i32> = row.try_get("status")?;
                let attempts: i64 = row.try_get("attempts")?;
                Ok(DeliveryFailure {
                    index: get_u64(row, "idx")?,
                    webhook_id: row.try_get("webhook_id")?,
                    status: status.and_then(|s| u16::try_from(s).ok()),
                    error: row.try_get("error")?,
                    body: row.try_get("body")?,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    failed_at: row.try_get("failed_at")?,
                })
            })
            .collect()
    }

    async fn idempotency_claim(
        &self,
        scope: &str,
        key: &str,
        request_hash: &str,
        not_before: DateTime<Utc>,
    ) -> Result<IdempotencyClaim, StoreError> {
        let cipher = self.cipher.read().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(not_before)
            .execute(&mut *tx)
            .await?;
        // Insert first: of two replicas claiming the same key at once, exactly one inserts.
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (scope, key, request_hash, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (scope, key) DO NOTHING",
        )
        .bind(scope)
        .bind(key)
        .bind(request_hash)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        let claim = if inserted.rows_affected() == 1 {
            IdempotencyClaim::Claimed
        } else {
            let row: Option<(String, Option<i32>, Option<String>)> = sqlx::query_as(
                "SELECT request_hash, status, response FROM idempotency_keys \
                 WHERE scope = $1 AND key = $2",
            )
            .bind(scope)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
            match row {
                Some((hash, _, _)) if hash != request_hash => IdempotencyClaim::Mismatch,
                Some((_, Some(status), Some(response))) => {
                    let plain = cipher.decrypt(&format!("idem:{scope}:{key}"), &response)?;
                    IdempotencyClaim::Done {
                        status: status as u16,
                        response: plain.expose_secret().to_string(),
                    }
                }
                // In flight, or released between our insert and select: try again later.
                _ => IdempotencyClaim::InFlight,
            }
        };
        tx.commit().await?;
        Ok(claim)
    }

    async fn idempotency_complete(
        &self,
        scope: &str,
        key: &str,
        status: u16,
        response: &str,
    ) -> Result<(), StoreError> {
        let cipher = self.cipher.read().await;
        let sealed = cipher.encrypt(&format!("idem:{scope}:{key}"), response);
        sqlx::query(
            "UPDATE idempotency_keys SET status = $1, response = $2 WHERE scope = $3 AND key = $4",
        )
        .bind(i32::from(status))
        .bind(sealed)
        .bind(scope)
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn idempotency_release(&self, scope: &str, key: &str) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND status IS NULL",
        )
        .bind(scope)
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    fn is_shared(&self) -> bool {
        true
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

    async fn inventory_devices(
        &self,
        connection: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<InventoryDevice>, StoreError> {
        let rows = sqlx::query(
            "SELECT serial_key, device_id, platform, os_version, blueprint_name, last_check_in, \
             mdm_enabled, agent_installed, is_missing, is_removed, last_seen \
             FROM inventory_devices WHERE connection_id = $1 AND serial_key > $2 \
             ORDER BY serial_key LIMIT $3",
        )
        .bind(connection)
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(InventoryDevice {
                    serial_key: row.try_get("serial_key")?,
                    device_id: row.try_get("device_id")?,
                    platform: row.try_get("platform")?,
                    os_version: row.try_get("os_version")?,
                    blueprint_name: row.try_get("blueprint_name")?,
                    last_check_in: row.try_get("last_check_in")?,
                    mdm_enabled: row.try_get("mdm_enabled")?,
                    agent_installed: row.try_get("agent_installed")?,
                    is_missing: row.try_get("is_missing")?,
                    is_removed: row.try_get("is_removed")?,
                    last_seen: row.try_get("last_seen")?,
                })
            })
            .collect()
    }

    async fn inventory_apply(
        &self,
        connection: &str,
        upserts: &[InventoryDevice],
        deletes: &[String],
    ) -> Result<(), StoreError> {
        if upserts.is_empty() && deletes.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for chunk in upserts.chunks(500) {
            let mut insert = sqlx::QueryBuilder::<sqlx::Postgres>::new(
                "INSERT INTO inventory_devices (connection_id, serial_key, device_id, platform, \
                 os_version, blueprint_name, last_check_in, mdm_enabled, agent_installed, \
                 is_missing, is_removed, last_seen) ",
            );
            insert.push_values(chunk, |mut row, d| {
                row.push_bind(connection.to_string())
                    .push_bind(d.serial_key.clone())
                    .push_bind(d.device_id.clone())
                    .push_bind(d.platform.clone())
                    .push_bind(d.os_version.clone())
                    .push_bind(d.blueprint_name.clone())
                    .push_bind(d.last_check_in)
                    .push_bind(d.mdm_enabled)
                    .push_bind(d.agent_installed)
                    .push_bind(d.is_missing)
                    .push_bind(d.is_removed)
                    .push_bind(d.last_seen);
            });
            insert.push(
                " ON CONFLICT (connection_id, serial_key) DO UPDATE SET \
                 device_id = excluded.device_id, platform = excluded.platform, \
                 os_version = excluded.os_version, blueprint_name = excluded.blueprint_name, \
                 last_check_in = excluded.last_check_in, mdm_enabled = excluded.mdm_enabled, \
                 agent_installed = excluded.agent_installed, is_missing = excluded.is_missing, \
                 is_removed = excluded.is_removed, last_seen = excluded.last_seen",
            );
            insert.build().execute(&mut *tx).await?;
        }
        if !deletes.is_empty() {
            sqlx::query(
                "DELETE FROM inventory_devices WHERE connection_id = $1 AND serial_key = ANY($2)",
            )
            .bind(connection)
            .bind(deletes)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn inventory_sync_done(
        &self,
        connection: &str,
        sync: &InventorySync,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO inventory_syncs \
             (connection_id, last_started_at, last_finished_at, devices, kandji_calls) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (connection_id) DO UPDATE SET \
             last_started_at = excluded.last_started_at, \
             last_finished_at = excluded.last_finished_at, \
             devices = excluded.devices, kandji_calls = excluded.kandji_calls",
        )
        .bind(connection)
        .bind(sync.started_at)
        .bind(sync.finished_at)
        .bind(i64::try_from(sync.devices).unwrap_or(i64::MAX))
        .bind(i64::try_from(sync.kandji_calls).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn inventory_last_sync(
        &self,
        connection: &str,
    ) -> Result<Option<InventorySync>, StoreError> {
        let row: Option<(DateTime<Utc>, DateTime<Utc>, i64, i64)> = sqlx::query_as(
            "SELECT last_started_at, last_finished_at, devices, kandji_calls \
             FROM inventory_syncs WHERE connection_id = $1",
        )
        .bind(connection)
        .fetch_optional(&self.pool)
        .await?;
        Ok(
            row.map(|(started, finished, devices, calls)| InventorySync {
                started_at: started,
                finished_at: finished,
                devices: devices.max(0) as u64,
                kandji_calls: calls.max(0) as u64,
            }),
        )
    }

    async fn inventory_clear(&self, connection: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM inventory_devices WHERE connection_id = $1")
            .bind(connection)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM inventory_syncs WHERE connection_id = $1")
            .bind(connection)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn inventory_lease(&self, connection: &str, ttl: Duration) -> Result<bool, StoreError> {
        let granted: Option<(String,)> = sqlx::query_as(
            "INSERT INTO inventory_leases AS l (connection_id, owner, expires_at) \
             VALUES ($1, $2, now() + $3 * interval '1 millisecond') \
             ON CONFLICT (connection_id) DO UPDATE \
             SET owner = excluded.owner, expires_at = excluded.expires_at \
             WHERE l.owner = excluded.owner OR l.expires_at < now() \
             RETURNING owner",
        )
        .bind(connection)
        .bind(&self.replica)
        .bind(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
        .fetch_optional(&self.pool)
        .await?;
        Ok(granted.is_some())
    }

    async fn inventory_lease_release(&self, connection: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM inventory_leases WHERE connection_id = $1 AND owner = $2")
            .bind(connection)
            .bind(&self.replica)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
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

const SELECT_STREAM: &str = "SELECT id, owner, connection_id, card_id, result_set, callback_origin, \
     record_limit, state, error, record_count, failed_deliveries, pages_fetched, started_at, \
     finished_at, updated_at FROM streams WHERE id = $1";

const LIST_STREAMS: &str = "SELECT id, owner, connection_id, card_id, result_set, callback_origin, \
     record_limit, state, error, record_count, failed_deliveries, pages_fetched, started_at, \
     finished_at, updated_at FROM streams \
     WHERE ($1::text IS NULL OR owner = $1) AND ($2::text IS NULL OR state = $2) \
     ORDER BY started_at DESC, id DESC LIMIT $3";

const SELECT_JOB: &str = "SELECT id, owner, connection_id, card_id, result_set, callback_origin, \
     record_limit, state, error, record_count, failed_deliveries, pages_fetched, started_at, \
     finished_at, updated_at, inputs, options, helper_ciphertext, done_below, done_above, \
     page_start, cursor_offset, cursor_page, cursor_next FROM streams WHERE id = $1";

/// Binds: the checkpoint ($1–$9), updated_at, id, this replica, lease (s).
const CHECKPOINT_STREAM: &str = "UPDATE streams SET \
     done_below = $1, done_above = $2, page_start = $3, cursor_offset = $4, cursor_page = $5, \
     cursor_next = $6, record_count = $7, failed_deliveries = $8, pages_fetched = $9, \
     updated_at = $10, lease_expires_at = now() + make_interval(secs => $13) \
     WHERE id = $11 AND state = 'running' AND lease_owner = $12";

/// Binds: the checkpoint ($1–$9), state, error, finished_at = updated_at, id, this replica.
/// Applies while this replica holds the running stream's lease, or when the stream is already
/// in `state` (a cancelled runner recording its last progress).
const FINISH_STREAM: &str = "UPDATE streams SET \
     done_below = $1, done_above = $2, page_start = $3, cursor_offset = $4, cursor_page = $5, \
     cursor_next = $6, record_count = $7, failed_deliveries = $8, pages_fetched = $9, \
     state = $10, error = $11, finished_at = COALESCE(finished_at, $12), updated_at = $12, \
     helper_ciphertext = NULL, lease_owner = NULL, lease_expires_at = NULL \
     WHERE id = $13 AND ((state = 'running' AND lease_owner = $14) OR state = $10)";

type Query<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

fn bind_checkpoint<'q>(q: Query<'q>, c: &StreamCheckpoint) -> Result<Query<'q>, StoreError> {
    let above = serde_json::to_string(&c.done_above).unwrap_or_else(|_| "[]".into());
    Ok(q.bind(to_i64(c.done_below)?)
        .bind(above)
        .bind(to_i64(c.page_start)?)
        .bind(to_i64(c.cursor_offset)?)
        .bind(to_i64(c.cursor_page)?)
        .bind(c.cursor_next.clone())
        .bind(to_i64(c.record_count)?)
        .bind(to_i64(c.failed_deliveries)?)
        .bind(to_i64(c.pages_fetched)?))
}

async fn insert_failures(
    conn: &mut PgConnection,
    stream_id: &str,
    failures: &[DeliveryFailure],
) -> Result<(), StoreError> {
    for f in failures {
        sqlx::query(
            "INSERT INTO stream_failures \
             (stream_id, idx, webhook_id, status, error, body, attempts, failed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (stream_id, idx) DO UPDATE SET \
             webhook_id = excluded.webhook_id, status = excluded.status, error = excluded.error, \
             body = excluded.body, attempts = excluded.attempts, failed_at = excluded.failed_at",
        )
        .bind(stream_id)
        .bind(to_i64(f.index)?)
        .bind(&f.webhook_id)
        .bind(f.status.map(i32::from))
        .bind(&f.error)
        .bind(&f.body)
        .bind(i64::from(f.attempts))
        .bind(f.failed_at)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Db("a counter is out of range".into()))
}

fn get_u64(row: &PgRow, col: &str) -> Result<u64, StoreError> {
    let v: i64 = row.try_get(col)?;
    u64::try_from(v).map_err(|_| StoreError::Db(format!("negative streams.{col} in database")))
}

fn row_to_stream(row: &PgRow) -> Result<Stream, StoreError> {
    let state: String = row.try_get("state")?;
    let limit: Option<i64> = row.try_get("record_limit")?;
    Ok(Stream {
        id: row.try_get("id")?,
        owner: row.try_get("owner")?,
        connection_id: row.try_get("connection_id")?,
        card_id: row.try_get("card_id")?,
        result_set: row.try_get("result_set")?,
        callback_origin: row.try_get("callback_origin")?,
        record_limit: limit.and_then(|l| u64::try_from(l).ok()),
        state: StreamState::parse(&state)
            .ok_or_else(|| StoreError::Db(format!("unknown stream state {state:?} in database")))?,
        error: row.try_get("error")?,
        record_count: get_u64(row, "record_count")?,
        failed_deliveries: get_u64(row, "failed_deliveries")?,
        pages_fetched: get_u64(row, "pages_fetched")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}
