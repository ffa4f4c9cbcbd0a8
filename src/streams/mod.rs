//! Streaming result sets: durable jobs that deliver every record of a list card to a
//! helper-flow callback, one signed POST per record, at least once.
//!
//! [`Streams`] owns the runners of this process: it starts them (`POST …/invoke` with a
//! stream result set), resumes the store's running streams at start-up, cancels them
//! (`DELETE /v1/streams/{id}`) and stops them on shutdown with a final checkpoint.

pub mod callback;
pub mod delivery;
mod runner;
pub mod signing;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::catalog::Catalog;
use crate::error::FieldError;
use crate::kandji::{KandjiClient, TenantCache};
use crate::store::{
    DeliveryFailure, NewStream, Store, StoreError, Stream, StreamCheckpoint, StreamState,
};
pub use callback::{CallbackPolicy, CallbackUrl};
pub use delivery::{CallbackClient, RetryPolicy};
use runner::{Control, Progress, Stop};
pub use signing::WebhookSecret;

/// How streams deliver; from `KANDJI_CONNECTOR_STREAM_*` / `KANDJI_CONNECTOR_CALLBACK_*`.
#[derive(Clone, Debug)]
pub struct StreamConfig {
    /// Callbacks in flight at once, per stream.
    pub concurrency: usize,
    /// Time limit of one callback attempt (connect, send, answer).
    pub callback_timeout: Duration,
    pub retry: RetryPolicy,
    /// How often a running stream's progress is saved (at the latest).
    pub checkpoint_interval: Duration,
    /// The most finished deliveries of a stream that may be unsaved at once: progress is saved
    /// as soon as half of them are, and no delivery starts while all of them are. A stream
    /// killed with SIGKILL re-sends at most `concurrency + checkpoint_records` records.
    pub checkpoint_records: usize,
    /// Non-public hosts and networks callbacks may target (and use plain http for).
    pub allow: CallbackPolicy,
    /// A stream fails once this many records in a row were refused (0 = never).
    pub max_consecutive_failures: u64,
    /// Streams this process runs at once; more are refused with 429 (resumed ones always run).
    pub max_running: usize,
    /// With a shared store (PostgreSQL): how long this replica's hold on a stream lasts
    /// without a checkpoint renewing it. Replicas sweep for expired leases every third of it.
    pub lease: Duration,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            concurrency: 16,
            callback_timeout: Duration::from_secs(10),
            retry: RetryPolicy {
                schedule: [500, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000]
                    .into_iter()
                    .map(Duration::from_millis)
                    .collect(),
                max_retry_after: Duration::from_secs(60),
            },
            checkpoint_interval: Duration::from_millis(250),
            checkpoint_records: 64,
            allow: CallbackPolicy::default(),
            max_consecutive_failures: 100,
            max_running: 64,
            lease: Duration::from_secs(15),
        }
    }
}

/// The `webhook-id` of a record: the same for every attempt, before and after a restart.
pub fn webhook_id(stream_id: &str, index: u64) -> String {
    format!("msg_{}_{index}", stream_id.trim_start_matches("str_"))
}

/// A helper flow as stored (encrypted): the URL may carry a token, so none of it is in the clear.
#[derive(Serialize, Deserialize)]
struct StoredHelper {
    url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    #[serde(default)]
    state: Value,
}

/// A checked helper flow.
pub struct HelperFlow {
    pub url: CallbackUrl,
    pub secret: Option<WebhookSecret>,
    pub state: Value,
}

/// A stored callback's URL and signing secret, checked again: the URL against the current
/// allow-list (it may have changed since the callback was stored), the secret's format.
pub(crate) fn open_callback(
    url: &str,
    secret: Option<&str>,
    allow: &CallbackPolicy,
) -> Result<(CallbackUrl, Option<WebhookSecret>), String> {
    let url = CallbackUrl::check_static(url, allow)
        .map_err(|e| format!("the callback URL is no longer allowed: it {e}"))?;
    let secret = secret
        .map(WebhookSecret::parse)
        .transpose()
        .map_err(|e| format!("the stored secret is not valid: {e}"))?;
    Ok((url, secret))
}

impl HelperFlow {
    /// Reads a stored helper flow, checking its URL again against the current allow-list.
    fn open(sealed: &SecretString, allow: &CallbackPolicy) -> Result<Self, String> {
        let stored: StoredHelper = serde_json::from_str(sealed.expose_secret())
            .map_err(|_| "the stored helper flow is unreadable".to_string())?;
        let (url, secret) = open_callback(&stored.url, stored.secret.as_deref(), allow)?;
        Ok(HelperFlow {
            url,
            secret,
            state: stored.state,
        })
    }
}

/// The stream part of an invocation's options, checked.
pub struct StreamRequest {
    helper: StoredHelper,
    origin: String,
    pub record_limit: Option<u64>,
}

impl std::fmt::Debug for StreamRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamRequest")
            .field("origin", &self.origin)
            .field("record_limit", &self.record_limit)
            .finish_non_exhaustive()
    }
}

/// Largest `helper_flow.state` accepted (it is sent with every record).
const MAX_STATE_BYTES: usize = 16 * 1024;

impl StreamRequest {
    /// The callback's origin (scheme://host[:port]), the only part of it ever shown.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Takes `helper_flow` and `record_limit` out of `options` (they are the connector's, not
    /// the card's) and checks them, the callback URL against `allow` (resolving its host).
    /// With `is_stream` false their presence is an error.
    pub async fn take(
        options: &mut Value,
        is_stream: bool,
        allow: &CallbackPolicy,
    ) -> Result<Option<Self>, Vec<FieldError>> {
        let (helper, limit) = match options.as_object_mut() {
            Some(m) => (m.remove("helper_flow"), m.remove("record_limit")),
            None => (None, None),
        };
        let mut errors = Vec::new();
        if !is_stream {
            for (name, v) in [("helper_flow", &helper), ("record_limit", &limit)] {
                if v.is_some() {
                    errors.push(FieldError::new(
                        &["options", name],
                        "applies only to a stream result set",
                        "stream_only",
                    ));
                }
            }
            return if errors.is_empty() {
                Ok(None)
            } else {
                Err(errors)
            };
        }
        let record_limit = match limit {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
            Some(Value::Number(n))
                if n.as_i64().is_some_and(|i| i < 0) || n.as_f64().is_some_and(|f| f < 0.0) =>
            {
                errors.push(FieldError::new(
                    &["options", "record_limit"],
                    "must not be negative (absent streams every record, 0 streams none)",
                    "minimum",
                ));
                None
            }
            Some(_) => {
                errors.push(FieldError::new(
                    &["options", "record_limit"],
                    "must be a whole number",
                    "type",
                ));
                None
            }
        };
        let helper = match helper {
            None | Some(Value::Null) => {
                errors.push(FieldError::new(&["options", "helper_flow"], "is required for a stream result set: {\"url\": …, \"secret\": \"whsec_…\", \"state\": {…}}", "required"));
                return Err(errors);
            }
            Some(Value::Object(m)) => m,
            Some(_) => {
                errors.push(FieldError::new(
                    &["options", "helper_flow"],
                    "must be an object with url, secret and state",
                    "type",
                ));
                return Err(errors);
            }
        };
        match check_helper(helper, allow).await {
            Ok((helper, origin)) if errors.is_empty() => Ok(Some(StreamRequest {
                helper,
                origin,
                record_limit,
            })),
            Ok(_) => Err(errors),
            Err(mut e) => {
                errors.append(&mut e);
                Err(errors)
            }
        }
    }
}

async fn check_helper(
    mut m: Map<String, Value>,
    allow: &CallbackPolicy,
) -> Result<(StoredHelper, String), Vec<FieldError>> {
    let mut errors = Vec::new();
    let at = |f: &str| ["options", "helper_flow", f].map(str::to_string).to_vec();
    let url = m.remove("url");
    let secret = m.remove("secret");
    let state = m.remove("state").unwrap_or(Value::Null);
    for k in m.keys() {
        errors.push(FieldError {
            loc: at(k),
            msg: "is not a field of helper_flow (url, secret, state)".into(),
            kind: "unknown_field".into(),
        });
    }
    let checked = match url {
        Some(Value::String(u)) => match CallbackUrl::check(&u, allow).await {
            Ok(c) => Some((u, c)),
            Err(e) => {
                errors.push(FieldError {
                    loc: at("url"),
                    msg: format!("the callback URL {e}"),
                    kind: "callback_url".into(),
                });
                None
            }
        },
        Some(_) => {
            errors.push(FieldError {
                loc: at("url"),
                msg: "must be a string".into(),
                kind: "type".into(),
            });
            None
        }
        None => {
            errors.push(FieldError {
                loc: at("url"),
                msg: "is required".into(),
                kind: "required".into(),
            });
            None
        }
    };
    let secret = match secret {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match WebhookSecret::parse(&s) {
            Ok(_) => Some(s),
            Err(e) => {
                errors.push(FieldError {
                    loc: at("secret"),
                    msg: e,
                    kind: "secret".into(),
                });
                None
            }
        },
        Some(_) => {
            errors.push(FieldError {
                loc: at("secret"),
                msg: "must be a string \"whsec_…\"".into(),
                kind: "type".into(),
            });
            None
        }
    };
    if serde_json::to_vec(&state).map_or(0, |v| v.len()) > MAX_STATE_BYTES {
        errors.push(FieldError {
            loc: at("state"),
            msg: format!(
                "must be at most {MAX_STATE_BYTES} bytes of JSON (it is sent with every record)"
            ),
            kind: "too_large".into(),
        });
    }
    match checked {
        Some((url, c)) if errors.is_empty() => {
            Ok((StoredHelper { url, secret, state }, c.origin()))
        }
        _ => Err(errors),
    }
}

/// What the runners share.
pub(crate) struct Shared {
    pub config: StreamConfig,
    pub store: Arc<dyn Store>,
    pub kandji: KandjiClient,
    pub tenants: TenantCache,
    pub catalog: Arc<Catalog>,
    pub client: CallbackClient,
}

struct Running {
    control: Arc<Control>,
    progress: Arc<Mutex<Progress>>,
    finished: watch::Receiver<bool>,
}

/// Why a stream could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the connector is shutting down")]
    ShuttingDown,
    #[error("{0} streams are already running")]
    TooMany(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The streams of this process.
pub struct Streams {
    shared: Arc<Shared>,
    running: Mutex<HashMap<String, Running>>,
    shutting_down: AtomicBool,
}

impl Streams {
    pub fn new(
        config: StreamConfig,
        store: Arc<dyn Store>,
        kandji: KandjiClient,
        tenants: TenantCache,
        catalog: Arc<Catalog>,
    ) -> anyhow::Result<Arc<Self>> {
        store.set_stream_lease(config.lease);
        let client = CallbackClient::new(
            Arc::new(config.allow.clone()),
            config.callback_timeout,
            config.concurrency.max(1),
        )?;
        Ok(Arc::new(Streams {
            shared: Arc::new(Shared {
                config,
                store,
                kandji,
                tenants,
                catalog,
                client,
            }),
            running: Mutex::new(HashMap::new()),
            shutting_down: AtomicBool::new(false),
        }))
    }

    pub fn config(&self) -> &StreamConfig {
        &self.shared.config
    }

    /// Records a new stream and starts its runner.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        self: &Arc<Self>,
        owner: &str,
        connection_id: &str,
        card_id: &str,
        result_set: &str,
        inputs: Value,
        options: Value,
        request: StreamRequest,
    ) -> Result<Stream, StartError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(StartError::ShuttingDown);
        }
        let running = self.running.lock().expect("streams lock").len();
        if running >= self.shared.config.max_running {
            return Err(StartError::TooMany(running));
        }
        let helper = serde_json::to_string(&request.helper).expect("a helper flow serialises");
        let stream = self
            .shared
            .store
            .create_stream(NewStream {
                owner: owner.to_string(),
                connection_id: connection_id.to_string(),
                card_id: card_id.to_string(),
                result_set: result_set.to_string(),
                inputs,
                options,
                helper_flow: SecretString::from(helper),
                callback_origin: request.origin,
                record_limit: request.record_limit,
            })
            .await?;
        tracing::info!(stream = %stream.id, card = card_id, callback = %stream.callback_origin, "stream started");
        self.spawn(&stream.id).await?;
        Ok(stream)
    }

    /// Resumes every running stream no other replica holds (at start-up, and on every sweep
    /// with a shared store). Returns how many.
    pub async fn resume_all(self: &Arc<Self>) -> Result<usize, StoreError> {
        let ids = self.shared.store.claim_streams(10_000).await?;
        let mut n = 0;
        for id in ids {
            if self.spawn(&id).await? {
                tracing::info!(stream = %id, "stream resumed");
                n += 1;
            }
        }
        Ok(n)
    }

    /// With a shared store: every third of the lease, takes over the streams whose replica
    /// stopped renewing its lease (died), and resumes them from their checkpoints.
    pub fn start_sweeper(self: &Arc<Self>) {
        if !self.shared.store.is_shared() {
            return;
        }
        let every = (self.shared.config.lease / 3).max(Duration::from_millis(50));
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(this) = weak.upgrade() else { return };
                if this.shutting_down.load(Ordering::SeqCst) {
                    return;
                }
                match this.resume_all().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(streams = n, "took over streams whose lease expired"),
                    Err(e) => tracing::warn!(error = %e, "sweeping for orphaned streams failed"),
                }
            }
        });
    }

    /// Starts the runner of a running stream unless this process already runs it.
    async fn spawn(self: &Arc<Self>, id: &str) -> Result<bool, StoreError> {
        let job = match self.shared.store.stream_job(id).await {
            Ok(Some(job)) => job,
            Ok(None) => return Ok(false),
            Err(StoreError::Cipher(e)) => {
                // A helper flow that does not decrypt cannot be delivered to: say so on the stream.
                let msg = format!("the stored helper flow could not be decrypted: {e}");
                // Keep the counters it had; the cursor no longer matters.
                let cp = match self.shared.store.get_stream(id).await {
                    Ok(Some(s)) => StreamCheckpoint {
                        record_count: s.record_count,
                        failed_deliveries: s.failed_deliveries,
                        pages_fetched: s.pages_fetched,
                        ..Default::default()
                    },
                    _ => StreamCheckpoint::default(),
                };
                let _ = self
                    .shared
                    .store
                    .finish_stream(id, StreamState::Failed, Some(&msg), &cp, &[])
                    .await;
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let control = Arc::new(Control::default());
        let progress = Arc::new(Mutex::new(Progress::from_checkpoint(&job.checkpoint)));
        let (done_tx, done_rx) = watch::channel(false);
        {
            let mut running = self.running.lock().expect("streams lock");
            if running.contains_key(id) {
                return Ok(false);
            }
            running.insert(
                id.to_string(),
                Running {
                    control: control.clone(),
                    progress: progress.clone(),
                    finished: done_rx,
                },
            );
        }
        // A shutdown that began while this stream was being set up stops it too.
        if self.shutting_down.load(Ordering::SeqCst) {
            control.stop(Stop::Shutdown);
        }
        let this = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            let run = tokio::spawn(runner::run(this.shared.clone(), job, control, progress));
            if let Err(e) = run.await {
                tracing::error!(stream = %id, error = %e, "stream runner failed; the stream resumes at the next start");
            }
            this.running.lock().expect("streams lock").remove(&id);
            let _ = done_tx.send(true);
        });
        Ok(true)
    }

    /// Streams this process runs, and their records fetched but not finished (for the metrics).
    pub fn gauges(&self) -> (usize, u64) {
        let running = self.running.lock().expect("streams lock");
        let backlog = running
            .values()
            .map(|r| r.progress.lock().expect("progress lock").backlog())
            .sum();
        (running.len(), backlog)
    }

    /// A stream with live counters when this process runs it.
    pub async fn get(&self, id: &str) -> Result<Option<Stream>, StoreError> {
        let Some(mut s) = self.shared.store.get_stream(id).await? else {
            return Ok(None);
        };
        self.overlay(&mut s);
        Ok(Some(s))
    }

    pub async fn list(
        &self,
        owner: Option<&str>,
        state: Option<StreamState>,
        limit: u32,
    ) -> Result<Vec<Stream>, StoreError> {
        let mut list = self.shared.store.list_streams(owner, state, limit).await?;
        for s in &mut list {
            self.overlay(s);
        }
        Ok(list)
    }

    fn overlay(&self, s: &mut Stream) {
        if s.state != StreamState::Running {
            return;
        }
        let running = self.running.lock().expect("streams lock");
        if let Some(r) = running.get(&s.id) {
            let p = r.progress.lock().expect("progress lock");
            s.record_count = s.record_count.max(p.record_count);
            s.failed_deliveries = s.failed_deliveries.max(p.failed_deliveries);
            s.pages_fetched = s.pages_fetched.max(p.pages_fetched);
        }
    }

    /// Cancels a running stream: when this returns, no callback of it starts any more and
    /// those in flight have ended. Returns the stream in whatever state it has now.
    pub async fn cancel(&self, id: &str) -> Result<Option<Stream>, StoreError> {
        let local = {
            let running = self.running.lock().expect("streams lock");
            running.get(id).map(|r| {
                r.control.stop(Stop::Cancel);
                r.finished.clone()
            })
        };
        match local {
            Some(mut finished) => {
                let wait = self.shared.config.callback_timeout + Duration::from_secs(5);
                if tokio::time::timeout(wait, finished.wait_for(|f| *f))
                    .await
                    .is_err()
                {
                    tracing::warn!(stream = %id, "the stream's runner did not stop in time; marking it cancelled");
                    self.shared.store.cancel_stream(id).await?;
                }
            }
            None => {
                self.shared.store.cancel_stream(id).await?;
            }
        }
        self.shared.store.get_stream(id).await
    }

    pub async fn failures(
        &self,
        id: &str,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<DeliveryFailure>, StoreError> {
        self.shared.store.stream_failures(id, after, limit).await
    }

    /// Stops taking work: no new streams, every runner stops starting callbacks.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        for r in self.running.lock().expect("streams lock").values() {
            r.control.stop(Stop::Shutdown);
        }
    }

    /// [`Streams::begin_shutdown`], then waits until every runner has finished its in-flight
    /// callbacks and saved its checkpoint.
    pub async fn shutdown(&self) {
        self.begin_shutdown();
        let waits: Vec<watch::Receiver<bool>> = self
            .running
            .lock()
            .expect("streams lock")
            .values()
            .map(|r| r.finished.clone())
            .collect();
        let limit = self.shared.config.callback_timeout + Duration::from_secs(5);
        let all = futures::future::join_all(waits.into_iter().map(|mut w| async move {
            let _ = w.wait_for(|f| *f).await;
        }));
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!(
                "some streams did not stop in time; they resume from their last checkpoint"
            );
        }
    }
}
