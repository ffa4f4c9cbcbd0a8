//! One stream's run: a fetcher that pages through Kandji one page ahead, a dispatcher that
//! hands records to at most `concurrency` delivery tasks inside a bounded window, and a
//! checkpointer that saves the progress every `checkpoint_interval`, or sooner, once half of
//! `checkpoint_records` deliveries finished since it last looked.
//!
//! The crash bound: a record is re-sent after SIGKILL only if the helper flow got it and the
//! saved progress does not say it finished, that is, it was in flight (at most `concurrency`)
//! or finished after the last save. The dispatcher starts no delivery while
//! `checkpoint_records` finished ones are unsaved, so at most `concurrency + checkpoint_records`
//! records are re-sent, whatever the delivery speed and however long a save takes.
//!
//! Memory stays flat whatever the total: the dispatcher holds the current page, the channel
//! at most the one page fetched ahead, and each delivery task its own record.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use super::delivery::{Attempt, CallbackClient};
use super::signing::WebhookSecret;
use super::{HelperFlow, Shared, webhook_id};
use crate::engine::{self, Pager};
use crate::kandji::{KandjiClient, Tenant, TenantError, Wait};
use crate::store::{DeliveryFailure, StreamCheckpoint, StreamJob, StreamState};
use crate::telemetry;

/// Why a runner was asked to stop before the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The process is shutting down: keep the stream running, resume it at the next start.
    Shutdown,
    /// `DELETE /v1/streams/{id}` (or the store says it was cancelled).
    Cancel,
}

/// The stop switch of one runner. Every delivery attempt checks it just before it starts, so
/// once [`Control::stop`] has returned no new attempt begins.
pub struct Control {
    tx: watch::Sender<Option<Stop>>,
}

impl Default for Control {
    fn default() -> Self {
        Self {
            tx: watch::channel(None).0,
        }
    }
}

impl Control {
    /// A cancel outranks a shutdown.
    pub fn stop(&self, why: Stop) {
        self.tx.send_if_modified(|s| match s {
            Some(Stop::Cancel) => false,
            _ => {
                *s = Some(why);
                true
            }
        });
    }

    pub fn stopped(&self) -> Option<Stop> {
        *self.tx.borrow()
    }

    /// Resolves once the runner is asked to stop.
    pub async fn wait(&self) -> Stop {
        let mut rx = self.tx.subscribe();
        let got = rx.wait_for(Option::is_some).await.map(|s| *s);
        match got {
            Ok(Some(s)) => s,
            _ => std::future::pending().await,
        }
    }
}

/// A Kandji paging cursor, as the Pager reports it.
type Cursor = (usize, usize, Option<String>);

struct PageMark {
    start: u64,
    end: u64,
    cursor: Cursor,
}

/// What is finished, where the cursor stands, and the counters; shared by the dispatcher,
/// the deliveries, the checkpointer and `GET /v1/streams/{id}`.
pub struct Progress {
    done_below: u64,
    done_above: BTreeSet<u64>,
    /// Pages received by the dispatcher whose records are not all finished, oldest first.
    pages: VecDeque<PageMark>,
    /// Where the page after the last received one starts, and its cursor.
    next_start: u64,
    next_cursor: Cursor,
    pub record_count: u64,
    pub failed_deliveries: u64,
    pub pages_fetched: u64,
    /// Failures not yet saved.
    unsaved: Vec<DeliveryFailure>,
    consecutive_failures: u64,
    last_failure: Option<String>,
    /// Deliveries finished in this run; of them, those in the last snapshot taken and those in
    /// the last checkpoint saved.
    finished: u64,
    snapshotted: u64,
    saved: u64,
}

impl Progress {
    pub fn from_checkpoint(c: &StreamCheckpoint) -> Self {
        Progress {
            done_below: c.done_below,
            done_above: c
                .done_above
                .iter()
                .copied()
                .filter(|i| *i > c.done_below)
                .collect(),
            pages: VecDeque::new(),
            next_start: c.page_start,
            next_cursor: (
                c.cursor_offset as usize,
                c.cursor_page.max(1) as usize,
                c.cursor_next.clone(),
            ),
            record_count: c.record_count,
            failed_deliveries: c.failed_deliveries,
            pages_fetched: c.pages_fetched,
            unsaved: Vec::new(),
            consecutive_failures: 0,
            last_failure: None,
            finished: 0,
            snapshotted: 0,
            saved: 0,
        }
    }

    /// Finished deliveries the saved progress does not have yet.
    fn unsaved_count(&self) -> u64 {
        self.finished - self.saved
    }

    /// Finished deliveries no snapshot has taken yet.
    fn unsnapshotted_count(&self) -> u64 {
        self.finished - self.snapshotted
    }

    /// The checkpoint of the snapshot that took `finished` deliveries is saved.
    fn saved_up_to(&mut self, finished: u64) {
        self.saved = self.saved.max(finished);
    }

    /// Records received from Kandji and not finished yet.
    pub fn backlog(&self) -> u64 {
        self.next_start
            .saturating_sub(self.done_below)
            .saturating_sub(self.done_above.len() as u64)
    }

    fn is_done(&self, idx: u64) -> bool {
        idx < self.done_below || self.done_above.contains(&idx)
    }

    fn push_page(&mut self, start: u64, end: u64, before: Cursor, after: Cursor) {
        self.pages.push_back(PageMark {
            start,
            end,
            cursor: before,
        });
        self.next_start = end;
        self.next_cursor = after;
        self.trim_pages();
    }

    /// Marks `idx` finished; returns the new `done_below`.
    fn finish(&mut self, idx: u64, failure: Option<DeliveryFailure>) -> u64 {
        self.finished += 1;
        match failure {
            None => {
                self.record_count += 1;
                self.consecutive_failures = 0;
            }
            Some(f) => {
                self.failed_deliveries += 1;
                self.consecutive_failures += 1;
                self.last_failure = Some(f.error.clone());
                self.unsaved.push(f);
            }
        }
        if idx == self.done_below {
            self.done_below += 1;
            while self.done_above.remove(&self.done_below) {
                self.done_below += 1;
            }
            self.trim_pages();
        } else if idx > self.done_below {
            self.done_above.insert(idx);
        }
        self.done_below
    }

    fn trim_pages(&mut self) {
        while self.pages.front().is_some_and(|p| p.end <= self.done_below) {
            self.pages.pop_front();
        }
    }

    /// The checkpoint to save, and the failures it makes final (taken out of `unsaved`). Once
    /// it is saved, [`Progress::saved_up_to`] with [`Progress::finished`] as it was here.
    fn snapshot(&mut self) -> (StreamCheckpoint, Vec<DeliveryFailure>) {
        self.snapshotted = self.finished;
        let (page_start, cursor) = match self.pages.front() {
            Some(p) => (p.start, p.cursor.clone()),
            None => (self.next_start, self.next_cursor.clone()),
        };
        let cp = StreamCheckpoint {
            done_below: self.done_below,
            done_above: self.done_above.iter().copied().collect(),
            page_start,
            cursor_offset: cursor.0 as u64,
            cursor_page: cursor.1 as u64,
            cursor_next: cursor.2,
            record_count: self.record_count,
            failed_deliveries: self.failed_deliveries,
            pages_fetched: self.pages_fetched,
        };
        (cp, std::mem::take(&mut self.unsaved))
    }

    /// Puts back failures whose checkpoint could not be saved.
    fn unsave(&mut self, mut failures: Vec<DeliveryFailure>) {
        failures.append(&mut self.unsaved);
        self.unsaved = failures;
    }
}

/// What the fetcher hands the dispatcher.
enum Fetched {
    Page {
        start: u64,
        before: Cursor,
        after: Cursor,
        records: Vec<Value>,
    },
    End,
    Failed(String),
}

/// How a run ended.
enum Ending {
    Complete,
    Failed(String),
    Stopped(Stop),
}

/// How the deliveries, the dispatcher and the checkpointer of one stream tell each other about
/// saves.
struct Saves {
    /// Finished deliveries that make the checkpointer save at once (half the allowance).
    save_at: u64,
    /// Finished deliveries that may be unsaved at once; no delivery starts at this many.
    max_unsaved: u64,
    /// Wakes the checkpointer: `save_at` deliveries finished since its last snapshot.
    save_now: Notify,
    /// Wakes the dispatcher: a checkpoint was saved.
    saved: Notify,
}

impl Saves {
    fn new(checkpoint_records: usize) -> Self {
        let max_unsaved = checkpoint_records.max(1) as u64;
        Self {
            save_at: (max_unsaved / 2).max(1),
            max_unsaved,
            save_now: Notify::new(),
            saved: Notify::new(),
        }
    }
}

/// What every delivery task of one stream shares.
struct Ctx {
    stream_id: String,
    client: CallbackClient,
    url: url::Url,
    secret: Option<WebhookSecret>,
    state_json: Vec<u8>,
    shared: Arc<Shared>,
    control: Arc<Control>,
    progress: Arc<Mutex<Progress>>,
    done_below: watch::Sender<u64>,
    saves: Arc<Saves>,
}

impl Ctx {
    /// `{"stream_id","index","record","state"}`, written once per record.
    fn body(&self, idx: u64, record: &Value) -> Bytes {
        let mut b = Vec::with_capacity(96 + self.state_json.len() + 1024);
        b.extend_from_slice(b"{\"stream_id\":\"");
        b.extend_from_slice(self.stream_id.as_bytes());
        b.extend_from_slice(b"\",\"index\":");
        b.extend_from_slice(idx.to_string().as_bytes());
        b.extend_from_slice(b",\"record\":");
        serde_json::to_writer(&mut b, record).expect("a JSON value serialises");
        b.extend_from_slice(b",\"state\":");
        b.extend_from_slice(&self.state_json);
        b.push(b'}');
        Bytes::from(b)
    }
}

/// Runs (or resumes) one stream until it succeeds, fails, is cancelled or the process stops.
pub async fn run(
    shared: Arc<Shared>,
    job: StreamJob,
    control: Arc<Control>,
    progress: Arc<Mutex<Progress>>,
) {
    let id = job.stream.id.clone();
    let ending = match setup(&shared, &job).await {
        Err(e) => Ending::Failed(e),
        Ok(setup) => drive(&shared, &job, setup, control.clone(), progress.clone()).await,
    };
    let (state, error) = match ending {
        Ending::Complete => (Some(StreamState::Succeeded), None),
        Ending::Failed(e) => (Some(StreamState::Failed), Some(e)),
        Ending::Stopped(Stop::Cancel) => (Some(StreamState::Cancelled), None),
        Ending::Stopped(Stop::Shutdown) => (None, None),
    };
    if let Some(state) = state {
        telemetry::stream_finished(state.as_str());
    }
    let (cp, failures) = progress.lock().expect("progress lock").snapshot();
    let saved = match state {
        Some(state) => {
            shared
                .store
                .finish_stream(&id, state, error.as_deref(), &cp, &failures)
                .await
        }
        None => {
            let saved = shared.store.checkpoint_stream(&id, &cp, &failures).await;
            // Let another replica resume it at once rather than when the lease expires.
            if let Err(e) = shared.store.release_stream(&id).await {
                tracing::warn!(stream = %id, error = %e, "the stream's lease could not be released");
            }
            saved
        }
    };
    match saved {
        Ok(_) => tracing::info!(
            stream = %id,
            state = state.map_or("running (resumes at next start)", StreamState::as_str),
            record_count = cp.record_count,
            failed_deliveries = cp.failed_deliveries,
            pages_fetched = cp.pages_fetched,
            "stream stopped"
        ),
        Err(e) => {
            tracing::error!(stream = %id, error = %e, "the stream's last progress could not be saved")
        }
    }
}

struct Setup {
    pager: Pager,
    tenant: Tenant,
    helper: HelperFlow,
}

/// Everything that can fail before the first request: the card, the inputs, the connection,
/// the callback (checked again, in case the allow-list changed since the stream started).
async fn setup(shared: &Shared, job: &StreamJob) -> Result<Setup, String> {
    let s = &job.stream;
    let card = shared
        .catalog
        .get(&s.card_id)
        .ok_or_else(|| format!("the card {:?} no longer exists", s.card_id))?;
    let prepared = engine::prepare(card, &job.inputs, &job.options).map_err(|errors| {
        let msgs: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.loc.join("."), e.msg))
            .collect();
        format!(
            "the stream's inputs are no longer valid for the card: {}",
            msgs.join("; ")
        )
    })?;
    let list = prepared
        .variant
        .list()
        .cloned()
        .ok_or("the card's request does not list records")?;
    let tenant = shared
        .tenants
        .get(&s.connection_id)
        .await
        .map_err(|e| match e {
            TenantError::Unknown => {
                format!("the connection {:?} no longer exists", s.connection_id)
            }
            TenantError::Store(e) => format!("the connection could not be read: {e}"),
        })?;
    let helper = HelperFlow::open(&job.helper_flow, &shared.config.allow)?;
    let mut pager = Pager::new(prepared.request.clone(), list);
    // A stream waits for the connection's Kandji budget as long as it takes.
    pager.wait = Wait::Forever;
    pager.label = s.card_id.clone();
    let c = &job.checkpoint;
    pager.resume(
        c.cursor_offset as usize,
        c.cursor_page as usize,
        c.cursor_next.clone(),
    );
    Ok(Setup {
        pager,
        tenant,
        helper,
    })
}

async fn drive(
    shared: &Arc<Shared>,
    job: &StreamJob,
    setup: Setup,
    control: Arc<Control>,
    progress: Arc<Mutex<Progress>>,
) -> Ending {
    let limit = job.stream.record_limit;
    let start = job.checkpoint.page_start;
    if limit.is_some_and(|l| job.checkpoint.done_below >= l) {
        return Ending::Complete;
    }
    let cfg = &shared.config;
    let (done_tx, mut done_rx) = watch::channel(job.checkpoint.done_below);
    let saves = Arc::new(Saves::new(cfg.checkpoint_records));
    let ctx = Arc::new(Ctx {
        stream_id: job.stream.id.clone(),
        client: shared.client.clone(),
        url: setup.helper.url.as_url().clone(),
        secret: setup.helper.secret,
        state_json: serde_json::to_vec(&setup.helper.state).unwrap_or_else(|_| b"null".to_vec()),
        shared: shared.clone(),
        control: control.clone(),
        progress: progress.clone(),
        done_below: done_tx,
        saves: saves.clone(),
    });

    // One page in the channel, one in the dispatcher's hands: the fetcher reserves a slot
    // before fetching, so it never holds a third.
    let (tx, mut rx) = mpsc::channel::<Fetched>(1);
    let fetcher = tokio::spawn(fetch_pages(
        shared.kandji.clone(),
        setup.tenant,
        setup.pager,
        limit,
        start,
        tx,
        progress.clone(),
    ));
    let checkpointer = Checkpointer::start(
        shared.clone(),
        job.stream.id.clone(),
        progress.clone(),
        control.clone(),
        saves.clone(),
    );

    let concurrency = cfg.concurrency.max(1);
    let window = (concurrency as u64 * 16).max(64);
    let semaphore = Arc::new(Semaphore::new(concurrency));
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut ending = 'run: loop {
        let msg = tokio::select! {
            biased;
            why = control.wait() => break 'run Ending::Stopped(why),
            m = rx.recv() => m,
        };
        let (start, before, after, records) = match msg {
            Some(Fetched::Page {
                start,
                before,
                after,
                records,
            }) => (start, before, after, records),
            Some(Fetched::End) => break 'run Ending::Complete,
            Some(Fetched::Failed(e)) => break 'run Ending::Failed(e),
            None => break 'run Ending::Failed("the page fetcher stopped unexpectedly".into()),
        };
        let end = limit.map_or(start + records.len() as u64, |l| {
            l.min(start + records.len() as u64)
        });
        progress
            .lock()
            .expect("progress lock")
            .push_page(start, end, before, after);
        for (k, record) in records.into_iter().enumerate() {
            let idx = start + k as u64;
            if idx >= end {
                break;
            }
            if progress.lock().expect("progress lock").is_done(idx) {
                continue;
            }
            tokio::select! {
                biased;
                why = control.wait() => break 'run Ending::Stopped(why),
                _ = done_rx.wait_for(|below| idx < below + window) => {}
            }
            let permit = tokio::select! {
                biased;
                why = control.wait() => break 'run Ending::Stopped(why),
                p = semaphore.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            };
            // The crash bound: with a permit in hand (fewer than `concurrency` in flight), wait
            // while `checkpoint_records` finished deliveries are unsaved.
            loop {
                let saved = saves.saved.notified();
                tokio::pin!(saved);
                saved.as_mut().enable();
                if progress.lock().expect("progress lock").unsaved_count() < saves.max_unsaved {
                    break;
                }
                saves.save_now.notify_one();
                tokio::select! {
                    biased;
                    why = control.wait() => break 'run Ending::Stopped(why),
                    _ = saved => {}
                }
            }
            while let Some(r) = tasks.try_join_next() {
                if let Err(e) = r {
                    break 'run Ending::Failed(format!("a delivery task failed: {e}"));
                }
            }
            {
                let p = progress.lock().expect("progress lock");
                if cfg.max_consecutive_failures > 0
                    && p.consecutive_failures >= cfg.max_consecutive_failures
                {
                    break 'run Ending::Failed(format!(
                        "the helper flow refused {} records in a row; the last: {}",
                        p.consecutive_failures,
                        p.last_failure.as_deref().unwrap_or("")
                    ));
                }
            }
            tasks.spawn(deliver(ctx.clone(), idx, record, permit));
        }
    };
    fetcher.abort();

    // Let the deliveries already started finish (a stop makes those waiting to retry give up,
    // and no new attempt starts); attempts end within the callback timeout.
    loop {
        tokio::select! {
            biased;
            why = control.wait(), if !matches!(ending, Ending::Stopped(_)) => ending = Ending::Stopped(why),
            next = tasks.join_next() => match next {
                None => break,
                Some(Err(e)) if e.is_panic() => ending = Ending::Failed(format!("a delivery task failed: {e}")),
                Some(_) => {}
            },
            _ = tokio::time::sleep(cfg.callback_timeout + Duration::from_secs(2)), if matches!(ending, Ending::Stopped(_)) => {
                tasks.abort_all();
            }
        }
    }
    checkpointer.stop().await;
    if let Ending::Complete = ending {
        let p = progress.lock().expect("progress lock");
        let expected_end = p.next_start;
        if p.done_below < expected_end {
            return Ending::Failed(format!(
                "records from index {} on were not delivered",
                p.done_below
            ));
        }
    }
    ending
}

/// Fetches page after page, never more than one ahead of the dispatcher.
async fn fetch_pages(
    kandji: KandjiClient,
    tenant: Tenant,
    mut pager: Pager,
    limit: Option<u64>,
    mut next_index: u64,
    tx: mpsc::Sender<Fetched>,
    progress: Arc<Mutex<Progress>>,
) {
    loop {
        let Ok(permit) = tx.reserve().await else {
            return;
        };
        if pager.is_done() || limit.is_some_and(|l| next_index >= l) {
            permit.send(Fetched::End);
            return;
        }
        let want = limit
            .map_or(usize::MAX, |l| {
                usize::try_from(l - next_index).unwrap_or(usize::MAX)
            })
            .min(pager.page_size());
        let before = pager.cursor();
        match pager.next(&kandji, &tenant, want).await {
            Ok(Some(page)) => {
                progress.lock().expect("progress lock").pages_fetched += 1;
                if let Some(body) = &page.error_body {
                    let msg = engine::error_message(page.status, body);
                    permit.send(Fetched::Failed(format!(
                        "Kandji answered {} on page {}: {msg}",
                        page.status, pager.pages_fetched
                    )));
                    return;
                }
                let n = page.records.len() as u64;
                permit.send(Fetched::Page {
                    start: next_index,
                    before,
                    after: pager.cursor(),
                    records: page.records,
                });
                next_index += n;
            }
            Ok(None) => {
                permit.send(Fetched::End);
                return;
            }
            Err(e) => {
                permit.send(Fetched::Failed(format!(
                    "{e} (page {})",
                    pager.pages_fetched + 1
                )));
                return;
            }
        }
    }
}

/// Delivers one record: retries transient failures on the schedule, records permanent ones.
/// Returns without marking the record finished when the stream is stopped first (it is then
/// sent again when the stream resumes, with the same `webhook-id`).
async fn deliver(ctx: Arc<Ctx>, idx: u64, record: Value, _permit: OwnedSemaphorePermit) {
    let id = webhook_id(&ctx.stream_id, idx);
    let body = ctx.body(idx, &record);
    drop(record);
    let retry = &ctx.shared.config.retry;
    let mut attempts: u32 = 0;
    let failure = loop {
        if ctx.control.stopped().is_some() {
            return;
        }
        attempts += 1;
        let started = std::time::Instant::now();
        let attempt = ctx
            .client
            .post(&ctx.url, &id, body.clone(), ctx.secret.as_ref())
            .await;
        let outcome = match &attempt {
            Attempt::Delivered => "delivered",
            Attempt::Retry { .. } => "retry",
            Attempt::Refused { .. } => "refused",
        };
        telemetry::delivery_attempt(outcome, started.elapsed());
        match attempt {
            Attempt::Delivered => break None,
            Attempt::Refused {
                status,
                error,
                body,
            } => break Some((status, error, body)),
            Attempt::Retry {
                status,
                retry_after,
                error,
                body,
            } => match retry.delay(attempts as usize - 1, retry_after) {
                None => {
                    break Some((
                        status,
                        format!("{error}; gave up after {attempts} attempts"),
                        body,
                    ));
                }
                Some(wait) => {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = ctx.control.wait() => return,
                    }
                }
            },
        }
    };
    let failure = failure.map(|(status, error, body)| DeliveryFailure {
        index: idx,
        webhook_id: id,
        status,
        error,
        body,
        attempts,
        failed_at: chrono::Utc::now(),
    });
    telemetry::record_finished(failure.is_none());
    let (below, save) = {
        let mut p = ctx.progress.lock().expect("progress lock");
        let below = p.finish(idx, failure);
        (below, p.unsnapshotted_count() >= ctx.saves.save_at)
    };
    if save {
        ctx.saves.save_now.notify_one();
    }
    ctx.done_below.send_replace(below);
}

/// Saves the progress every `checkpoint_interval` while the stream runs (with a shared store
/// this renews the lease), and at once when half of `checkpoint_records` deliveries finished
/// since the last snapshot; notices a cancel made by another replica (the store no longer says
/// running) or a lease another replica took over (this replica was presumed dead): either way
/// the checkpoint is refused and the runner stops.
struct Checkpointer {
    quit: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Checkpointer {
    fn start(
        shared: Arc<Shared>,
        id: String,
        progress: Arc<Mutex<Progress>>,
        control: Arc<Control>,
        saves: Arc<Saves>,
    ) -> Self {
        let (quit, mut quit_rx) = watch::channel(false);
        let every = shared.config.checkpoint_interval;
        let task = tokio::spawn(async move {
            let mut next = tokio::time::Instant::now() + every;
            loop {
                tokio::select! {
                    biased;
                    _ = quit_rx.changed() => return,
                    _ = tokio::time::sleep_until(next) => {}
                    _ = saves.save_now.notified() => {}
                }
                next = tokio::time::Instant::now() + every;
                let (cp, failures, taken) = {
                    let mut p = progress.lock().expect("progress lock");
                    let (cp, failures) = p.snapshot();
                    (cp, failures, p.finished)
                };
                match shared.store.checkpoint_stream(&id, &cp, &failures).await {
                    Ok(true) => {
                        progress.lock().expect("progress lock").saved_up_to(taken);
                        saves.saved.notify_waiters();
                    }
                    Ok(false) => {
                        control.stop(Stop::Cancel);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(stream = %id, error = %e, "checkpoint not saved; retrying");
                        progress.lock().expect("progress lock").unsave(failures);
                    }
                }
            }
        });
        Self { quit, task }
    }

    async fn stop(self) {
        let _ = self.quit.send(true);
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(idx: u64) -> Option<DeliveryFailure> {
        Some(DeliveryFailure {
            index: idx,
            webhook_id: format!("msg_{idx}"),
            status: Some(410),
            error: "gone".into(),
            body: None,
            attempts: 1,
            failed_at: chrono::Utc::now(),
        })
    }

    /// Where a checkpoint resumes: the finished records and the Kandji cursor.
    fn resume_at(cp: &StreamCheckpoint) -> (u64, Vec<u64>, u64, u64, u64) {
        (
            cp.done_below,
            cp.done_above.clone(),
            cp.page_start,
            cp.cursor_offset,
            cp.cursor_page,
        )
    }

    #[test]
    fn progress_tracks_out_of_order_completion_and_the_resume_cursor() {
        let mut p = Progress::from_checkpoint(&StreamCheckpoint {
            cursor_page: 1,
            ..Default::default()
        });
        p.push_page(0, 3, (0, 1, None), (3, 2, None));
        p.push_page(3, 6, (3, 2, None), (6, 3, None));
        assert_eq!(p.backlog(), 6, "two pages received, nothing finished");
        assert_eq!(p.finish(1, None), 0);
        assert_eq!(p.finish(4, failure(4)), 0);
        assert_eq!(p.backlog(), 4, "a failure is finished too");
        let (cp, f) = p.snapshot();
        assert_eq!(resume_at(&cp), (0, vec![1, 4], 0, 0, 1));
        assert_eq!(f.len(), 1);
        assert_eq!((cp.record_count, cp.failed_deliveries), (1, 1));
        assert_eq!(p.finish(0, None), 2);
        assert_eq!(p.finish(2, None), 3);
        // the first page is finished: the cursor moves to the second
        let (cp, f) = p.snapshot();
        assert_eq!(resume_at(&cp), (3, vec![4], 3, 3, 2));
        assert!(f.is_empty());
        p.finish(3, None);
        p.finish(5, None);
        let (cp, _) = p.snapshot();
        assert_eq!(resume_at(&cp), (6, vec![], 6, 6, 3));

        // resuming from a checkpoint keeps the finished records finished
        let r = Progress::from_checkpoint(&StreamCheckpoint {
            done_below: 3,
            done_above: vec![4],
            page_start: 3,
            cursor_offset: 3,
            cursor_page: 2,
            ..Default::default()
        });
        assert!(r.is_done(2) && !r.is_done(3) && r.is_done(4) && !r.is_done(5));
    }

    #[test]
    fn unsaved_failures_are_kept_for_the_next_checkpoint() {
        let mut p = Progress::from_checkpoint(&StreamCheckpoint::default());
        p.push_page(0, 2, (0, 1, None), (2, 2, None));
        p.finish(0, failure(0));
        let (_, f) = p.snapshot();
        p.finish(1, failure(1));
        p.unsave(f);
        let (_, f) = p.snapshot();
        assert_eq!(f.iter().map(|f| f.index).collect::<Vec<_>>(), vec![0, 1]);
    }

    #[test]
    fn unsaved_deliveries_are_counted_until_their_checkpoint_is_saved() {
        let mut p = Progress::from_checkpoint(&StreamCheckpoint::default());
        p.push_page(0, 4, (0, 1, None), (4, 2, None));
        p.finish(1, None);
        p.finish(0, failure(0));
        assert_eq!((p.unsaved_count(), p.unsnapshotted_count()), (2, 2));
        p.snapshot();
        let taken = p.finished;
        p.finish(2, None);
        assert_eq!(
            (p.unsaved_count(), p.unsnapshotted_count()),
            (3, 1),
            "a snapshot being written is not saved yet"
        );
        p.saved_up_to(taken);
        assert_eq!(p.unsaved_count(), 1);
        // A save that lands after a later one does not move the count back.
        p.snapshot();
        p.saved_up_to(p.finished);
        p.saved_up_to(taken);
        assert_eq!((p.unsaved_count(), p.unsnapshotted_count()), (0, 0));
    }

    #[test]
    fn saves_come_at_half_the_allowance() {
        let s = Saves::new(64);
        assert_eq!((s.save_at, s.max_unsaved), (32, 64));
        let s = Saves::new(1);
        assert_eq!((s.save_at, s.max_unsaved), (1, 1));
    }

    #[test]
    fn stop_reasons() {
        let c = Control::default();
        assert_eq!(c.stopped(), None);
        c.stop(Stop::Shutdown);
        assert_eq!(c.stopped(), Some(Stop::Shutdown));
        c.stop(Stop::Cancel);
        c.stop(Stop::Shutdown);
        assert_eq!(c.stopped(), Some(Stop::Cancel));
    }
}
