//! The device inventory kept for device-trust lookups (see `src/trust/`).

use chrono::{DateTime, Utc};

use super::StoreError;
use super::sql::Ts;

/// One device as the inventory keeps it: what a device-trust answer needs, nothing more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryDevice {
    /// The serial number, upper-cased (lookups are case-insensitive).
    pub serial_key: String,
    pub device_id: String,
    pub platform: Option<String>,
    pub os_version: Option<String>,
    pub blueprint_name: Option<String>,
    /// The user's email: `Some("")` when Kandji lists no user, `None` when not read yet.
    pub user_email: Option<String>,
    pub last_check_in: Option<DateTime<Utc>>,
    pub mdm_enabled: bool,
    pub agent_installed: bool,
    pub is_missing: bool,
    pub is_removed: bool,
    /// When the connector last read this device from Kandji (as stored: when the row changed).
    pub last_seen: DateTime<Utc>,
}

/// A completed sync of a connection's inventory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventorySync {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub devices: u64,
    pub kandji_calls: u64,
}

/// Each connection's device inventory and its last completed sync.
#[async_trait::async_trait]
pub trait InventoryStore: Send + Sync {
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
}

#[derive(sqlx::FromRow)]
pub(super) struct DeviceRow {
    serial_key: String,
    device_id: String,
    platform: Option<String>,
    os_version: Option<String>,
    blueprint_name: Option<String>,
    user_email: Option<String>,
    last_check_in: Option<Ts>,
    mdm_enabled: bool,
    agent_installed: bool,
    is_missing: bool,
    is_removed: bool,
    last_seen: Ts,
}

impl From<DeviceRow> for InventoryDevice {
    fn from(row: DeviceRow) -> Self {
        InventoryDevice {
            serial_key: row.serial_key,
            device_id: row.device_id,
            platform: row.platform,
            os_version: row.os_version,
            blueprint_name: row.blueprint_name,
            user_email: row.user_email,
            last_check_in: row.last_check_in.map(|t| t.0),
            mdm_enabled: row.mdm_enabled,
            agent_installed: row.agent_installed,
            is_missing: row.is_missing,
            is_removed: row.is_removed,
            last_seen: row.last_seen.0,
        }
    }
}

/// Rows per multi-row statement: 13 parameters each, well under SQLite's 32,766 and
/// PostgreSQL's 65,535.
pub(super) const ROWS_PER_STATEMENT: usize = 500;

/// `impl InventoryStore` for `SqlStore<$db>` (see `sql.rs` for why a macro).
macro_rules! inventory_store {
    ($db:ty) => {
        const _: () = {
            use sqlx::QueryBuilder;

            use $crate::store::StoreError;
            use $crate::store::inventory::{
                DeviceRow, InventoryDevice, InventoryStore, InventorySync, ROWS_PER_STATEMENT,
            };
            use $crate::store::sql::{SqlStore, Ts, to_i64};

            #[async_trait::async_trait]
            impl InventoryStore for SqlStore<$db> {
                async fn inventory_devices(
                    &self,
                    connection: &str,
                    after: Option<&str>,
                    limit: u32,
                ) -> Result<Vec<InventoryDevice>, StoreError> {
                    let rows: Vec<DeviceRow> = sqlx::query_as(
                        "SELECT serial_key, device_id, platform, os_version, \
                         blueprint_name, user_email, last_check_in, mdm_enabled, \
                         agent_installed, is_missing, is_removed, last_seen \
                         FROM inventory_devices \
                         WHERE connection_id = $1 AND serial_key > $2 \
                         ORDER BY serial_key \
                         LIMIT $3",
                    )
                    .bind(connection)
                    .bind(after.unwrap_or(""))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                    Ok(rows.into_iter().map(InventoryDevice::from).collect())
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
                    let mut tx = self.begin_write().await?;
                    // One statement per few hundred rows: a first sync of 100,000 devices
                    // writes them all.
                    for chunk in upserts.chunks(ROWS_PER_STATEMENT) {
                        let mut insert = QueryBuilder::<$db>::new(
                            "INSERT INTO inventory_devices (connection_id, serial_key, \
                             device_id, platform, os_version, blueprint_name, \
                             user_email, last_check_in, mdm_enabled, agent_installed, \
                             is_missing, is_removed, last_seen) ",
                        );
                        insert.push_values(chunk, |mut row, d| {
                            row.push_bind(connection)
                                .push_bind(d.serial_key.as_str())
                                .push_bind(d.device_id.as_str())
                                .push_bind(d.platform.as_deref())
                                .push_bind(d.os_version.as_deref())
                                .push_bind(d.blueprint_name.as_deref())
                                .push_bind(d.user_email.as_deref())
                                .push_bind(d.last_check_in.map(Ts))
                                .push_bind(d.mdm_enabled)
                                .push_bind(d.agent_installed)
                                .push_bind(d.is_missing)
                                .push_bind(d.is_removed)
                                .push_bind(Ts(d.last_seen));
                        });
                        insert.push(
                            " ON CONFLICT (connection_id, serial_key) DO UPDATE SET \
                             device_id = excluded.device_id, \
                             platform = excluded.platform, \
                             os_version = excluded.os_version, \
                             blueprint_name = excluded.blueprint_name, \
                             user_email = excluded.user_email, \
                             last_check_in = excluded.last_check_in, \
                             mdm_enabled = excluded.mdm_enabled, \
                             agent_installed = excluded.agent_installed, \
                             is_missing = excluded.is_missing, \
                             is_removed = excluded.is_removed, \
                             last_seen = excluded.last_seen",
                        );
                        insert.build().execute(&mut *tx).await?;
                    }
                    for chunk in deletes.chunks(ROWS_PER_STATEMENT) {
                        let mut delete = QueryBuilder::<$db>::new(
                            "DELETE FROM inventory_devices WHERE connection_id = ",
                        );
                        delete.push_bind(connection).push(" AND serial_key IN (");
                        let mut keys = delete.separated(", ");
                        for key in chunk {
                            keys.push_bind(key.as_str());
                        }
                        delete.push(")");
                        delete.build().execute(&mut *tx).await?;
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
                        "INSERT INTO inventory_syncs (connection_id, last_started_at, \
                         last_finished_at, devices, kandji_calls) \
                         VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (connection_id) DO UPDATE SET \
                         last_started_at = excluded.last_started_at, \
                         last_finished_at = excluded.last_finished_at, \
                         devices = excluded.devices, \
                         kandji_calls = excluded.kandji_calls",
                    )
                    .bind(connection)
                    .bind(Ts(sync.started_at))
                    .bind(Ts(sync.finished_at))
                    .bind(to_i64(sync.devices).unwrap_or(i64::MAX))
                    .bind(to_i64(sync.kandji_calls).unwrap_or(i64::MAX))
                    .execute(&self.pool)
                    .await?;
                    Ok(())
                }

                async fn inventory_last_sync(
                    &self,
                    connection: &str,
                ) -> Result<Option<InventorySync>, StoreError> {
                    let row: Option<(Ts, Ts, i64, i64)> = sqlx::query_as(
                        "SELECT last_started_at, last_finished_at, devices, \
                         kandji_calls \
                         FROM inventory_syncs \
                         WHERE connection_id = $1",
                    )
                    .bind(connection)
                    .fetch_optional(&self.pool)
                    .await?;
                    Ok(
                        row.map(|(started, finished, devices, calls)| InventorySync {
                            started_at: started.0,
                            finished_at: finished.0,
                            devices: devices.max(0) as u64,
                            kandji_calls: calls.max(0) as u64,
                        }),
                    )
                }

                async fn inventory_clear(&self, connection: &str) -> Result<(), StoreError> {
                    let mut tx = self.begin_write().await?;
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
            }
        };
    };
}
pub(super) use inventory_store;
