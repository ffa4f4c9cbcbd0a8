//! Kandji events: event cards (`cards/events/`) detected once per connection and delivered to
//! subscriptions as signed webhooks, although Kandji sends none.
//!
//! * [`poller`]: every `KANDJI_CONNECTOR_EVENTS_INTERVAL_MS`, for each connection with at least
//!   one subscription, the replica holding the connection's events lease reads Kandji's audit log
//!   from the stored position (`start_date`, then Kandji's `next` cursor), through the one Kandji
//!   client and its budget. One request per interval (more only past 500 new entries), however
//!   many subscriptions there are. Each page is stored in one transaction: its new events, a
//!   pending delivery per matching subscription, and the new position; a restart resumes there,
//!   re-reading the boundary entries, which are recognised by id and not emitted again.
//! * [`deliver`]: every replica claims due deliveries (a short lease on each row, so one replica
//!   posts it) and posts them with the streams' callback client (the same URL rules, Standard
//!   Webhooks signature and retry schedule). A delivery's id is its `webhook-id`, stable across
//!   retries, restarts, replicas and replays.

mod deliver;
pub mod inventory;
mod poller;

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::catalog::Catalog;
use crate::kandji::{KandjiClient, TenantCache};
use crate::store::Store;
use crate::streams::{CallbackClient, CallbackPolicy, CallbackUrl, RetryPolicy, WebhookSecret};

/// The client's counts label of audit-log polls.
pub const POLL_LABEL: &str = "events";

/// How events are detected and delivered; from `KANDJI_CONNECTOR_EVENTS_*`.
#[derive(Clone, Debug)]
pub struct EventsConfig {
    /// Time between two polls of a connection's audit log (start to start).
    pub interval: Duration,
    /// How often each replica looks for due deliveries (new events of its own poll wake it at
    /// once).
    pub delivery_tick: Duration,
    /// Deliveries in flight at once, per replica.
    pub concurrency: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            delivery_tick: Duration::from_millis(500),
            concurrency: 16,
        }
    }
}

/// A subscription's callback as stored (encrypted): the URL may carry a token.
#[derive(Serialize, Deserialize)]
pub struct StoredCallback {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl StoredCallback {
    pub fn seal(&self) -> SecretString {
        SecretString::from(serde_json::to_string(self).expect("a callback serialises"))
    }

    /// Reads a stored callback, checking its URL again against the current allow-list.
    fn open(
        sealed: &SecretString,
        allow: &CallbackPolicy,
    ) -> Result<(CallbackUrl, Option<WebhookSecret>), String> {
        let stored: StoredCallback = serde_json::from_str(sealed.expose_secret())
            .map_err(|_| "the stored callback is unreadable".to_string())?;
        crate::streams::open_callback(&stored.url, stored.secret.as_deref(), allow)
    }
}

/// The stable id of an event: the same for the same change, whichever replica sees it.
pub fn event_id(connection: &str, event: &str, source_id: &str) -> String {
    let digest = Sha256::digest(format!("{connection}\n{event}\n{source_id}").as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("evt_{hex}")
}

/// What the poller and the deliverers share.
pub(crate) struct Shared {
    pub config: EventsConfig,
    pub store: Arc<dyn Store>,
    pub kandji: KandjiClient,
    pub tenants: TenantCache,
    pub catalog: Arc<Catalog>,
    pub client: CallbackClient,
    pub allow: CallbackPolicy,
    pub retry: RetryPolicy,
    pub callback_timeout: Duration,
    /// This process's name on the deliveries it claims.
    pub owner: String,
    /// Wakes the deliverer when this process stored new deliveries.
    pub wake: Notify,
    /// One permit per delivery in flight (`concurrency` of them).
    pub permits: Arc<tokio::sync::Semaphore>,
}

/// The events machinery of this process; its tasks stop when it is dropped or shut down.
pub struct Events {
    shared: Arc<Shared>,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Events {
    /// Starts the poller and the deliverer.
    pub fn start(
        config: EventsConfig,
        streams: &crate::streams::StreamConfig,
        store: Arc<dyn Store>,
        kandji: KandjiClient,
        tenants: TenantCache,
        catalog: Arc<Catalog>,
    ) -> anyhow::Result<Arc<Self>> {
        let client = CallbackClient::new(
            Arc::new(streams.allow.clone()),
            streams.callback_timeout,
            config.concurrency.max(1),
        )?;
        let config_concurrency = config.concurrency.max(1);
        let shared = Arc::new(Shared {
            config,
            store,
            kandji,
            tenants,
            catalog,
            client,
            allow: streams.allow.clone(),
            retry: streams.retry.clone(),
            callback_timeout: streams.callback_timeout,
            owner: format!("rep_{}", uuid::Uuid::new_v4().simple()),
            wake: Notify::new(),
            permits: Arc::new(tokio::sync::Semaphore::new(config_concurrency)),
        });
        let tasks = vec![
            tokio::spawn(poller::run(shared.clone())),
            tokio::spawn(deliver::run(shared.clone())),
        ];
        Ok(Arc::new(Events {
            shared,
            tasks: std::sync::Mutex::new(tasks),
        }))
    }

    pub fn config(&self) -> &EventsConfig {
        &self.shared.config
    }

    /// Wakes the deliverer (after a replay).
    pub fn wake(&self) {
        self.shared.wake.notify_one();
    }

    /// Stops polling and claiming deliveries, and lets the deliveries in flight finish (for at
    /// most one callback timeout); one cut short is posted again after its lease, with the same
    /// `webhook-id`.
    pub async fn shutdown(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().expect("events lock"));
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        let all = u32::try_from(self.shared.config.concurrency.max(1)).unwrap_or(u32::MAX);
        let wait = self.shared.callback_timeout + Duration::from_secs(1);
        let _ = tokio::time::timeout(wait, self.shared.permits.acquire_many(all)).await;
        if let Ok(conns) = self.shared.store.event_connections().await {
            for c in conns {
                let _ = self.shared.store.events_lease_release(&c).await;
            }
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        if let Ok(tasks) = self.tasks.lock() {
            for t in tasks.iter() {
                t.abort();
            }
        }
    }
}
