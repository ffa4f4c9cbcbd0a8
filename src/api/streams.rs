//! `/v1/streams`: the streams started by invoking a stream result set. A key with the
//! `cards:invoke` scope sees and cancels the streams it started; an `admin` key, every stream.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{Caller, Scope};
use crate::error::{FieldError, Problem};
use crate::store::{DeliveryFailure, StoreError, Stream, StreamState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/streams", get(list))
        .route("/streams/{id}", get(status).delete(cancel))
        .route("/streams/{id}/failures", get(failures))
}

pub fn status_url(id: &str) -> String {
    format!("/v1/streams/{id}")
}

/// A stream as the API shows it (never its callback URL, secret or helper state).
pub fn stream_json(s: &Stream) -> Value {
    json!({
        "id": s.id,
        "status_url": status_url(&s.id),
        "card": s.card_id,
        "connection": s.connection_id,
        "result_set": s.result_set,
        "callback": s.callback_origin,
        "record_limit": s.record_limit,
        "state": s.state,
        "record_count": s.record_count,
        "pages_fetched": s.pages_fetched,
        "failed_deliveries": s.failed_deliveries,
        "started_at": s.started_at,
        "finished_at": s.finished_at,
        "error": s.error,
    })
}

fn failure_json(f: &DeliveryFailure) -> Value {
    json!({
        "index": f.index,
        "webhook_id": f.webhook_id,
        "status": f.status,
        "error": f.error,
        "body": f.body,
        "attempts": f.attempts,
        "failed_at": f.failed_at,
    })
}

fn query<T: DeserializeOwned>(raw: Option<String>) -> Result<T, Problem> {
    serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).map_err(|e| {
        let msg = e.to_string();
        let field = msg.split('`').nth(1).unwrap_or("query").to_string();
        Problem::invalid(vec![FieldError::new(&["query", &field], msg, "query")])
    })
}

fn store_problem(e: StoreError) -> Problem {
    Problem::store(&e)
}

fn not_found(id: &str) -> Problem {
    Problem::not_found(format!("no stream {id:?}"))
}

/// The stream, if it exists and the caller may see it (others' streams are "not found").
async fn visible(app: &AppState, caller: &Caller, id: &str) -> Result<Stream, Problem> {
    let s = app.streams.get(id).await.map_err(store_problem)?;
    match s {
        Some(s) if s.owner == caller.key_id || caller.has(Scope::Admin) => Ok(s),
        _ => Err(not_found(id)),
    }
}

const MAX_LIMIT: u32 = 500;

fn check_limit(limit: Option<u32>, default: u32) -> Result<u32, Problem> {
    match limit {
        None => Ok(default),
        Some(l) if (1..=MAX_LIMIT).contains(&l) => Ok(l),
        Some(_) => Err(Problem::invalid(vec![FieldError::new(
            &["query", "limit"],
            format!("must be between 1 and {MAX_LIMIT}"),
            "range",
        )])),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<StreamState>,
    limit: Option<u32>,
}

/// The caller's most recent streams (every stream for an admin key), newest first.
async fn list(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Problem> {
    let q: ListQuery = query(raw)?;
    let limit = check_limit(q.limit, 50)?;
    let owner = (!caller.has(Scope::Admin)).then_some(caller.key_id.as_str());
    let streams = app
        .streams
        .list(owner, q.state, limit)
        .await
        .map_err(store_problem)?;
    Ok(
        axum::Json(json!({"streams": streams.iter().map(stream_json).collect::<Vec<_>>()}))
            .into_response(),
    )
}

async fn status(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let s = visible(&app, &caller, &id).await?;
    Ok(axum::Json(stream_json(&s)).into_response())
}

/// Cancels a running stream. When the answer arrives, no callback of it starts any more.
async fn cancel(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let s = visible(&app, &caller, &id).await?;
    if matches!(s.state, StreamState::Succeeded | StreamState::Failed) {
        return Err(
            Problem::new(StatusCode::CONFLICT, "Stream already finished").detail(format!(
                "the stream {} has {}",
                s.id,
                s.state.as_str()
            )),
        );
    }
    let s = app
        .streams
        .cancel(&id)
        .await
        .map_err(store_problem)?
        .ok_or_else(|| not_found(&id))?;
    if matches!(s.state, StreamState::Succeeded | StreamState::Failed) {
        return Err(
            Problem::new(StatusCode::CONFLICT, "Stream already finished").detail(format!(
                "the stream {} has {}",
                s.id,
                s.state.as_str()
            )),
        );
    }
    Ok(axum::Json(stream_json(&s)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailuresQuery {
    after: Option<u64>,
    limit: Option<u32>,
}

/// The records the helper flow refused, by index; page with `after=<last index>`.
async fn failures(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Problem> {
    let q: FailuresQuery = query(raw)?;
    let limit = check_limit(q.limit, 100)?;
    visible(&app, &caller, &id).await?;
    let list = app
        .streams
        .failures(&id, q.after, limit)
        .await
        .map_err(store_problem)?;
    let next_after = (list.len() == limit as usize)
        .then(|| list.last().map(|f| f.index))
        .flatten();
    Ok(axum::Json(json!({
        "stream_id": id,
        "failures": list.iter().map(failure_json).collect::<Vec<_>>(),
        "next_after": next_after,
    }))
    .into_response())
}
