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
    Connection, ConnectionPatch, IdempotencyClaim, InventoryDevice, InventorySync, NewConnection,
    Store, StoreError, TokenCipher, format_ts, new_connection_id, now, parse_ts,
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
