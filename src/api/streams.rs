//! `/v1/streams`: the streams started by invoking a stream result set. A key with the
//! `cards:invoke` scope sees and cancels the streams it started; an `admin` key, every stream.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::Caller;
use super::extract::query_limit;
use super::openapi::{InternalError, InvalidQuery, StreamFinished};
use crate::error::{FieldError, Problem};
use crate::store::{DeliveryFailure, Stream, StreamState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(status, cancel))
        .routes(routes!(failures))
}

pub fn status_url(id: &str) -> String {
    format!("/v1/streams/{id}")
}

/// A stream's state, from [`StreamState`].
fn state_schema() -> ObjectBuilder {
    let states = [
        StreamState::Running,
        StreamState::Succeeded,
        StreamState::Failed,
        StreamState::Cancelled,
    ];
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(states.map(StreamState::as_str)))
        .description(Some("`succeeded`: every record was offered (some may be `failed_deliveries`). `failed`: the stream itself stopped (Kandji refused a page, the connection was deleted, or the helper flow refused 100 records in a row); see `error`."))
}

/// A stream as the API shows it (never its callback URL, secret or helper state).
#[derive(Serialize, ToSchema)]
#[schema(as = Stream, example = json!({
        "id": "str_0b7c2f4e9d1a4c3b8e6f5a2d1c0b9e8f",
        "status_url": "/v1/streams/str_0b7c2f4e9d1a4c3b8e6f5a2d1c0b9e8f",
        "card": "list_devices",
        "connection": "conn_5f0c2b7d9a8e4c1f8b3a6d2e1c0f9a7b",
        "result_set": "stream_matching_records",
        "callback": "https://acme.workflows.okta.com",
        "record_limit": null,
        "state": "running",
        "record_count": 12480,
        "pages_fetched": 42,
        "failed_deliveries": 1,
        "started_at": "2024-06-03T09:00:00.000000Z",
        "finished_at": null,
        "error": null,
    }))]
pub(crate) struct View<'a> {
    #[schema(examples("str_0b7c2f4e9d1a4c3b8e6f5a2d1c0b9e8f"))]
    id: &'a str,
    status_url: String,
    card: &'a str,
    connection: &'a str,
    result_set: &'a str,
    /// Origin (scheme://host[:port]) of the callback URL; its path and query are never shown.
    callback: &'a str,
    #[schema(required = true, minimum = 0)]
    record_limit: Option<u64>,
    #[schema(schema_with = state_schema)]
    state: StreamState,
    /// Records delivered (the callback answered 2xx).
    record_count: u64,
    /// Pages requested from Kandji (a page re-read after a restart counts again).
    pages_fetched: u64,
    /// Records the callback refused for good (4xx other than 408/429, any 3xx) or that ran out
    /// of retries; listed at `/v1/streams/{id}/failures`.
    failed_deliveries: u64,
    started_at: DateTime<Utc>,
    #[schema(required = true)]
    finished_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    error: Option<&'a str>,
}

pub(crate) fn stream_view(s: &Stream) -> View<'_> {
    View {
        id: &s.id,
        status_url: status_url(&s.id),
        card: &s.card_id,
        connection: &s.connection_id,
        result_set: &s.result_set,
        callback: &s.callback_origin,
        record_limit: s.record_limit,
        state: s.state,
        record_count: s.record_count,
        pages_fetched: s.pages_fetched,
        failed_deliveries: s.failed_deliveries,
        started_at: s.started_at,
        finished_at: s.finished_at,
        error: s.error.as_deref(),
    }
}

#[derive(Serialize, ToSchema)]
struct StreamList<'a> {
    streams: Vec<View<'a>>,
}

/// A record the helper flow refused.
#[derive(Serialize, ToSchema)]
#[schema(as = StreamFailure)]
struct FailureView<'a> {
    index: u64,
    webhook_id: &'a str,
    /// The callback's HTTP status; null when it never answered.
    #[schema(required = true)]
    status: Option<u16>,
    error: &'a str,
    /// The start (at most 1 KiB) of the callback's answer.
    #[schema(required = true)]
    body: Option<&'a str>,
    attempts: u32,
    failed_at: DateTime<Utc>,
}

fn failure_view(f: &DeliveryFailure) -> FailureView<'_> {
    FailureView {
        index: f.index,
        webhook_id: &f.webhook_id,
        status: f.status,
        error: &f.error,
        body: f.body.as_deref(),
        attempts: f.attempts,
        failed_at: f.failed_at,
    }
}

#[derive(Serialize, ToSchema)]
struct StreamFailureList<'a> {
    stream_id: &'a str,
    failures: Vec<FailureView<'a>>,
    /// Pass as `after` for the next page; null on the last page.
    #[schema(required = true)]
    next_after: Option<u64>,
}

fn query<T: DeserializeOwned>(raw: Option<String>) -> Result<T, Problem> {
    serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).map_err(|e| {
        let msg = e.to_string();
        let field = msg.split('`').nth(1).unwrap_or("query").to_string();
        Problem::invalid(vec![FieldError::new(&["query", &field], msg, "query")])
    })
}

fn not_found(id: &str) -> Problem {
    Problem::not_found(format!("no stream {id:?}"))
}

fn finished(s: &Stream) -> Result<(), Problem> {
    if matches!(s.state, StreamState::Succeeded | StreamState::Failed) {
        return Err(
            Problem::new(StatusCode::CONFLICT, "Stream already finished").detail(format!(
                "the stream {} has {}",
                s.id,
                s.state.as_str()
            )),
        );
    }
    Ok(())
}

/// The stream, if it exists and the caller may see it (others' streams are "not found").
pub(crate) async fn visible_stream(
    app: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<Stream, Problem> {
    match app.streams.get(id).await? {
        Some(s) if caller.may_see(&s.owner) => Ok(s),
        _ => Err(not_found(id)),
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    #[param(schema_with = state_schema)]
    state: Option<StreamState>,
    #[param(minimum = 1, maximum = 500, default = 50)]
    limit: Option<u32>,
}

/// The stream's id, in the path.
#[derive(IntoParams)]
#[into_params(names("id"), parameter_in = Path)]
#[allow(dead_code)]
struct StreamId(
    /// The stream's id, as returned by the invocation that started it.
    #[param(example = "str_0b7c2f4e9d1a4c3b8e6f5a2d1c0b9e8f")]
    String,
);

/// List recent streams
///
/// The caller's streams (every stream for an `admin` key), most recently started first.
#[utoipa::path(get, path = "/streams", tag = "streams", operation_id = "listStreams", params(ListQuery), responses(
    (status = 200, description = "Streams, newest first.", body = StreamList),
    (status = 422, response = InvalidQuery),
    (status = 500, response = InternalError),
))]
async fn list(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Problem> {
    let q: ListQuery = query(raw)?;
    let limit = query_limit(q.limit, 50)?;
    let owner = caller.owner_filter();
    let streams = app.streams.list(owner, q.state, limit).await?;
    let streams = streams.iter().map(stream_view).collect();
    Ok(Json(StreamList { streams }).into_response())
}

/// A stream's progress
///
/// `record_count` is live while the stream runs in this process.
#[utoipa::path(get, path = "/streams/{id}", tag = "streams", operation_id = "getStream", params(StreamId), responses(
    (status = 200, description = "The stream.", body = View),
    (status = 500, response = InternalError),
))]
async fn status(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    crate::telemetry::record_ids(None, None, Some(&id));
    let s = visible_stream(&app, &caller, &id).await?;
    Ok(Json(stream_view(&s)).into_response())
}

/// Cancel a stream
///
/// Stops a running stream: once this answers, no callback of it starts any more (callbacks
/// already in flight have ended), and its state is `cancelled`. Cancelling a cancelled stream
/// answers the same; a finished one, 409.
#[utoipa::path(delete, path = "/streams/{id}", tag = "streams", operation_id = "cancelStream", params(StreamId), responses(
    (status = 200, description = "The cancelled stream.", body = View),
    (status = 409, response = StreamFinished),
    (status = 500, response = InternalError),
))]
async fn cancel(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    crate::telemetry::record_ids(None, None, Some(&id));
    finished(&visible_stream(&app, &caller, &id).await?)?;
    let s = app
        .streams
        .cancel(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    // It may have finished meanwhile.
    finished(&s)?;
    Ok(Json(stream_view(&s)).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct FailuresQuery {
    /// Only failures with a greater index (the previous page's `next_after`).
    #[param(minimum = 0)]
    after: Option<u64>,
    #[param(minimum = 1, maximum = 500, default = 100)]
    limit: Option<u32>,
}

/// Records the helper flow refused
///
/// By index, with the callback's status and the start of its answer; page with
/// `after=<next_after>`.
#[utoipa::path(get, path = "/streams/{id}/failures", tag = "streams", operation_id = "listStreamFailures", params(StreamId, FailuresQuery), responses(
    (status = 200, description = "Failures by index.", body = StreamFailureList, example = json!({
        "stream_id": "str_0b7c2f4e9d1a4c3b8e6f5a2d1c0b9e8f",
        "failures": [{
            "index": 17,
            "webhook_id": "msg_0b7c2f4e9d1a4c3b8e6f5a2d1c0b9e8f_17",
            "status": 410,
            "error": "the helper flow answered 410 Gone",
            "body": "{\"error\":\"flow deleted\"}",
            "attempts": 1,
            "failed_at": "2024-06-03T09:00:04.120000Z",
        }],
        "next_after": null,
    })),
    (status = 422, response = InvalidQuery),
    (status = 500, response = InternalError),
))]
async fn failures(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Problem> {
    crate::telemetry::record_ids(None, None, Some(&id));
    let q: FailuresQuery = query(raw)?;
    let limit = query_limit(q.limit, 100)?;
    visible_stream(&app, &caller, &id).await?;
    let list = app.streams.failures(&id, q.after, limit).await?;
    let next_after = (list.len() == limit as usize)
        .then(|| list.last().map(|f| f.index))
        .flatten();
    Ok(Json(StreamFailureList {
        stream_id: &id,
        failures: list.iter().map(failure_view).collect(),
        next_after,
    })
    .into_response())
}
