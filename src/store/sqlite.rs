//! SQLite implementation of [`Store`].

use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use tokio::sync::RwLock;

use super::{
    Connection, ConnectionPatch, DeliveryFailure, IdempotencyClaim, InventoryDevice, InventorySync,
    NewConnection, NewStream, Store, StoreError, Stream, StreamCheckpoint, StreamJob, StreamState,
    TokenCipher, format_ts, new_connection_id, new_stream_id, now, parse_ts,
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// `meta` key of the key-check value (see [`TokenCipher::fingerprint`]).
const KEY_CHECK: &str = "token_key_check";

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: u32 = 8;

// Queries are `&'static str` literals (sqlx 0.9 only takes those without an
// explicit `AssertSqlSafe`); the column lists below must stay in step.
const SELECT_ALL: &str = "SELECT id, name, api_url, requests_per_hour, inventory_sync, \
     created_at, updated_at FROM connections ORDER BY created_at, id";
const SELECT_ONE: &str = "SELECT id, name, api_url, requests_per_hour, inventory_sync, \
     created_at, updated_at FROM connections WHERE id = ?";
/// Binds: name, api_url, token_ciphertext, inventory_sync (each NULL = keep), whether to set
/// requests_per_hour, its new value, updated_at, id.
const UPDATE_ONE: &str = "UPDATE connections SET \
     name = COALESCE(?, name), \
     api_url = COALESCE(?, api_url), \
     token_ciphertext = COALESCE(?, token_ciphertext), \
     inventory_sync = COALESCE(?, inventory_sync), \
     requests_per_hour = CASE WHEN ? THEN ? ELSE requests_per_hour END, \
     updated_at = ? \
     WHERE id = ? \
     RETURNING id, name, api_url, requests_per_hour, inventory_sync, created_at, updated_at";
const SELECT_INVENTORY: &str = "SELECT serial_key, device_id, platform, os_version, \
     blueprint_name, last_check_in, mdm_enabled, agent_installed, is_missing, is_removed, last_seen \
     FROM inventory_devices WHERE connection_id = ? AND serial_key > ? ORDER BY serial_key LIMIT ?";
const INSERT_INVENTORY: &str = "INSERT INTO inventory_devices (connection_id, serial_key, \
     device_id, platform, os_version, blueprint_name, last_check_in, mdm_enabled, agent_installed, \
     is_missing, is_removed, last_seen) ";
const ON_INVENTORY_CONFLICT: &str = " ON CONFLICT (connection_id, serial_key) DO UPDATE SET \
     device_id = excluded.device_id, platform = excluded.platform, \
     os_version = excluded.os_version, blueprint_name = excluded.blueprint_name, \
     last_check_in = excluded.last_check_in, mdm_enabled = excluded.mdm_enabled, \
     agent_installed = excluded.agent_installed, is_missing = excluded.is_missing, \
     is_removed = excluded.is_removed, last_seen = excluded.last_seen";
/// Rows per multi-row INSERT: 12 variables each, well under SQLite's 32,766.
const INVENTORY_ROWS_PER_INSERT: usize = 500;

pub(super) struct SqliteStore {
    pool: SqlitePool,
    /// Held for reading by every operation that encrypts or decrypts (for the
    /// whole operation), and for writing by key rotation, so no token is ever
    /// written under a key that a concurrent rotation has just retired.
    cipher: RwLock<TokenCipher>,
}

impl SqliteStore {
    pub(super) async fn open(url: &str, cipher: TokenCipher) -> Result<Self, StoreError> {
        let (database, mode) = split_url(url);
        let in_memory = database == ":memory:" || mode == Some("memory");

        let mut options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl(e.to_string()))?
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool_options = if in_memory {
            // An in-memory database lives only as long as a connection to it:
            // keep exactly one, forever.
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
        match Self::prepare(&pool, &cipher).await {
            Ok(()) => Ok(Self {
                pool,
                cipher: RwLock::new(cipher),
            }),
            Err(e) => {
                pool.close().await;
                Err(e)
            }
        }
    }

    /// Runs the migrations, then checks (or, on a fresh database, records)
    /// the key-check value.
    async fn prepare(pool: &SqlitePool, cipher: &TokenCipher) -> Result<(), StoreError> {
        MIGRATOR.run(pool).await?;

        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let stored: Option<String> = sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
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
                // anyway (the row was lost), make sure this key reads them
                // before vouching for it.
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
}

async fn set_key_check(
    conn: &mut SqliteConnection,
    cipher: &TokenCipher,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO meta (key, value) VALUES (?, ?) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(KEY_CHECK)
    .bind(cipher.fingerprint())
    .execute(conn)
    .await?;
    Ok(())
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

fn row_to_connection(row: &SqliteRow) -> Result<Connection, StoreError> {
    let requests_per_hour: Option<i64> = row.try_get("requests_per_hour")?;
    let requests_per_hour = requests_per_hour
        .map(u32::try_from)
        .transpose()
        .map_err(|_| StoreError::Db("requests_per_hour out of range in database".into()))?;
    let created_at: String = row.try_get("created_at")?;
    let updated_at: String = row.try_get("updated_at")?;
    Ok(Connection {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        api_url: row.try_get("api_url")?,
        requests_per_hour,
        inventory_sync: row.try_get("inventory_sync")?,
        created_at: parse_ts(&created_at)?,
        updated_at: parse_ts(&updated_at)?,
    })
}

#[async_trait::async_trait]
impl Store for SqliteStore {
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
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(&new.name)
        .bind(&new.api_url)
        .bind(&ciphertext)
        .bind(new.requests_per_hour.map(i64::from))
        .bind(format_ts(&at))
        .bind(format_ts(&at))
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
        let rows = sqlx::query(SELECT_ALL).fetch_all(&self.pool).await?;
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
            sqlx::query_scalar("SELECT token_ciphertext FROM connections WHERE id = ?")
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
        // One statement, so there is no read-modify-write race.
        let row = sqlx::query(UPDATE_ONE)
            .bind(patch.name)
            .bind(patch.api_url)
            .bind(ciphertext)
            .bind(patch.inventory_sync)
            .bind(set_rph)
            .bind(rph)
            .bind(format_ts(&now()))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        drop(cipher);
        row.as_ref().map(row_to_connection).transpose()
    }

    async fn delete_connection(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM connections WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn rotate_secret_key(&self, new: &TokenCipher) -> Result<usize, StoreError> {
        let mut cipher = self.cipher.write().await;
        // IMMEDIATE takes the write lock up front, so other processes cannot
        // slip a write in between our reads and writes.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, token_ciphertext FROM connections ORDER BY id")
                .fetch_all(&mut *tx)
                .await?;
        for (id, old) in &rows {
            let token = cipher.decrypt(id, old)?;
            let sealed = new.encrypt(id, token.expose_secret());
            sqlx::query("UPDATE connections SET token_ciphertext = ? WHERE id = ?")
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
            sqlx::query("UPDATE streams SET helper_ciphertext = ? WHERE id = ?")
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
            sqlx::query("UPDATE idempotency_keys SET response = ? WHERE scope = ? AND key = ?")
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
        sqlx::query(
            "INSERT INTO streams \
             (id, owner, connection_id, card_id, result_set, inputs, options, helper_ciphertext, \
              callback_origin, record_limit, state, started_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?)",
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
        .bind(format_ts(&at))
        .bind(format_ts(&at))
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

    async fn checkpoint_stream(
        &self,
        id: &str,
        checkpoint: &StreamCheckpoint,
        failures: &[DeliveryFailure],
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let done = bind_checkpoint(sqlx::query(CHECKPOINT_STREAM), checkpoint)?
            .bind(format_ts(&now()))
            .bind(id)
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let at = format_ts(&now());
        let done = bind_checkpoint(sqlx::query(FINISH_STREAM), checkpoint)?
            .bind(state.as_str())
            .bind(error)
            .bind(&at)
            .bind(&at)
            .bind(id)
            .bind(state.as_str())
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
        let at = format_ts(&now());
        sqlx::query(
            "UPDATE streams SET state = 'cancelled', helper_ciphertext = NULL, \
             finished_at = ?, updated_at = ? WHERE id = ? AND state = 'running'",
        )
        .bind(&at)
        .bind(&at)
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
             FROM stream_failures WHERE stream_id = ? AND idx > ? ORDER BY idx LIMIT ?",
        )
        .bind(id)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let status: Option<i64> = row.try_get("status")?;
                let attempts: i64 = row.try_get("attempts")?;
                let failed_at: String = row.try_get("failed_at")?;
                Ok(DeliveryFailure {
                    index: get_u64(row, "idx")?,
                    webhook_id: row.try_get("webhook_id")?,
                    status: status.and_then(|s| u16::try_from(s).ok()),
                    error: row.try_get("error")?,
                    body: row.try_get("body")?,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    failed_at: parse_ts(&failed_at)?,
                })
            })
            .collect()
    }

    async fn idempotency_claim(
        &self,
        scope: &str,
        key: &str,
        request_hash: &str,
        not_before: chrono::DateTime<chrono::Utc>,
    ) -> Result<IdempotencyClaim, StoreError> {
        let cipher = self.cipher.read().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?")
            .bind(format_ts(&not_before))
            .execute(&mut *tx)
            .await?;
        let row: Option<(String, Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT request_hash, status, response FROM idempotency_keys WHERE scope = ? AND key = ?",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        let claim = match row {
            Some((hash, _, _)) if hash != request_hash => IdempotencyClaim::Mismatch,
            Some((_, Some(status), Some(response))) => {
                let plain = cipher.decrypt(&format!("idem:{scope}:{key}"), &response)?;
                IdempotencyClaim::Done {
                    status: status as u16,
                    response: plain.expose_secret().to_string(),
                }
            }
            Some(_) => IdempotencyClaim::InFlight,
            None => {
                sqlx::query(
                    "INSERT INTO idempotency_keys (scope, key, request_hash, created_at) VALUES (?, ?, ?, ?)",
                )
                .bind(scope)
                .bind(key)
                .bind(request_hash)
                .bind(format_ts(&now()))
                .execute(&mut *tx)
                .await?;
                IdempotencyClaim::Claimed
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
            "UPDATE idempotency_keys SET status = ?, response = ? WHERE scope = ? AND key = ?",
        )
        .bind(i64::from(status))
        .bind(sealed)
        .bind(scope)
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn idempotency_release(&self, scope: &str, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM idempotency_keys WHERE scope = ? AND key = ? AND status IS NULL")
            .bind(scope)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn inventory_devices(
        &self,
        connection: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<InventoryDevice>, StoreError> {
        let rows = sqlx::query(SELECT_INVENTORY)
            .bind(connection)
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(row_to_inventory_device).collect()
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
        // One statement per few hundred rows: a first sync of 100,000 devices writes them all.
        for chunk in upserts.chunks(INVENTORY_ROWS_PER_INSERT) {
            let mut insert = QueryBuilder::<Sqlite>::new(INSERT_INVENTORY);
            insert.push_values(chunk, |mut row, d| {
                row.push_bind(connection.to_string())
                    .push_bind(d.serial_key.clone())
                    .push_bind(d.device_id.clone())
                    .push_bind(d.platform.clone())
                    .push_bind(d.os_version.clone())
                    .push_bind(d.blueprint_name.clone())
                    .push_bind(d.last_check_in.as_ref().map(format_ts))
                    .push_bind(d.mdm_enabled)
                    .push_bind(d.agent_installed)
                    .push_bind(d.is_missing)
                    .push_bind(d.is_removed)
                    .push_bind(format_ts(&d.last_seen));
            });
            insert.push(ON_INVENTORY_CONFLICT);
            insert.build().execute(&mut *tx).await?;
        }
        for key in deletes {
            sqlx::query("DELETE FROM inventory_devices WHERE connection_id = ? AND serial_key = ?")
                .bind(connection)
                .bind(key)
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
             VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (connection_id) DO UPDATE SET \
             last_started_at = excluded.last_started_at, \
             last_finished_at = excluded.last_finished_at, \
             devices = excluded.devices, kandji_calls = excluded.kandji_calls",
        )
        .bind(connection)
        .bind(format_ts(&sync.started_at))
        .bind(format_ts(&sync.finished_at))
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
        let row: Option<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT last_started_at, last_finished_at, devices, kandji_calls \
             FROM inventory_syncs WHERE connection_id = ?",
        )
        .bind(connection)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(started, finished, devices, calls)| {
            Ok(InventorySync {
                started_at: parse_ts(&started)?,
                finished_at: parse_ts(&finished)?,
                devices: devices.max(0) as u64,
                kandji_calls: calls.max(0) as u64,
            })
        })
        .transpose()
    }

    async fn inventory_clear(&self, connection: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM inventory_devices WHERE connection_id = ?")
            .bind(connection)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM inventory_syncs WHERE connection_id = ?")
            .bind(connection)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

fn row_to_inventory_device(row: &SqliteRow) -> Result<InventoryDevice, StoreError> {
    let last_check_in: Option<String> = row.try_get("last_check_in")?;
    let last_seen: String = row.try_get("last_seen")?;
    Ok(InventoryDevice {
        serial_key: row.try_get("serial_key")?,
        device_id: row.try_get("device_id")?,
        platform: row.try_get("platform")?,
        os_version: row.try_get("os_version")?,
        blueprint_name: row.try_get("blueprint_name")?,
        last_check_in: last_check_in.as_deref().map(parse_ts).transpose()?,
        mdm_enabled: row.try_get("mdm_enabled")?,
        agent_installed: row.try_get("agent_installed")?,
        is_missing: row.try_get("is_missing")?,
        is_removed: row.try_get("is_removed")?,
        last_seen: parse_ts(&last_seen)?,
    })
}

const SELECT_STREAM: &str = "SELECT id, owner, connection_id, card_id, result_set, callback_origin, \
     record_limit, state, error, record_count, failed_deliveries, pages_fetched, started_at, \
     finished_at, updated_at FROM streams WHERE id = ?";

/// Binds: owner filter, state filter (NULL = any), limit.
const LIST_STREAMS: &str = "SELECT id, owner, connection_id, card_id, result_set, callback_origin, \
     record_limit, state, error, record_count, failed_deliveries, pages_fetched, started_at, \
     finished_at, updated_at FROM streams \
     WHERE (?1 IS NULL OR owner = ?1) AND (?2 IS NULL OR state = ?2) \
     ORDER BY started_at DESC, id DESC LIMIT ?3";

const SELECT_JOB: &str = "SELECT id, owner, connection_id, card_id, result_set, callback_origin, \
     record_limit, state, error, record_count, failed_deliveries, pages_fetched, started_at, \
     finished_at, updated_at, inputs, options, helper_ciphertext, done_below, done_above, \
     page_start, cursor_offset, cursor_page, cursor_next FROM streams WHERE id = ?";

/// Binds: the checkpoint (see [`bind_checkpoint`]), updated_at, id.
const CHECKPOINT_STREAM: &str = "UPDATE streams SET \
     done_below = ?, done_above = ?, page_start = ?, cursor_offset = ?, cursor_page = ?, \
     cursor_next = ?, record_count = ?, failed_deliveries = ?, pages_fetched = ?, updated_at = ? \
     WHERE id = ? AND state = 'running'";

/// Binds: the checkpoint, state, error, finished_at, updated_at, id, state again.
const FINISH_STREAM: &str = "UPDATE streams SET \
     done_below = ?, done_above = ?, page_start = ?, cursor_offset = ?, cursor_page = ?, \
     cursor_next = ?, record_count = ?, failed_deliveries = ?, pages_fetched = ?, \
     state = ?, error = ?, finished_at = COALESCE(finished_at, ?), updated_at = ?, \
     helper_ciphertext = NULL \
     WHERE id = ? AND (state = 'running' OR state = ?)";

type Query<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

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
    conn: &mut SqliteConnection,
    stream_id: &str,
    failures: &[DeliveryFailure],
) -> Result<(), StoreError> {
    for f in failures {
        sqlx::query(
            "INSERT INTO stream_failures \
             (stream_id, idx, webhook_id, status, error, body, attempts, failed_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (stream_id, idx) DO UPDATE SET \
             webhook_id = excluded.webhook_id, status = excluded.status, error = excluded.error, \
             body = excluded.body, attempts = excluded.attempts, failed_at = excluded.failed_at",
        )
        .bind(stream_id)
        .bind(to_i64(f.index)?)
        .bind(&f.webhook_id)
        .bind(f.status.map(i64::from))
        .bind(&f.error)
        .bind(&f.body)
        .bind(i64::from(f.attempts))
        .bind(format_ts(&f.failed_at))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Db("a counter is out of range".into()))
}

fn get_u64(row: &SqliteRow, col: &str) -> Result<u64, StoreError> {
    let v: i64 = row.try_get(col)?;
    u64::try_from(v).map_err(|_| StoreError::Db(format!("negative streams.{col} in database")))
}

fn row_to_stream(row: &SqliteRow) -> Result<Stream, StoreError> {
    let state: String = row.try_get("state")?;
    let limit: Option<i64> = row.try_get("record_limit")?;
    let started_at: String = row.try_get("started_at")?;
    let finished_at: Option<String> = row.try_get("finished_at")?;
    let updated_at: String = row.try_get("updated_at")?;
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
        started_at: parse_ts(&started_at)?,
        finished_at: finished_at.as_deref().map(parse_ts).transpose()?,
        updated_at: parse_ts(&updated_at)?,
    })
}
