//! Device trust: "is the device with this serial number managed?", at authentication speed.
//!
//! Per connection (opt-in, `inventory_sync`), a background sync ([`sync`]) pages through
//! Kandji's device list and keeps an in-memory [`Index`] by serial number, persisted in the
//! store so a restart answers at once. A lookup the index cannot answer costs one live
//! `GET /devices?serial_number=` (Kandji's filter is "contains"; the exact serial is picked
//! here), within the connection's budget like every other call and, apart from the sync's,
//! within a share of its rate kept for live lookups (`live_share`, shared by the replicas), for
//! which it waits at most `live_wait`: a flood of unknown serial numbers (a key holder probing,
//! personal devices) cannot spend the tenant's budget or stall a sign-in. Without share or
//! budget in time, the inventory answers at once, saying no live check was made. With the sync
//! off, every lookup is live. When Kandji cannot be reached, a lookup is answered from the
//! index, marked stale, with `kandji_available: false`.
//!
//! Several replicas on one PostgreSQL database share the work: one replica at a time holds a
//! connection's sync lease and pages through Kandji; the others follow, loading each completed
//! sync from the store. Every few seconds each replica reconciles which connections keep an
//! inventory with the store, so turning the sync on or off through one replica reaches all.
//!
//! "Managed" means enrolled (Kandji lists the device), MDM enabled, and neither missing nor
//! removed.

mod index;
mod sync;

pub use index::{Entry, Index, SerialNumber};

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::task::JoinHandle;
use utoipa::ToSchema;

use crate::engine::{self, Resolved, Resolver, ResolverPreview, RunError};
use crate::error::FieldError;
use crate::kandji::{
    ApiPath, KandjiClient, KandjiError, KandjiRequest, Share, Tenant, TenantCache, Wait,
};
use crate::store::{InventoryDevice, InventorySync, Store, StoreError};

/// The client's counts label of live lookups.
pub const LOOKUP_LABEL: &str = "device_trust";

#[derive(Debug, Clone)]
pub struct TrustConfig {
    /// From the start of one sync to the start of the next.
    pub interval: Duration,
    /// The share (0 to 1) of the connection's request rate a sync may use; the rest stays free
    /// for cards and streams while a sync runs.
    pub budget_share: f64,
    /// The share (0 to 1) of the connection's hourly budget a sync leaves untouched: it waits
    /// while less than this is left of the last hour's budget.
    pub budget_reserve: f64,
    /// An answer Kandji has not confirmed for this long is stale even when Kandji answers;
    /// `None`: twice the interval.
    pub stale_after: Option<Duration>,
    /// The share (0 to 1) of the connection's request rate live lookups may use (serial numbers
    /// the inventory lacks, or every lookup with the sync off); separate from the sync's share.
    pub live_share: f64,
    /// How long a live lookup waits for its share or the connection's budget before the
    /// inventory answers without it.
    pub live_wait: Duration,
    /// Serial numbers Kandji did not know remembered per connection, at most.
    pub remembered_misses: usize,
}

impl Default for TrustConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(300),
            budget_share: 0.5,
            budget_reserve: 0.2,
            stale_after: None,
            live_share: 0.1,
            live_wait: Duration::from_millis(250),
            remembered_misses: MAX_REMEMBERED_MISSES,
        }
    }
}

impl TrustConfig {
    /// An answer older than this is stale even when Kandji answers.
    pub fn stale_after(&self) -> Duration {
        self.stale_after.unwrap_or(self.interval * 2)
    }
}

/// Where an answer came from. `inventory`: the synced inventory, no request to Kandji. `live`:
/// one `GET /api/v1/devices?serial_number=` for this lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The synced inventory (no request to Kandji).
    Inventory,
    /// A request to Kandji made for this lookup.
    Live,
}

/// Whether Kandji was asked for this answer. `made`: a live lookup was made for it (`source:
/// live`). `not_needed`: the inventory holds the device. `recent`: a live lookup within the sync
/// interval (at `checked_at`) found Kandji does not know this serial number. `skipped`: the
/// inventory lacks the serial number and no live lookup was made: the connection's share for
/// live lookups (`KANDJI_CONNECTOR_TRUST_LIVE_SHARE`) or its budget was not available within
/// `KANDJI_CONNECTOR_TRUST_LIVE_WAIT_MS`; `found: false` is the inventory's word as of
/// `checked_at`. `failed`: a live lookup was tried but Kandji could not be reached
/// (`kandji_available: false`); the inventory answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LiveCheck {
    Made,
    NotNeeded,
    Recent,
    Skipped,
    Failed,
}

/// Whether a device is managed. `managed` means enrolled (Kandji lists the device), MDM
/// enabled, and neither missing nor removed. The device fields are null when `found` is false.
/// (The answer of the endpoint and of the `get_device_trust` card.)
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = DeviceTrust)]
pub struct TrustAnswer {
    /// As asked.
    pub serial_number: String,
    /// Kandji lists a device with this serial number (exact match, not case sensitive).
    pub found: bool,
    /// Found, MDM enabled, and neither missing nor removed.
    pub managed: bool,
    #[schema(required = true)]
    pub mdm_enabled: Option<bool>,
    #[schema(required = true)]
    pub agent_installed: Option<bool>,
    #[schema(required = true)]
    pub is_missing: Option<bool>,
    #[schema(required = true)]
    pub is_removed: Option<bool>,
    #[schema(required = true, examples("Mac"))]
    pub platform: Option<String>,
    #[schema(required = true)]
    pub os_version: Option<String>,
    #[schema(required = true)]
    pub last_check_in: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub device_id: Option<String>,
    #[schema(required = true)]
    pub blueprint_name: Option<String>,
    /// When Kandji last confirmed this answer: the device's last sync or live lookup, or for a
    /// serial number the inventory lacks, its last completed sync. null: never.
    #[schema(required = true)]
    pub checked_at: Option<DateTime<Utc>>,
    /// Seconds since `checked_at`.
    #[schema(required = true)]
    pub age_seconds: Option<u64>,
    pub source: Source,
    #[schema(inline)]
    pub live_check: LiveCheck,
    /// The connection's inventory is complete and fresh: it holds every device Kandji listed
    /// at its last full sync, and that sync is on schedule (it started no longer ago than the
    /// sync interval plus the time a sync takes). A serial number it lacks was then not
    /// enrolled as of `checked_at` (its age is `age_seconds`). False with the sync off, before
    /// the first full sync, and while syncs fail or fall behind.
    pub inventory_complete: bool,
    /// Whether the latest exchange with Kandji on this connection succeeded. When Kandji cannot
    /// be reached, the inventory answers (`source: inventory`) with this false instead of
    /// failing.
    pub kandji_available: bool,
    /// Not confirmed recently enough to rely on: Kandji is unavailable, or `checked_at` is
    /// older than `KANDJI_CONNECTOR_INVENTORY_STALE_AFTER_MS` (by default twice the sync
    /// interval).
    pub stale: bool,
}

impl TrustAnswer {
    fn new(
        serial: &SerialNumber,
        device: Option<&InventoryDevice>,
        source: Source,
        live_check: LiveCheck,
    ) -> Self {
        let d = device;
        Self {
            serial_number: serial.as_str().to_string(),
            found: d.is_some(),
            managed: d.is_some_and(|d| d.mdm_enabled && !d.is_missing && !d.is_removed),
            mdm_enabled: d.map(|d| d.mdm_enabled),
            agent_installed: d.map(|d| d.agent_installed),
            is_missing: d.map(|d| d.is_missing),
            is_removed: d.map(|d| d.is_removed),
            platform: d.and_then(|d| d.platform.clone()),
            os_version: d.and_then(|d| d.os_version.clone()),
            last_check_in: d.and_then(|d| d.last_check_in),
            device_id: d.map(|d| d.device_id.clone()),
            blueprint_name: d.and_then(|d| d.blueprint_name.clone()),
            checked_at: None,
            age_seconds: None,
            source,
            live_check,
            inventory_complete: false,
            kandji_available: true,
            stale: false,
        }
    }

    fn checked(
        mut self,
        at: Option<DateTime<Utc>>,
        available: bool,
        stale_after: Duration,
    ) -> Self {
        let age = at.map(|at| (Utc::now() - at).to_std().unwrap_or_default());
        self.checked_at = at;
        self.age_seconds = age.map(|a| a.as_secs());
        self.kandji_available = available;
        self.stale = !available || age.is_none_or(|a| a > stale_after);
        self
    }

    /// Notes whether the connection's inventory is complete and fresh.
    fn of(mut self, inv: &Inventory) -> Self {
        self.inventory_complete = inv.complete_and_fresh();
        self
    }
}

/// Why a lookup has no answer.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(transparent)]
    Kandji(#[from] KandjiError),
    /// Kandji answered with an error status and there is no inventory to answer from.
    #[error("Kandji answered {status}")]
    KandjiStatus { status: u16, body: Value },
}

/// A connection's device inventory, as `GET /v1/connections/{id}` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InventoryStatus {
    #[schema(inline)]
    pub state: Phase,
    pub devices: usize,
    /// Heap bytes of the in-memory index, estimated from its allocations.
    pub index_bytes: usize,
    /// Serial numbers a live lookup found Kandji does not know, remembered for one sync interval
    /// so they are not asked again: at most 10,000 (the oldest are forgotten first).
    pub remembered_misses: usize,
    /// Whether the latest exchange with Kandji on this connection (a sync page or a live
    /// lookup) succeeded.
    pub kandji_available: bool,
    #[schema(required = true)]
    pub last_sync: Option<SyncReport>,
    #[schema(required = true)]
    pub current_sync: Option<SyncProgress>,
    #[schema(required = true)]
    pub last_error: Option<String>,
}

/// A completed sync.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SyncReport {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: u64,
    /// Devices Kandji listed.
    pub devices: u64,
    /// Requests sent to Kandji, retries included.
    pub kandji_calls: u64,
}

impl From<&InventorySync> for SyncReport {
    fn from(s: &InventorySync) -> Self {
        Self {
            started_at: s.started_at,
            finished_at: s.finished_at,
            duration_ms: (s.finished_at - s.started_at).num_milliseconds().max(0) as u64,
            devices: s.devices,
            kandji_calls: s.kandji_calls,
        }
    }
}

/// The sync under way.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SyncProgress {
    pub started_at: DateTime<Utc>,
    pub devices: u64,
    pub kandji_calls: u64,
}

/// Where a connection's inventory sync stands. `waiting_for_budget`: less than the reserve
/// (`KANDJI_CONNECTOR_INVENTORY_BUDGET_RESERVE`) of the hour's budget is left, so the sync waits
/// and leaves it to cards and streams. `failing`: the last sync failed; it is retried after 5 s,
/// 10 s, ... (at most the sync interval). `following`: another replica holds this connection's
/// sync lease and syncs; this one loads each completed sync from the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Idle,
    Syncing,
    WaitingForBudget,
    Failing,
    Following,
}

struct SyncState {
    phase: Phase,
    last: Option<InventorySync>,
    current: Option<SyncProgress>,
    last_error: Option<String>,
}

/// Serial numbers remembered per connection at most, by default: with 64-character serial
/// numbers about 1.5 MiB. (At the default share of 10 % of Kandji's 10,000 requests an hour and
/// the default 5-minute interval, live lookups find at most about 85 per interval.)
const MAX_REMEMBERED_MISSES: usize = 10_000;

/// Serial numbers a live lookup found Kandji does not know, each remembered for one sync
/// interval so a device Kandji does not know costs one call per interval rather than one per
/// sign-in; at most `cap` of them, the oldest forgotten first.
struct Misses {
    cap: usize,
    at: HashMap<Arc<str>, DateTime<Utc>>,
    /// Insertion order (so oldest first); an entry whose time differs from `at`'s is outdated.
    order: VecDeque<(Arc<str>, DateTime<Utc>)>,
}

impl Misses {
    fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            at: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn get(&self, key: &str) -> Option<DateTime<Utc>> {
        self.at.get(key).copied()
    }

    fn remove(&mut self, key: &str) {
        self.at.remove(key);
    }

    fn len(&self) -> usize {
        self.at.len()
    }

    /// Remembers `key` from `now`, first forgetting what is older than `ttl` and, when full,
    /// the oldest.
    fn insert(&mut self, key: &str, now: DateTime<Utc>, ttl: chrono::Duration) {
        while let Some((_, t)) = self.order.front() {
            let full = self.at.len() >= self.cap || self.order.len() >= 2 * self.cap;
            if !(full || now - *t >= ttl) {
                break;
            }
            let (k, t) = self.order.pop_front().expect("a front");
            if self.at.get(&k) == Some(&t) {
                self.at.remove(&k);
            }
        }
        let key: Arc<str> = key.into();
        self.at.insert(key.clone(), now);
        self.order.push_back((key, now));
    }
}

/// One connection's inventory.
pub struct Inventory {
    connection_id: String,
    index: RwLock<Index>,
    misses: Mutex<Misses>,
    state: Mutex<SyncState>,
    available: AtomicBool,
    /// A write to the store failed: the next sync writes every device, not only changed ones.
    store_behind: AtomicBool,
    interval: Duration,
    /// Until when (µs since the epoch) the last completed sync keeps the inventory complete and
    /// fresh; 0: not complete.
    fresh_until: AtomicI64,
}

impl Inventory {
    fn new(connection_id: &str, last: Option<InventorySync>, config: &TrustConfig) -> Self {
        let inv = Self {
            connection_id: connection_id.to_string(),
            index: RwLock::new(Index::default()),
            misses: Mutex::new(Misses::new(config.remembered_misses)),
            state: Mutex::new(SyncState {
                // A first sync starts as soon as the inventory exists.
                phase: Phase::Syncing,
                last: None,
                current: None,
                last_error: None,
            }),
            available: AtomicBool::new(true),
            store_behind: AtomicBool::new(false),
            interval: config.interval,
            fresh_until: AtomicI64::new(0),
        };
        if let Some(last) = last {
            inv.completed(last);
        }
        inv
    }

    /// Records a completed sync (this replica's or, loaded from the store, another's).
    fn completed(&self, last: InventorySync) {
        // On schedule, the next sync starts an interval after this one and takes about as long.
        let took = last.finished_at - last.started_at;
        let until = last.started_at
            + chrono::Duration::from_std(self.interval).unwrap_or(chrono::Duration::MAX / 2)
            + took.max(chrono::Duration::zero());
        self.fresh_until
            .store(until.timestamp_micros(), Ordering::Relaxed);
        self.state().last = Some(last);
    }

    /// The index holds every device Kandji listed at the last completed sync, and that sync is
    /// on schedule.
    fn complete_and_fresh(&self) -> bool {
        Utc::now().timestamp_micros() < self.fresh_until.load(Ordering::Relaxed)
    }

    fn index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn index_mut(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A sync pass is over, or a follow of another replica's: the inventory is now in `phase`,
    /// with `error` when the pass failed.
    fn end_pass(&self, phase: Phase, error: Option<String>) {
        let mut st = self.state();
        st.phase = phase;
        st.current = None;
        st.last_error = error;
    }

    fn misses(&self) -> std::sync::MutexGuard<'_, Misses> {
        self.misses.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_available(&self, on: bool) {
        self.available.store(on, Ordering::Relaxed);
    }

    fn available(&self) -> bool {
        self.available.load(Ordering::Relaxed)
    }

    /// Since when the index is known to hold every device Kandji lists (the last completed
    /// sync's start), so a serial it lacks was not enrolled then.
    fn complete_since(&self) -> Option<DateTime<Utc>> {
        self.state().last.as_ref().map(|s| s.started_at)
    }

    fn status(&self) -> InventoryStatus {
        let (devices, index_bytes) = {
            let idx = self.index();
            (idx.len(), idx.approx_bytes())
        };
        let remembered_misses = self.misses().len();
        let st = self.state();
        InventoryStatus {
            state: st.phase,
            devices,
            index_bytes,
            remembered_misses,
            kandji_available: self.available(),
            last_sync: st.last.as_ref().map(SyncReport::from),
            current_sync: st.current.clone(),
            last_error: st.last_error.clone(),
        }
    }
}

/// What the sync tasks and lookups share.
struct Shared {
    config: TrustConfig,
    store: Arc<dyn Store>,
    kandji: KandjiClient,
    tenants: TenantCache,
    /// The event cards: a sync's changes are inventory events too (`crate::events::inventory`).
    catalog: Arc<crate::catalog::Catalog>,
}

/// Every connection's inventory and sync.
pub struct Trust {
    shared: Arc<Shared>,
    inventories: RwLock<HashMap<String, Arc<Inventory>>>,
    tasks: Mutex<HashMap<String, JoinHandle<()>>>,
    /// Serialises enabling, disabling and reconciling, so a reconcile that read the store
    /// before a change cannot undo it.
    membership: tokio::sync::Mutex<()>,
    reconciler: Mutex<Option<JoinHandle<()>>>,
}

/// Rows read from the store at a time when an inventory is loaded.
const LOAD_BATCH: u32 = 5_000;

/// How often each replica checks which connections keep an inventory (another replica may have
/// turned a sync on or off).
const RECONCILE_EVERY: Duration = Duration::from_secs(5);

/// A connection's inventory as the store holds it, as of its last completed sync `last`.
async fn load_index(
    store: &dyn Store,
    connection: &str,
    last: Option<&InventorySync>,
) -> Result<Index, StoreError> {
    let mut idx = Index::default();
    let mut after: Option<String> = None;
    loop {
        let rows = store
            .inventory_devices(connection, after.as_deref(), LOAD_BATCH)
            .await?;
        let full = rows.len() == LOAD_BATCH as usize;
        after = rows.last().map(|r| r.serial_key.clone());
        for mut d in rows {
            // Every row left after a completed sync was seen by it.
            if let Some(l) = last {
                d.last_seen = d.last_seen.max(l.started_at);
            }
            idx.upsert(&d);
        }
        if !full {
            return Ok(idx);
        }
    }
}

impl Trust {
    /// Loads the inventory of every connection with `inventory_sync` on and starts their syncs.
    pub async fn start(
        config: TrustConfig,
        store: Arc<dyn Store>,
        kandji: KandjiClient,
        tenants: TenantCache,
        catalog: Arc<crate::catalog::Catalog>,
    ) -> Result<Arc<Self>, StoreError> {
        let trust = Arc::new(Self {
            shared: Arc::new(Shared {
                config,
                store,
                kandji,
                tenants,
                catalog,
            }),
            inventories: RwLock::new(HashMap::new()),
            tasks: Mutex::new(HashMap::new()),
            membership: tokio::sync::Mutex::new(()),
            reconciler: Mutex::new(None),
        });
        trust.reconcile().await?;
        let weak = Arc::downgrade(&trust);
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(RECONCILE_EVERY).await;
                let Some(trust) = weak.upgrade() else { return };
                if let Err(e) = trust.reconcile().await {
                    tracing::warn!(error = %e, "device trust: cannot read which connections keep an inventory");
                }
            }
        });
        *trust.reconciler.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(trust)
    }

    /// Keeps an inventory for exactly the connections whose `inventory_sync` is on in the store
    /// (turned on or off through another replica). Stopping here forgets only this replica's
    /// copy: the replica that turned the sync off cleared the store.
    async fn reconcile(&self) -> Result<(), StoreError> {
        let _guard = self.membership.lock().await;
        let wanted: Vec<String> = self
            .shared
            .store
            .list_connections()
            .await?
            .into_iter()
            .filter(|c| c.inventory_sync)
            .map(|c| c.id)
            .collect();
        let held: Vec<String> = self
            .inventories
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        for id in held.iter().filter(|id| !wanted.contains(id)) {
            // Another replica turned the sync off and cleared the store; if this replica was the
            // one syncing, it may have written since: clear again once its sync has stopped.
            let was_syncing = self
                .inventory(id)
                .is_some_and(|inv| inv.state().phase != Phase::Following);
            self.stop(id).await;
            if was_syncing {
                let still_off = self
                    .shared
                    .store
                    .get_connection(id)
                    .await?
                    .is_some_and(|c| !c.inventory_sync);
                if still_off {
                    self.shared.store.inventory_clear(id).await?;
                }
            }
        }
        for id in wanted.iter().filter(|id| !held.contains(id)) {
            self.enable_locked(id).await?;
        }
        Ok(())
    }

    pub fn config(&self) -> &TrustConfig {
        &self.shared.config
    }

    fn inventory(&self, connection: &str) -> Option<Arc<Inventory>> {
        self.inventories
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(connection)
            .cloned()
    }

    /// Starts keeping a connection's inventory: loads what the store has, then syncs.
    pub async fn enable(&self, connection: &str) -> Result<(), StoreError> {
        let _guard = self.membership.lock().await;
        self.enable_locked(connection).await
    }

    async fn enable_locked(&self, connection: &str) -> Result<(), StoreError> {
        if self.inventory(connection).is_some() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let store = &self.shared.store;
        let last = store.inventory_last_sync(connection).await?;
        let inv = Arc::new(Inventory::new(
            connection,
            last.clone(),
            &self.shared.config,
        ));
        *inv.index_mut() = load_index(store.as_ref(), connection, last.as_ref()).await?;
        tracing::info!(
            connection,
            devices = inv.index().len(),
            ms = started.elapsed().as_millis() as u64,
            "inventory loaded from the store"
        );
        let mut map = self.inventories.write().unwrap_or_else(|e| e.into_inner());
        if map.contains_key(connection) {
            return Ok(());
        }
        map.insert(connection.to_string(), inv.clone());
        drop(map);
        let task = tokio::spawn(sync::run(self.shared.clone(), inv));
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(connection.to_string(), task);
        Ok(())
    }

    /// Stops the sync and forgets the inventory (memory and store).
    pub async fn disable(&self, connection: &str) -> Result<(), StoreError> {
        let _guard = self.membership.lock().await;
        self.stop(connection).await;
        self.shared.store.inventory_clear(connection).await
    }

    /// Starts over with an empty inventory (the connection now names another tenant).
    pub async fn reset(&self, connection: &str) -> Result<(), StoreError> {
        let _guard = self.membership.lock().await;
        self.stop(connection).await;
        self.shared.store.inventory_clear(connection).await?;
        self.shared.tenants.invalidate(connection);
        self.enable_locked(connection).await
    }

    async fn stop(&self, connection: &str) {
        self.inventories
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(connection);
        let task = self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(connection);
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
            // Let another replica take over at once rather than when the lease expires.
            if let Err(e) = self.shared.store.inventory_lease_release(connection).await {
                tracing::warn!(connection, error = %e, "could not give up the inventory sync lease");
            }
        }
    }

    /// Stops every sync (at shutdown; each resumes with a fresh sync at the next start).
    pub async fn shutdown(&self) {
        if let Some(task) = self
            .reconciler
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
        let ids: Vec<String> = self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        for id in ids {
            self.stop(&id).await;
        }
    }

    /// Every inventory's status, by connection (for the metrics).
    pub fn statuses(&self) -> Vec<(String, InventoryStatus)> {
        let invs: Vec<Arc<Inventory>> = self
            .inventories
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        invs.iter()
            .map(|i| (i.connection_id.clone(), i.status()))
            .collect()
    }

    /// A connection's inventory as operators see it; `None` when its sync is off.
    pub fn status(&self, connection: &str) -> Option<InventoryStatus> {
        self.inventory(connection).map(|i| i.status())
    }

    /// Answers for `serial` from the connection's inventory, when it knows: a device it holds,
    /// or a serial number a live lookup recently found Kandji does not know.
    pub fn known(&self, connection: &str, serial: &SerialNumber) -> Option<TrustAnswer> {
        let inv = self.inventory(connection)?;
        let stale_after = self.shared.config.stale_after();
        if let Some(d) = inv.index().get(serial).map(|e| e.to_device(serial.key())) {
            return Some(
                TrustAnswer::new(serial, Some(&d), Source::Inventory, LiveCheck::NotNeeded)
                    .checked(Some(d.last_seen), inv.available(), stale_after)
                    .of(&inv),
            );
        }
        let at = inv.misses().get(serial.key())?;
        (Utc::now() - at < self.miss_ttl()).then(|| {
            TrustAnswer::new(serial, None, Source::Inventory, LiveCheck::Recent)
                .checked(Some(at), inv.available(), stale_after)
                .of(&inv)
        })
    }

    /// How long a serial number Kandji did not know is remembered: one sync interval.
    fn miss_ttl(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.shared.config.interval).unwrap_or_default()
    }

    /// Answers for `serial` from the inventory when it knows, else with one live lookup.
    pub async fn lookup(
        &self,
        tenant: &Tenant,
        serial: &SerialNumber,
    ) -> Result<TrustAnswer, LookupError> {
        match self.known(&tenant.connection_id, serial) {
            Some(a) => {
                crate::telemetry::trust_lookup(Ok(&a), false);
                Ok(a)
            }
            None => {
                let answer = self.ask_kandji(tenant, serial).await;
                crate::telemetry::trust_lookup(answer.as_ref().map_err(|_| ()), true);
                answer
            }
        }
    }

    /// One live lookup, within the connection's share for live lookups and waiting for budget
    /// at most `live_wait`. What it finds joins the inventory (if the connection keeps one);
    /// when Kandji cannot be asked (budget or share not available in time, or Kandji failing),
    /// the inventory answers as of its last completed sync, saying no live check was made.
    pub async fn ask_kandji(
        &self,
        tenant: &Tenant,
        serial: &SerialNumber,
    ) -> Result<TrustAnswer, LookupError> {
        let connection = tenant.connection_id.as_str();
        let config = &self.shared.config;
        let stale_after = config.stale_after();
        let outcome = live_lookup(&self.shared.kandji, config, tenant, serial).await;
        let Some(inv) = self.inventory(connection) else {
            return outcome.map(|d| {
                TrustAnswer::new(serial, d.as_ref(), Source::Live, LiveCheck::Made).checked(
                    Some(now()),
                    true,
                    stale_after,
                )
            });
        };
        match outcome {
            Ok(found) => {
                inv.set_available(true);
                let at = now();
                match &found {
                    Some(d) => {
                        inv.index_mut().upsert(d);
                        inv.misses().remove(serial.key());
                        if let Err(e) = self
                            .shared
                            .store
                            .inventory_apply(connection, std::slice::from_ref(d), &[])
                            .await
                        {
                            inv.store_behind.store(true, Ordering::Relaxed);
                            tracing::warn!(connection, error = %e, "could not store a device found by a live lookup");
                        }
                    }
                    None => inv.misses().insert(serial.key(), at, self.miss_ttl()),
                }
                Ok(
                    TrustAnswer::new(serial, found.as_ref(), Source::Live, LiveCheck::Made)
                        .checked(Some(at), true, stale_after)
                        .of(&inv),
                )
            }
            // Kandji is fine but the share or the budget is not available in time: the
            // inventory's word stands, as of its last completed sync (if any), and says so.
            Err(LookupError::Kandji(KandjiError::Throttled(_))) => {
                Ok(
                    TrustAnswer::new(serial, None, Source::Inventory, LiveCheck::Skipped)
                        .checked(inv.complete_since(), inv.available(), stale_after)
                        .of(&inv),
                )
            }
            Err(e) => {
                tracing::info!(connection, error = %e, "Kandji unavailable for a device-trust lookup; answering from the inventory");
                inv.set_available(false);
                Ok(
                    TrustAnswer::new(serial, None, Source::Inventory, LiveCheck::Failed)
                        .checked(inv.complete_since(), false, stale_after)
                        .of(&inv),
                )
            }
        }
    }
}

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A live lookup's request: Kandji's filter is "contains", so a whole page is asked for.
fn live_request(serial: &SerialNumber) -> KandjiRequest {
    let mut req =
        KandjiRequest::get(ApiPath::from_template("/devices", |_| None).expect("static path"));
    req.query
        .push(("serial_number".into(), serial.as_str().to_string()));
    req.query
        .push(("limit".into(), sync::PAGE_SIZE.to_string()));
    req
}

/// One `GET /devices?serial_number=` and the exact (case-insensitive) match among its answers.
async fn live_lookup(
    kandji: &KandjiClient,
    config: &TrustConfig,
    tenant: &Tenant,
    serial: &SerialNumber,
) -> Result<Option<InventoryDevice>, LookupError> {
    let share = Share {
        name: LOOKUP_LABEL,
        fraction: config.live_share,
    };
    let resp = kandji
        .send_within(
            tenant,
            &live_request(serial),
            Wait::Upto(config.live_wait),
            LOOKUP_LABEL,
            Some(share),
        )
        .await?;
    let body = engine::parse_body(&resp);
    if !resp.is_success() {
        return Err(LookupError::KandjiStatus {
            status: resp.status,
            body,
        });
    }
    let at = now();
    Ok(sync::records(&body)
        .iter()
        .filter_map(|r| sync::parse_device(r, at))
        .find(|d| d.serial_key == serial.key()))
}

/// The `device_trust` resolver: the `get_device_trust` card's answers.
#[async_trait::async_trait]
impl Resolver for Trust {
    async fn resolve(
        &self,
        tenant: &Tenant,
        args: &Map<String, Value>,
    ) -> Result<Resolved, RunError> {
        let serial = serial_arg(args)?;
        match self.lookup(tenant, &serial).await {
            Ok(answer) => Ok(Resolved {
                status: 200,
                body: serde_json::to_value(answer).unwrap_or_default(),
            }),
            // Kandji's refusal passes through as the card's status_code and error, as on every card.
            Err(LookupError::KandjiStatus { status, body }) => Ok(Resolved { status, body }),
            Err(LookupError::Kandji(e)) => Err(RunError::Kandji(e)),
        }
    }

    /// The inventory's answer costs nothing; anything else one live lookup.
    fn preview(
        &self,
        tenant: &Tenant,
        args: &Map<String, Value>,
    ) -> Result<ResolverPreview, RunError> {
        let serial = serial_arg(args)?;
        let connection = tenant.connection_id.as_str();
        Ok(match self.known(connection, &serial) {
            Some(_) => ResolverPreview {
                requests: Vec::new(),
                answer_from: "the connection's synced device inventory knows this serial number: the answer comes from it, and nothing is sent to Kandji".into(),
            },
            None => ResolverPreview {
                requests: vec![live_request(&serial)],
                answer_from: match self.inventory(connection) {
                    Some(_) => "the connection's device inventory does not know this serial number: one live lookup asks Kandji (its exact, case-insensitive match is kept), within the connection's share for live lookups (KANDJI_CONNECTOR_TRUST_LIVE_SHARE); if that share or the budget is not available within KANDJI_CONNECTOR_TRUST_LIVE_WAIT_MS, or Kandji cannot be reached, the inventory answers (live_check: skipped or failed)",
                    None => "this connection keeps no device inventory (inventory_sync is off): one live lookup asks Kandji (its exact, case-insensitive match is kept), within the connection's share for live lookups (KANDJI_CONNECTOR_TRUST_LIVE_SHARE); if that share or the budget is not available within KANDJI_CONNECTOR_TRUST_LIVE_WAIT_MS, the answer is 429",
                }
                .into(),
            },
        })
    }
}

/// The resolver's `serial_number` argument, checked.
fn serial_arg(args: &Map<String, Value>) -> Result<SerialNumber, RunError> {
    let given = args
        .get("serial_number")
        .and_then(Value::as_str)
        .unwrap_or("");
    SerialNumber::parse(given).map_err(|msg| {
        RunError::Invalid(vec![FieldError::new(
            &["inputs", "serial_number"],
            msg,
            "serial_number",
        )])
    })
}
