//! Stream jobs: their records, checkpoints and delivery failures.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::Value;

use super::StoreError;
use super::sql::{Ts, to_u64};

/// Where a stream stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl StreamState {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamState::Running => "running",
            StreamState::Succeeded => "succeeded",
            StreamState::Failed => "failed",
            StreamState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => StreamState::Running,
            "succeeded" => StreamState::Succeeded,
            "failed" => StreamState::Failed,
            "cancelled" => StreamState::Cancelled,
            _ => return None,
        })
    }
}

/// A stream as reported: no callback URL, secret or helper state.
#[derive(Clone, Debug, PartialEq)]
pub struct Stream {
    /// `"str_"` followed by a simple (hyphenless) UUID v4.
    pub id: String,
    /// The id of the API key that started it.
    pub owner: String,
    pub connection_id: String,
    pub card_id: String,
    pub result_set: String,
    /// `scheme://host[:port]` of the callback.
    pub callback_origin: String,
    pub record_limit: Option<u64>,
    pub state: StreamState,
    pub error: Option<String>,
    /// Records delivered (answered 2xx).
    pub record_count: u64,
    pub failed_deliveries: u64,
    pub pages_fetched: u64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// Input to [`StreamStore::create_stream`]. `Debug` redacts the helper flow.
#[derive(Debug)]
pub struct NewStream {
    pub owner: String,
    pub connection_id: String,
    pub card_id: String,
    pub result_set: String,
    pub inputs: Value,
    pub options: Value,
    /// The helper flow (`{"url","secret","state"}` as JSON): encrypted at rest with the
    /// stream id as associated data, and erased when the stream finishes.
    pub helper_flow: SecretString,
    pub callback_origin: String,
    pub record_limit: Option<u64>,
}

/// Everything a runner needs to (re)start a stream.
#[derive(Debug)]
pub struct StreamJob {
    pub stream: Stream,
    pub inputs: Value,
    pub options: Value,
    pub helper_flow: SecretString,
    pub checkpoint: StreamCheckpoint,
}

/// A stream's progress. Every record below `done_below` is finished (delivered or failed for
/// good); `done_above` lists the finished ones above it. The Kandji cursor fetches the page
/// whose first record has index `page_start`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamCheckpoint {
    pub done_below: u64,
    pub done_above: Vec<u64>,
    pub page_start: u64,
    pub cursor_offset: u64,
    pub cursor_page: u64,
    pub cursor_next: Option<String>,
    pub record_count: u64,
    pub failed_deliveries: u64,
    pub pages_fetched: u64,
}

/// A record the helper flow did not accept.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryFailure {
    pub index: u64,
    pub webhook_id: String,
    /// The callback's HTTP status, when it answered.
    pub status: Option<u16>,
    pub error: String,
    /// The start of the callback's answer.
    pub body: Option<String>,
    pub attempts: u32,
    pub failed_at: DateTime<Utc>,
}

/// Stream jobs. Which process runs a stream is [`super::Coordination`]'s concern; these
/// statements apply, where a backend has leases, only while this process holds the stream's.
#[async_trait::async_trait]
pub trait StreamStore: Send + Sync {
    /// Records a new running stream, its helper flow encrypted (associated data: the stream
    /// id). This process holds its lease from the start.
    async fn create_stream(&self, new: NewStream) -> Result<Stream, StoreError>;

    async fn get_stream(&self, id: &str) -> Result<Option<Stream>, StoreError>;

    /// The most recently started streams first, at most `limit`, optionally only those of
    /// `owner` and only those in `state`.
    async fn list_streams(
        &self,
        owner: Option<&str>,
        state: Option<StreamState>,
        limit: u32,
    ) -> Result<Vec<Stream>, StoreError>;

    /// A running stream with its decrypted helper flow and checkpoint; `Ok(None)` if there is
    /// no such stream or it is no longer running.
    async fn stream_job(&self, id: &str) -> Result<Option<StreamJob>, StoreError>;

    /// Saves a running stream's progress and its new delivery failures in one transaction
    /// (renewing this process's lease). `Ok(false)` (and nothing saved) if the stream is no
    /// longer running, or another process holds it.
    async fn checkpoint_stream(
        &self,
        id: &str,
        checkpoint: &StreamCheckpoint,
        failures: &[DeliveryFailure],
    ) -> Result<bool, StoreError>;

    /// Ends a stream: final progress and failures, `state`, `error`, `finished_at`, and erases
    /// the helper flow (and the lease). Applies while the stream is running (held by this
    /// process), or (to record a cancelled runner's last progress) when it is already in
    /// `state`; `Ok(false)` otherwise.
    async fn finish_stream(
        &self,
        id: &str,
        state: StreamState,
        error: Option<&str>,
        checkpoint: &StreamCheckpoint,
        failures: &[DeliveryFailure],
    ) -> Result<bool, StoreError>;

    /// Marks a running stream cancelled (erasing its helper flow); returns the stream in
    /// whatever state it now has, `Ok(None)` if there is no such stream.
    async fn cancel_stream(&self, id: &str) -> Result<Option<Stream>, StoreError>;

    /// A stream's delivery failures by index, those above `after` (exclusive), at most `limit`.
    async fn stream_failures(
        &self,
        id: &str,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<DeliveryFailure>, StoreError>;
}

/// The columns of a [`StreamRow`], for `concat!` (sqlx takes only `&'static str` queries).
macro_rules! stream_columns {
    () => {
        "id, owner, connection_id, card_id, result_set, callback_origin, record_limit, \
         state, error, record_count, failed_deliveries, pages_fetched, started_at, \
         finished_at, updated_at"
    };
}
pub(super) use stream_columns;

#[derive(sqlx::FromRow)]
pub(super) struct StreamRow {
    id: String,
    owner: String,
    connection_id: String,
    card_id: String,
    result_set: String,
    callback_origin: String,
    record_limit: Option<i64>,
    state: String,
    error: Option<String>,
    record_count: i64,
    failed_deliveries: i64,
    pages_fetched: i64,
    started_at: Ts,
    finished_at: Option<Ts>,
    updated_at: Ts,
}

impl TryFrom<StreamRow> for Stream {
    type Error = StoreError;

    fn try_from(row: StreamRow) -> Result<Self, StoreError> {
        let state = StreamState::parse(&row.state).ok_or_else(|| {
            StoreError::Db(format!("unknown stream state {:?} in database", row.state))
        })?;
        Ok(Stream {
            id: row.id,
            owner: row.owner,
            connection_id: row.connection_id,
            card_id: row.card_id,
            result_set: row.result_set,
            callback_origin: row.callback_origin,
            record_limit: row.record_limit.and_then(|l| u64::try_from(l).ok()),
            state,
            error: row.error,
            record_count: to_u64(row.record_count, "streams.record_count")?,
            failed_deliveries: to_u64(row.failed_deliveries, "streams.failed_deliveries")?,
            pages_fetched: to_u64(row.pages_fetched, "streams.pages_fetched")?,
            started_at: row.started_at.0,
            finished_at: row.finished_at.map(|t| t.0),
            updated_at: row.updated_at.0,
        })
    }
}

/// A stream's row with what a runner needs besides.
#[derive(sqlx::FromRow)]
pub(super) struct JobRow {
    #[sqlx(flatten)]
    pub(super) stream: StreamRow,
    pub(super) inputs: String,
    pub(super) options: String,
    pub(super) helper_ciphertext: Option<String>,
    pub(super) done_below: i64,
    pub(super) done_above: String,
    pub(super) page_start: i64,
    pub(super) cursor_offset: i64,
    pub(super) cursor_page: i64,
    pub(super) cursor_next: Option<String>,
}

#[derive(sqlx::FromRow)]
pub(super) struct FailureRow {
    idx: i64,
    webhook_id: String,
    status: Option<i32>,
    error: String,
    body: Option<String>,
    attempts: i64,
    failed_at: Ts,
}

impl TryFrom<FailureRow> for DeliveryFailure {
    type Error = StoreError;

    fn try_from(row: FailureRow) -> Result<Self, StoreError> {
        Ok(DeliveryFailure {
            index: to_u64(row.idx, "stream_failures.idx")?,
            webhook_id: row.webhook_id,
            status: row.status.and_then(|s| u16::try_from(s).ok()),
            error: row.error,
            body: row.body,
            attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
            failed_at: row.failed_at.0,
        })
    }
}

pub(super) fn json(col: &str, text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|_| StoreError::Db(format!("invalid JSON in streams.{col}")))
}

/// `impl StreamStore` for `SqlStore<$db>` (see `sql.rs` for why a macro).
macro_rules! stream_store {
    ($db:ty) => {
        const _: () = {
            use secrecy::ExposeSecret;

            use $crate::store::sql::{Backend, Lease, Query, SqlStore, Ts, to_i64, to_u64};
            use $crate::store::streams::{
                DeliveryFailure, FailureRow, JobRow, NewStream, Stream, StreamCheckpoint,
                StreamJob, StreamRow, StreamState, StreamStore, json, stream_columns,
            };
            use $crate::store::{StoreError, new_stream_id, now};

            #[async_trait::async_trait]
            impl StreamStore for SqlStore<$db> {
                async fn create_stream(&self, new: NewStream) -> Result<Stream, StoreError> {
                    let id = new_stream_id();
                    let at = now();
                    let cipher = self.cipher.read().await;
                    let sealed = cipher.encrypt(&id, new.helper_flow.expose_secret());
                    let limit = new
                        .record_limit
                        .map(i64::try_from)
                        .transpose()
                        .map_err(|_| StoreError::Db("record_limit out of range".into()))?;
                    let insert = sqlx::query(<$db>::INSERT_STREAM)
                        .bind(id.as_str())
                        .bind(new.owner.as_str())
                        .bind(new.connection_id.as_str())
                        .bind(new.card_id.as_str())
                        .bind(new.result_set.as_str())
                        .bind(new.inputs.to_string())
                        .bind(new.options.to_string())
                        .bind(sealed)
                        .bind(new.callback_origin.as_str())
                        .bind(limit)
                        .bind(Ts(at));
                    <$db>::bind_lease(insert, &self.leases, Lease::Renew)
                        .execute(&self.pool)
                        .await?;
                    drop(cipher);
                    Ok(Stream {
                        id,
                        owner: new.owner,
                        connection_id: new.connection_id,
                        card_id: new.card_id,
                        result_set: new.result_set,
                        callback_origin: new.callback_origin,
                        record_limit: new.record_limit,
                        state: StreamState::Running,
                        error: None,
                        record_count: 0,
                        failed_deliveries: 0,
                        pages_fetched: 0,
                        started_at: at,
                        finished_at: None,
                        updated_at: at,
                    })
                }

                async fn get_stream(&self, id: &str) -> Result<Option<Stream>, StoreError> {
                    let row: Option<StreamRow> = sqlx::query_as(concat!(
                        "SELECT ",
                        stream_columns!(),
                        " FROM streams WHERE id = $1"
                    ))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                    row.map(Stream::try_from).transpose()
                }

                async fn list_streams(
                    &self,
                    owner: Option<&str>,
                    state: Option<StreamState>,
                    limit: u32,
                ) -> Result<Vec<Stream>, StoreError> {
                    let rows: Vec<StreamRow> = sqlx::query_as(concat!(
                        "SELECT ",
                        stream_columns!(),
                        " FROM streams \
                         WHERE (CAST($1 AS TEXT) IS NULL OR owner = $1) AND (CAST($2 \
                         AS TEXT) IS NULL OR state = $2) \
                         ORDER BY started_at DESC, id DESC \
                         LIMIT $3"
                    ))
                    .bind(owner)
                    .bind(state.map(StreamState::as_str))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                    rows.into_iter().map(Stream::try_from).collect()
                }

                async fn stream_job(&self, id: &str) -> Result<Option<StreamJob>, StoreError> {
                    let cipher = self.cipher.read().await;
                    let row: Option<JobRow> = sqlx::query_as(concat!(
                        "SELECT ",
                        stream_columns!(),
                        ", inputs, options, helper_ciphertext, done_below, done_above, \
                         page_start, cursor_offset, cursor_page, cursor_next \
                         FROM streams \
                         WHERE id = $1"
                    ))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                    let Some(row) = row else { return Ok(None) };
                    let stream = Stream::try_from(row.stream)?;
                    let Some(sealed) = row.helper_ciphertext else {
                        return Ok(None);
                    };
                    if stream.state != StreamState::Running {
                        return Ok(None);
                    }
                    let helper_flow = cipher.decrypt(id, &sealed)?;
                    let done_above: Vec<u64> =
                        serde_json::from_value(json("done_above", &row.done_above)?)
                            .map_err(|_| StoreError::Db("invalid streams.done_above".into()))?;
                    let checkpoint = StreamCheckpoint {
                        done_below: to_u64(row.done_below, "streams.done_below")?,
                        done_above,
                        page_start: to_u64(row.page_start, "streams.page_start")?,
                        cursor_offset: to_u64(row.cursor_offset, "streams.cursor_offset")?,
                        cursor_page: to_u64(row.cursor_page, "streams.cursor_page")?,
                        cursor_next: row.cursor_next,
                        record_count: stream.record_count,
                        failed_deliveries: stream.failed_deliveries,
                        pages_fetched: stream.pages_fetched,
                    };
                    Ok(Some(StreamJob {
                        inputs: json("inputs", &row.inputs)?,
                        options: json("options", &row.options)?,
                        helper_flow,
                        checkpoint,
                        stream,
                    }))
                }

                async fn checkpoint_stream(
                    &self,
                    id: &str,
                    checkpoint: &StreamCheckpoint,
                    failures: &[DeliveryFailure],
                ) -> Result<bool, StoreError> {
                    let update =
                        Self::bind_checkpoint(sqlx::query(<$db>::CHECKPOINT_STREAM), checkpoint)?
                            .bind(Ts(now()))
                            .bind(id);
                    let update = <$db>::bind_lease(update, &self.leases, Lease::Renew);
                    self.save_progress(update, id, failures).await
                }

                async fn finish_stream(
                    &self,
                    id: &str,
                    state: StreamState,
                    error: Option<&str>,
                    checkpoint: &StreamCheckpoint,
                    failures: &[DeliveryFailure],
                ) -> Result<bool, StoreError> {
                    let update =
                        Self::bind_checkpoint(sqlx::query(<$db>::FINISH_STREAM), checkpoint)?
                            .bind(state.as_str())
                            .bind(error)
                            .bind(Ts(now()))
                            .bind(id);
                    let update = <$db>::bind_lease(update, &self.leases, Lease::Holder);
                    self.save_progress(update, id, failures).await
                }

                async fn cancel_stream(&self, id: &str) -> Result<Option<Stream>, StoreError> {
                    sqlx::query(
                        "UPDATE streams \
                         SET state = 'cancelled', helper_ciphertext = NULL, \
                         finished_at = $1, updated_at = $1 \
                         WHERE id = $2 AND state = 'running'",
                    )
                    .bind(Ts(now()))
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                    self.get_stream(id).await
                }

                async fn stream_failures(
                    &self,
                    id: &str,
                    after: Option<u64>,
                    limit: u32,
                ) -> Result<Vec<DeliveryFailure>, StoreError> {
                    let after = after.map(to_i64).transpose()?.unwrap_or(-1);
                    let rows: Vec<FailureRow> = sqlx::query_as(
                        "SELECT idx, webhook_id, status, error, body, attempts, \
                         failed_at \
                         FROM stream_failures \
                         WHERE stream_id = $1 AND idx > $2 \
                         ORDER BY idx \
                         LIMIT $3",
                    )
                    .bind(id)
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                    rows.into_iter().map(DeliveryFailure::try_from).collect()
                }
            }

            impl SqlStore<$db> {
                /// Runs `update` (a checkpoint or the end of a stream) and, if it applied, records
                /// `failures`, in one transaction. `Ok(false)` (and nothing saved) if it did not
                /// apply.
                async fn save_progress(
                    &self,
                    update: Query<'_, $db>,
                    id: &str,
                    failures: &[DeliveryFailure],
                ) -> Result<bool, StoreError> {
                    let mut tx = self.begin_write().await?;
                    let done = update.execute(&mut *tx).await?;
                    if done.rows_affected() == 0 {
                        return Ok(false);
                    }
                    for f in failures {
                        sqlx::query(
                            "INSERT INTO stream_failures (stream_id, idx, webhook_id, \
                             status, error, body, attempts, failed_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                             ON CONFLICT (stream_id, idx) DO UPDATE SET \
                             webhook_id = excluded.webhook_id, \
                             status = excluded.status, error = excluded.error, \
                             body = excluded.body, attempts = excluded.attempts, \
                             failed_at = excluded.failed_at",
                        )
                        .bind(id)
                        .bind(to_i64(f.index)?)
                        .bind(f.webhook_id.as_str())
                        .bind(f.status.map(i32::from))
                        .bind(f.error.as_str())
                        .bind(f.body.as_deref())
                        .bind(i64::from(f.attempts))
                        .bind(Ts(f.failed_at))
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    Ok(true)
                }

                /// Binds a checkpoint as `$1`–`$9`: done_below, done_above, page_start,
                /// cursor_offset, cursor_page, cursor_next, record_count, failed_deliveries,
                /// pages_fetched.
                fn bind_checkpoint<'q>(
                    q: Query<'q, $db>,
                    c: &StreamCheckpoint,
                ) -> Result<Query<'q, $db>, StoreError> {
                    let above =
                        serde_json::to_string(&c.done_above).unwrap_or_else(|_| "[]".into());
                    Ok(q.bind(to_i64(c.done_below)?)
                        .bind(above)
                        .bind(to_i64(c.page_start)?)
                        .bind(to_i64(c.cursor_offset)?)
                        .bind(to_i64(c.cursor_page)?)
                        .bind(c.cursor_next.clone())
                        .bind(to_i64(c.record_count)?)
                        .bind(to_i64(c.failed_deliveries)?)
                        .bind(to_i64(c.pages_fetched)?))
                }
            }
        };
    };
}
pub(super) use stream_store;
