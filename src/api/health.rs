//! `/healthz` and `/readyz`: the probes of a load balancer or an orchestrator.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::error::Problem;

#[derive(Serialize, ToSchema)]
pub struct Status {
    #[schema(inline)]
    status: Health,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Health {
    Ok,
    Ready,
}

/// Liveness
///
/// Answers 200 as long as the process serves HTTP; checks nothing else.
#[utoipa::path(get, path = "/healthz", tag = "health", operation_id = "healthz", responses(
    (status = 200, description = "The process is up.", body = Status, example = json!({"status": "ok"})),
))]
pub async fn healthz() -> Json<Status> {
    Json(Status { status: Health::Ok })
}

/// How long readiness waits for the store: load balancers give up on a probe after a few seconds,
/// and a store that takes longer than this is not ready in any useful sense.
const READY_WAIT: Duration = Duration::from_secs(2);

/// Readiness
///
/// Answers 200 when the store (the database holding connections and tokens) answers a ping
/// within 2 seconds, 503 with `Retry-After` otherwise.
#[utoipa::path(get, path = "/readyz", tag = "health", operation_id = "readyz", responses(
    (status = 200, description = "The store is reachable.", body = Status, example = json!({"status": "ready"})),
    (status = 503, response = super::openapi::NotReady),
))]
pub async fn readyz(State(app): State<AppState>) -> Result<Json<Status>, Problem> {
    let cause = match tokio::time::timeout(READY_WAIT, app.store.ping()).await {
        Ok(Ok(())) => {
            return Ok(Json(Status {
                status: Health::Ready,
            }));
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {} s", READY_WAIT.as_secs()),
    };
    Err(Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Not ready")
        .detail("the store is unreachable")
        .retry_after(5)
        .cause(cause))
}
