//! The audit-log poll: one replica per connection (the events lease), on an interval, from the
//! stored position.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{POLL_LABEL, Shared, event_id};
use crate::catalog::{ListPlan, Paging};
use crate::engine::{Pager, error_message};
use crate::kandji::{ApiPath, KandjiRequest, Wait};
use crate::store::{NewEvent, Subscription};

/// Kandji's largest audit-log page.
pub const PAGE_SIZE: usize = 500;

/// How long a replica's hold on a connection's poll lasts without renewal: it renews it every
/// interval, so it lapses only when the replica stopped.
fn lease_ttl(interval: Duration) -> Duration {
    interval * 3 + Duration::from_secs(5)
}

pub(super) async fn run(shared: Arc<Shared>) {
    let interval = shared.config.interval;
    loop {
        let started = Instant::now();
        match shared.store.event_connections().await {
            Ok(conns) => {
                for conn in conns {
                    match shared.store.events_lease(&conn, lease_ttl(interval)).await {
                        Ok(true) => {
                            if let Err(e) = poll(&shared, &conn).await {
                                tracing::warn!(connection = %conn, error = %e, "events: audit-log poll failed");
                            }
                        }
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(connection = %conn, error = %e, "events: the poll lease could not be read")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "events: the subscriptions could not be read"),
        }
        tokio::time::sleep(interval.saturating_sub(started.elapsed())).await;
    }
}

/// Reads the audit log from the connection's position to its end and stores what is new.
pub(super) async fn poll(shared: &Shared, conn: &str) -> Result<u64, String> {
    let store = shared.store.as_ref();
    let subscriptions = store
        .connection_subscriptions(conn)
        .await
        .map_err(|e| format!("the store could not be read: {e}"))?;
    if subscriptions.is_empty() {
        return Ok(0);
    }
    let Some(mut position) = store
        .event_position(conn)
        .await
        .map_err(|e| format!("the store could not be read: {e}"))?
    else {
        return Ok(0);
    };
    let tenant = shared.tenants.get(conn).await.map_err(|e| e.to_string())?;
    let mut request =
        KandjiRequest::get(ApiPath::from_template("/audit/events", |_| None).expect("static path"));
    request.query = vec![
        ("limit".into(), PAGE_SIZE.to_string()),
        ("sort_by".into(), "occurred_at".into()),
        (
            "start_date".into(),
            position.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        ),
    ];
    let list = Arc::new(ListPlan::new(Paging::Cursor, &["/results"], PAGE_SIZE));
    let mut pager = Pager::new(request, list);
    pager.wait = Wait::Forever;
    pager.label = POLL_LABEL.to_string();
    let mut new = 0;
    while !pager.is_done() {
        let page = pager
            .next(&shared.kandji, &tenant, PAGE_SIZE)
            .await
            .map_err(|e| e.to_string())?;
        let Some(page) = page else { break };
        if let Some(body) = &page.error_body {
            return Err(format!(
                "Kandji answered {}: {}",
                page.status,
                error_message(page.status, body)
            ));
        }
        let mut events = Vec::new();
        for entry in &page.records {
            let Some(at) = occurred_at(entry) else {
                continue;
            };
            // Sorted by occurred_at: the last entry read is where the next poll starts (it is
            // read again then, and recognised by id).
            position = position.max(at);
            events.extend(detect(shared, conn, &subscriptions, entry, at));
        }
        new += store
            .ingest_events(conn, Some(position), &events)
            .await
            .map_err(|e| format!("the store could not be written: {e}"))?;
    }
    if new > 0 {
        tracing::info!(
            connection = conn,
            events = new,
            "events: new audit-log events"
        );
        shared.wake.notify_one();
    }
    Ok(new)
}

fn occurred_at(entry: &Value) -> Option<DateTime<Utc>> {
    let at = entry.get("occurred_at")?.as_str()?;
    let at = DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc);
    use chrono::SubsecRound;
    Some(at.trunc_subsecs(6))
}

/// Every event card this audit entry is, with the subscriptions whose filters it passes.
fn detect(
    shared: &Shared,
    conn: &str,
    subscriptions: &[Subscription],
    entry: &Value,
    at: DateTime<Utc>,
) -> Vec<NewEvent> {
    let Some(source_id) = entry.get("id").and_then(Value::as_str) else {
        return Vec::new();
    };
    shared
        .catalog
        .events()
        .filter(|card| card.audit_match().is_some_and(|m| m.matches(entry)))
        .filter_map(|card| {
            let subs: Vec<&Subscription> = subscriptions
                .iter()
                .filter(|s| s.event == card.id())
                .collect();
            if subs.is_empty() {
                return None;
            }
            let id = event_id(conn, card.id(), source_id);
            let payload = card.payload(&id, conn, at, entry);
            let subscriptions = subs
                .into_iter()
                .filter(|s| card.passes(&s.filters, &payload))
                .map(|s| s.id.clone())
                .collect();
            Some(NewEvent {
                id,
                event: card.id().to_string(),
                source_id: source_id.to_string(),
                occurred_at: at,
                payload,
                subscriptions,
            })
        })
        .collect()
}
