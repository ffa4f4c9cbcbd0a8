//! Retention: a long-running deployment keeps a bounded history. Finished streams (with their
//! delivery failures) older than `KANDJI_CONNECTOR_RETENTION_DAYS`, and idempotency keys past
//! their replay window, and detected events past `KANDJI_CONNECTOR_EVENTS_RETENTION_DAYS`, are deleted by a background task in small batches, each one short
//! statement with a pause after it, so serving never waits behind a large delete.
//!
//! Every replica may sweep: deletes of rows already gone delete nothing, so several replicas on
//! one PostgreSQL database need no coordination for this.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::store::{Store, StoreError};

/// How long an idempotency key is replayed (and kept).
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Debug)]
pub struct RetentionConfig {
    /// Finished records older than this are deleted; `None` keeps them for ever.
    pub max_age: Option<Duration>,
    /// Time between sweeps (the first runs one interval after start).
    pub interval: Duration,
    /// Rows one statement deletes at the most.
    pub batch: u32,
    /// Pause between two batches of one sweep.
    pub pause: Duration,
    /// Detected events (with their deliveries) older than this are deleted.
    pub events_max_age: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            max_age: Some(Duration::from_secs(30 * 24 * 3600)),
            interval: Duration::from_secs(3600),
            batch: 500,
            pause: Duration::from_millis(50),
            events_max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// What one sweep deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub streams: u64,
    pub idempotency_keys: u64,
    pub events: u64,
}

/// Deletes, in batches, everything past its retention; returns what was deleted.
pub async fn sweep(store: &dyn Store, config: &RetentionConfig) -> Result<Swept, StoreError> {
    let mut swept = Swept::default();
    let now = Utc::now();
    if let Some(age) = config.max_age {
        let before = now - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
        swept.streams = in_batches(config, || {
            store.delete_finished_streams(before, config.batch)
        })
        .await?;
    }
    let before = now - chrono::Duration::from_std(IDEMPOTENCY_WINDOW).expect("24 hours");
    swept.idempotency_keys =
        in_batches(config, || store.idempotency_purge(before, config.batch)).await?;
    let before =
        now - chrono::Duration::from_std(config.events_max_age).unwrap_or(chrono::Duration::MAX);
    swept.events = in_batches(config, || store.delete_old_events(before, config.batch)).await?;
    Ok(swept)
}

async fn in_batches<F, Fut>(config: &RetentionConfig, mut batch: F) -> Result<u64, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, StoreError>>,
{
    let mut total = 0;
    loop {
        let n = batch().await?;
        total += n;
        if n < u64::from(config.batch) {
            return Ok(total);
        }
        tokio::time::sleep(config.pause).await;
    }
}

/// The background sweeper; stops when dropped.
pub struct Sweeper(tokio::task::JoinHandle<()>);

impl Sweeper {
    pub fn start(store: Arc<dyn Store>, config: RetentionConfig) -> Self {
        Self(tokio::spawn(async move {
            loop {
                tokio::time::sleep(config.interval).await;
                match sweep(store.as_ref(), &config).await {
                    Ok(s) if s == Swept::default() => {}
                    Ok(s) => tracing::info!(
                        streams = s.streams,
                        idempotency_keys = s.idempotency_keys,
                        events = s.events,
                        "retention: deleted finished records"
                    ),
                    // Tried again at the next interval; nothing is half-deleted (one statement a batch).
                    Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
                }
            }
        }))
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}
