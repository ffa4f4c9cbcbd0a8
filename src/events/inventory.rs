//! Events from the device inventory that device trust syncs (one sync serves both): what the
//! audit log does not say. Between two syncs a device became missing or was found again, its OS
//! version or its user (by email) changed; and, after every sync, devices that have not checked in for a
//! subscription's `days`.
//!
//! The sync holding the connection's inventory lease calls [`changes`] with each page's changed
//! devices before it writes them to the store: a crash in between detects the same change again
//! at the next sync, with the same event id (derived from the stored row it changes), so it is
//! not emitted twice.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::event_id;
use crate::catalog::Catalog;
use crate::catalog::events::{EventCard, EventSource, InventoryChange};
use crate::store::{InventoryDevice, NewEvent, Store, StoreError, Subscription};

/// Days a device may go without checking in before Check-in Overdue fires, when the
/// subscription does not say.
pub const DEFAULT_OVERDUE_DAYS: i64 = 7;

fn kind(card: &EventCard) -> Option<InventoryChange> {
    match card.def.source {
        EventSource::Inventory(k) => Some(k),
        EventSource::Audit(_) => None,
    }
}

/// The inventory change as event cards read it (their `x-source` pointers).
fn entry(d: &InventoryDevice, prev: Option<&InventoryDevice>, now: DateTime<Utc>) -> Value {
    let days = d
        .last_check_in
        .map(|t| (now - t).num_days())
        .map_or(Value::Null, Value::from);
    json!({
        "device_id": d.device_id,
        "serial_number": d.serial_key,
        "platform": d.platform,
        "os_version": d.os_version,
        "blueprint_name": d.blueprint_name,
        "user_email": d.user_email.as_deref().filter(|e| !e.is_empty()),
        "last_check_in": d.last_check_in.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        "is_missing": d.is_missing,
        "days_since_check_in": days,
        "previous": prev.map(|p| json!({
            "os_version": p.os_version,
            "is_missing": p.is_missing,
            "blueprint_name": p.blueprint_name,
            "user_email": p.user_email.as_deref().filter(|e| !e.is_empty()),
        })),
    })
}

/// Which changes a device's new state is, against what the inventory held.
fn what_changed(prev: &InventoryDevice, d: &InventoryDevice) -> Vec<InventoryChange> {
    let mut out = Vec::new();
    if !prev.is_missing && d.is_missing {
        out.push(InventoryChange::Missing);
    }
    if prev.is_missing && !d.is_missing {
        out.push(InventoryChange::FoundAgain);
    }
    if prev.os_version.is_some() && d.os_version.is_some() && prev.os_version != d.os_version {
        out.push(InventoryChange::OsUpdated);
    }
    // `None`: a row synced before users were kept; not a change.
    if prev.user_email.is_some() && d.user_email.is_some() && prev.user_email != d.user_email {
        out.push(InventoryChange::UserChanged);
    }
    out
}

fn new_event(
    card: &EventCard,
    subs: &[&Subscription],
    conn: &str,
    source_id: String,
    at: DateTime<Utc>,
    entry: &Value,
) -> NewEvent {
    let id = event_id(conn, card.id(), &source_id);
    let payload = card.payload(&id, conn, at, entry);
    NewEvent {
        subscriptions: subs
            .iter()
            .filter(|s| card.passes(&s.filters, &payload))
            .map(|s| s.id.clone())
            .collect(),
        id,
        event: card.id().to_string(),
        source_id,
        occurred_at: at,
        payload,
    }
}

/// Records the events of a sync page's changed devices (`(what the inventory held, what Kandji
/// says now)`; new devices have no previous state and are not events). Returns how many were
/// new.
pub async fn changes(
    store: &dyn Store,
    catalog: &Catalog,
    conn: &str,
    changed: &[(InventoryDevice, InventoryDevice)],
) -> Result<u64, StoreError> {
    if changed.is_empty() {
        return Ok(0);
    }
    let subscriptions = store.connection_subscriptions(conn).await?;
    let cards: Vec<_> = catalog
        .events()
        .filter(|c| kind(c).is_some() && subscriptions.iter().any(|s| s.event == c.id()))
        .collect();
    if cards.is_empty() {
        return Ok(0);
    }
    let now = Utc::now();
    let mut events = Vec::new();
    for (prev, d) in changed {
        let kinds = what_changed(prev, d);
        if kinds.is_empty() {
            continue;
        }
        let e = entry(d, Some(prev), now);
        for card in &cards {
            let k = kind(card).expect("inventory cards");
            if !kinds.contains(&k) {
                continue;
            }
            let subs: Vec<&Subscription> = subscriptions
                .iter()
                .filter(|s| s.event == card.id())
                .collect();
            // The stored row this change replaces: the same if the change is seen again
            // after a crash, another once it is recorded.
            let source = format!(
                "{}|{:?}|{}",
                d.device_id,
                k,
                prev.last_seen.timestamp_micros()
            );
            events.push(new_event(card, &subs, conn, source, d.last_seen, &e));
        }
    }
    if events.is_empty() {
        return Ok(0);
    }
    store.ingest_events(conn, None, &events).await
}

/// After a sync: Check-in Overdue for every device whose last check-in is older than each
/// subscription's `days`, once per device, check-in and subscription.
pub async fn overdue(
    store: &dyn Store,
    catalog: &Catalog,
    conn: &str,
    devices: impl FnOnce() -> Vec<InventoryDevice>,
) -> Result<u64, StoreError> {
    let subscriptions = store.connection_subscriptions(conn).await?;
    let wanted = catalog.events().any(|c| {
        kind(c) == Some(InventoryChange::CheckInOverdue)
            && subscriptions.iter().any(|s| s.event == c.id())
    });
    if !wanted {
        return Ok(0);
    }
    let devices = devices();
    let now = Utc::now();
    let mut events = Vec::new();
    for card in catalog
        .events()
        .filter(|c| kind(c) == Some(InventoryChange::CheckInOverdue))
    {
        for sub in subscriptions.iter().filter(|s| s.event == card.id()) {
            let days = sub
                .filters
                .get("days")
                .and_then(Value::as_i64)
                .unwrap_or(DEFAULT_OVERDUE_DAYS);
            for d in &devices {
                let Some(last) = d.last_check_in else {
                    continue;
                };
                let due = last + chrono::Duration::days(days);
                if due > now {
                    continue;
                }
                let source = format!("{}|{}|{}", d.device_id, last.timestamp_micros(), sub.id);
                let e = entry(d, None, now);
                events.push(new_event(card, &[sub], conn, source, due, &e));
            }
        }
    }
    if events.is_empty() {
        return Ok(0);
    }
    store.ingest_events(conn, None, &events).await
}
