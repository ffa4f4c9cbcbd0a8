//! The background sync of one connection's inventory.
//!
//! Every interval it pages through `GET /api/v1/devices?ordering=device_id` (300 a page, offset
//! paging, in a stable order: Kandji's default order changes as devices check in, and offset
//! pages of a changing order repeat some devices and skip others) through the shared client,
//! waiting for budget as long as it takes (`Wait::Forever`), holding one page at a time. Kandji
//! offers no "changed since" filter, so every sync reads every device; what is incremental is
//! the rest: only new or changed devices are written to the store, and at the end the devices
//! Kandji no longer lists are dropped (from memory and store). The stable order leaves one way
//! to skip a device: one deleted mid-sync ahead of the offset shifts the rest back by one. The
//! skipped device is dropped too; its next lookup goes live and puts it back.
//!
//! The sync shares the connection's budget: it spaces its own requests to use at most
//! `budget_share` of the connection's rate, and pauses while less than `budget_reserve` of the
//! hour's budget is left, so cards and streams keep working while it runs.
//!
//! Only the replica holding the connection's sync lease (`Coordination::inventory_lease`) sweeps;
//! the others follow: every quarter interval they try the lease (so one takes over within
//! about a quarter interval of the lease expiring, when the holder stopped renewing it) and
//! otherwise reload the inventory from the store when a newer sync completed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Inventory, Phase, Shared, SyncProgress, now};
use crate::catalog::{ListPlan, Paging};
use crate::engine::{Pager, error_message};
use crate::kandji::{ApiPath, KandjiRequest, Tenant, TenantError, Wait};
use crate::store::{InventoryDevice, InventorySync};

/// Kandji's largest page of `/devices`.
pub const PAGE_SIZE: usize = 300;

/// New or changed devices are written in batches of about this many: one transaction per page
/// made a first sync of 100,000 devices spend most of its time committing (each commit rewrites
/// the B-tree pages its scattered keys touch). 2,000 devices take about as much memory as two
/// pages of Kandji's JSON.
const WRITE_BATCH: usize = 2_000;

/// The client's counts label of sync requests.
pub const SYNC_LABEL: &str = "inventory_sync";

/// How long a sync lease lasts without renewal: a sweep renews it as it goes, and the holder
/// takes it again before its next sweep, so it only lapses when the holder stopped.
fn lease_ttl(interval: Duration) -> Duration {
    interval + Duration::from_secs(60)
}

/// Runs syncs (or follows another replica's) until the task is aborted.
pub(super) async fn run(shared: Arc<Shared>, inv: Arc<Inventory>) {
    let interval = shared.config.interval;
    let ttl = lease_ttl(interval);
    let mut failures: u32 = 0;
    loop {
        let started = Instant::now();
        let conn = inv.connection_id.as_str();
        let round = match shared.store.inventory_lease(conn, ttl).await {
            Ok(true) => sweep(&shared, &inv, ttl).await.map(|()| interval),
            Ok(false) => follow(&shared, &inv).await.map(|()| interval / 4),
            Err(e) => Err(format!("the sync lease could not be read: {e}")),
        };
        crate::telemetry::inventory_sync(conn, round.is_ok());
        let wait = match round {
            Ok(every) => {
                failures = 0;
                every.saturating_sub(started.elapsed())
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(connection = %inv.connection_id, error = %e, "inventory sync failed");
                inv.end_pass(Phase::Failing, Some(e));
                // 5 s, 10 s, 20 s, ... but never longer than the interval.
                let backoff = Duration::from_secs(5)
                    .saturating_mul(1u32 << failures.saturating_sub(1).min(10));
                backoff.min(interval)
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Another replica holds the sync lease: load its latest completed sync from the store, if this
/// replica has not yet.
async fn follow(shared: &Shared, inv: &Inventory) -> Result<(), String> {
    let conn = inv.connection_id.as_str();
    let store = shared.store.as_ref();
    let last = store
        .inventory_last_sync(conn)
        .await
        .map_err(|e| format!("the store could not be read: {e}"))?;
    let have = inv
        .state()
        .last
        .as_ref()
        .map(|l| (l.started_at, l.finished_at));
    if let Some(l) = last
        .as_ref()
        .filter(|l| Some((l.started_at, l.finished_at)) != have)
    {
        let idx = super::load_index(store, conn, Some(l))
            .await
            .map_err(|e| format!("the store could not be read: {e}"))?;
        let devices = idx.len();
        *inv.index_mut() = idx;
        // The sync that stored it reached Kandji.
        inv.set_available(true);
        inv.completed(l.clone());
        tracing::debug!(
            connection = conn,
            devices,
            "inventory loaded from another replica's sync"
        );
    }
    inv.end_pass(Phase::Following, None);
    Ok(())
}

/// One full pass over Kandji's device list.
async fn sweep(shared: &Shared, inv: &Inventory, ttl: Duration) -> Result<(), String> {
    let conn = inv.connection_id.as_str();
    let tenant = shared.tenants.get(conn).await.map_err(|e| match e {
            TenantError::Unknown => e.to_string(),
            TenantError::Store(e) => {
                tracing::warn!(connection = conn, error = %e, "inventory sync: cannot read the connection");
                "the connector's database could not be read".to_string()
            }
        })?;
    let started_at = now();
    let calls_before = calls(shared, conn);
    inv.index_mut().begin_sweep();
    {
        let mut st = inv.state();
        st.phase = Phase::Syncing;
        st.current = Some(SyncProgress {
            started_at,
            devices: 0,
            kandji_calls: 0,
        });
    }
    // A stable order: Kandji's default one changes as devices check in, and offset pages of a
    // changing order repeat some devices and skip others.
    let list = Arc::new(
        ListPlan::new(Paging::Offset, &["", "/results"], PAGE_SIZE).ordered_by("device_id"),
    );
    let request =
        KandjiRequest::get(ApiPath::from_template("/devices", |_| None).expect("static path"));
    let mut pager = Pager::new(request, list);
    pager.wait = Wait::Forever;
    pager.label = SYNC_LABEL.to_string();
    let mut devices: u64 = 0;
    let mut last_call: Option<Instant> = None;
    // New or changed devices, written a batch at a time while the next page is fetched. After a
    // failed write the store is behind the index, so this sync writes every device it sees.
    let rewrite_all = inv.store_behind.load(Ordering::Relaxed);
    let mut unwritten: Vec<InventoryDevice> = Vec::new();
    let mut renewed = Instant::now();
    while !pager.is_done() {
        if renewed.elapsed() > ttl / 3 {
            renewed = Instant::now();
            match shared.store.inventory_lease(conn, ttl).await {
                Ok(true) => {}
                // Waiting for budget outlasted the lease and another replica took over: let it.
                Ok(false) => return Err("another replica took over the sync".into()),
                Err(e) => {
                    tracing::warn!(connection = conn, error = %e, "could not renew the inventory sync lease")
                }
            }
        }
        let batch = if unwritten.len() >= WRITE_BATCH {
            std::mem::take(&mut unwritten)
        } else {
            Vec::new()
        };
        let fetch = async {
            pace(shared, inv, &tenant, &mut last_call).await;
            pager.next(&shared.kandji, &tenant, PAGE_SIZE).await
        };
        let (page, written) = tokio::join!(fetch, write(inv, shared, &batch));
        written?;
        let failed = match &page {
            Ok(Some(p)) => p.error_body.as_ref().map(|body| {
                format!(
                    "Kandji answered {}: {}",
                    p.status,
                    error_message(p.status, body)
                )
            }),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        };
        if let Some(e) = failed {
            inv.set_available(false);
            // Keep what this sync learned before Kandji failed.
            write(inv, shared, &unwritten).await?;
            return Err(e);
        }
        let Ok(Some(page)) = page else { break };
        let seen_at = now();
        let parsed: Vec<InventoryDevice> = page
            .records
            .iter()
            .filter_map(|r| parse_device(r, seen_at))
            .collect();
        drop(page);
        devices += parsed.len() as u64;
        // Changed devices with what the inventory held: inventory events.
        let mut changed = Vec::new();
        {
            let mut idx = inv.index_mut();
            for d in parsed {
                let prev = idx.device(&d.serial_key);
                if idx.upsert(&d) {
                    if let Some(prev) = prev {
                        changed.push((prev, d.clone()));
                    }
                } else if !rewrite_all {
                    continue;
                }
                unwritten.push(d);
            }
        }
        // Recorded before the devices are written: after a crash in between the next sync
        // sees the same changes again (and recognises the events by id).
        if let Err(e) = crate::events::inventory::changes(
            shared.store.as_ref(),
            &shared.catalog,
            conn,
            &changed,
        )
        .await
        {
            let mut idx = inv.index_mut();
            for (prev, _) in &changed {
                idx.upsert(prev);
            }
            return Err(format!("the events could not be recorded: {e}"));
        }
        // After the page's devices are fresh, so no answer is both "available" and out of date.
        inv.set_available(true);
        let mut st = inv.state();
        st.phase = Phase::Syncing;
        st.current = Some(SyncProgress {
            started_at,
            devices,
            kandji_calls: calls(shared, conn) - calls_before,
        });
    }
    write(inv, shared, &unwritten).await?;
    let gone = inv.index_mut().remove_unseen();
    if let Err(e) = shared.store.inventory_apply(conn, &[], &gone).await {
        inv.store_behind.store(true, Ordering::Relaxed);
        return Err(format!("the store could not be written: {e}"));
    }
    let done = InventorySync {
        started_at,
        finished_at: now(),
        devices,
        kandji_calls: calls(shared, conn) - calls_before,
    };
    shared
        .store
        .inventory_sync_done(conn, &done)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(
        connection = conn,
        devices,
        removed = gone.len(),
        kandji_calls = done.kandji_calls,
        ms = (done.finished_at - done.started_at).num_milliseconds(),
        "inventory synced"
    );
    inv.store_behind.store(false, Ordering::Relaxed);
    inv.completed(done);
    if let Err(e) =
        crate::events::inventory::overdue(shared.store.as_ref(), &shared.catalog, conn, || {
            inv.index().devices().collect()
        })
        .await
    {
        tracing::warn!(connection = conn, error = %e, "check-in overdue events could not be recorded");
    }
    inv.end_pass(Phase::Idle, None);
    Ok(())
}

async fn write(
    inv: &Inventory,
    shared: &Shared,
    devices: &[InventoryDevice],
) -> Result<(), String> {
    shared
        .store
        .inventory_apply(&inv.connection_id, devices, &[])
        .await
        .map_err(|e| {
            inv.store_behind.store(true, Ordering::Relaxed);
            format!("the store could not be written: {e}")
        })
}

/// Requests this sync's connection has sent under the sync's label (retries included).
fn calls(shared: &Shared, connection: &str) -> u64 {
    shared
        .kandji
        .stats()
        .snapshot()
        .iter()
        .filter(|(c, l, _)| c == connection && l == SYNC_LABEL)
        .map(|(_, _, n)| n.requests)
        .sum()
}

/// Waits until the sync may send its next request: at most `budget_share` of the connection's
/// rate, and never into the reserve left for cards and streams.
async fn pace(shared: &Shared, inv: &Inventory, tenant: &Tenant, last: &mut Option<Instant>) {
    let cfg = &shared.config;
    let per_hour = tenant.requests_per_hour.max(1);
    if let Some(prev) = *last {
        let period = Duration::from_secs_f64(3600.0 / f64::from(per_hour));
        let gap = period.div_f64(cfg.budget_share.clamp(0.01, 1.0));
        tokio::time::sleep_until((prev + gap).into()).await;
    }
    loop {
        let report = shared
            .kandji
            .budget_report(&tenant.connection_id, Some(per_hour));
        if f64::from(report.remaining_this_hour) > f64::from(per_hour) * cfg.budget_reserve {
            break;
        }
        inv.state().phase = Phase::WaitingForBudget;
        let wait = report
            .next_refill_in_seconds
            .map_or(Duration::from_secs(30), Duration::from_secs)
            .clamp(Duration::from_secs(1), Duration::from_secs(30));
        tokio::time::sleep(wait).await;
    }
    inv.state().phase = Phase::Syncing;
    *last = Some(Instant::now());
}

/// The records of a `/devices` page: a bare array, or `results` of an envelope.
pub(super) fn records(body: &Value) -> &[Value] {
    match body {
        Value::Array(a) => a,
        Value::Object(m) => m
            .get("results")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice),
        _ => &[],
    }
}

/// A device of Kandji's list as the inventory keeps it; `None` without a serial number or id.
pub(super) fn parse_device(r: &Value, seen_at: DateTime<Utc>) -> Option<InventoryDevice> {
    let text = |k: &str| {
        r.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    // Kandji sends booleans in lists but "True"/"False" in details: take both.
    let flag = |k: &str| match r.get(k) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    };
    let serial = text("serial_number")?;
    // ISO in lists, but Kandji spells some dates "2024-01-26 16:15:36.087016+00:00".
    let last_check_in = text("last_check_in").and_then(|s| {
        DateTime::parse_from_rfc3339(&s)
            .or_else(|_| DateTime::parse_from_rfc3339(&s.replacen(' ', "T", 1)))
            .ok()
            .map(|t| t.with_timezone(&Utc))
    });
    Some(InventoryDevice {
        serial_key: serial.to_ascii_uppercase(),
        device_id: text("device_id")?,
        platform: text("platform"),
        os_version: text("os_version"),
        blueprint_name: text("blueprint_name"),
        // An object, or "" when no user is assigned.
        user_email: Some(
            r.pointer("/user/email")
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim()
                .to_string(),
        ),
        last_check_in,
        mdm_enabled: flag("mdm_enabled"),
        agent_installed: flag("agent_installed"),
        is_missing: flag("is_missing"),
        is_removed: flag("is_removed"),
        last_seen: seen_at,
    })
}
