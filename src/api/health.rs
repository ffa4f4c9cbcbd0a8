use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use super::AppState;
use crate::error::Problem;

/// The process is up.
pub async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

/// How long readiness waits for the store: load balancers give up on a probe after a few seconds,
/// and a store that takes longer than this is not ready in any useful sense.
const READY_WAIT: Duration = Duration::from_secs(2);

/// The store is reachable (within `READY_WAIT`).
pub async fn readyz(State(app): State<AppState>) -> axum::response::Response {
    let cause = match tokio::time::timeout(READY_WAIT, app.store.ping()).await {
        Ok(Ok(())) => return axum::Json(json!({"status": "ready"})).into_response(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {} s", READY_WAIT.as_secs()),
    };
    tracing::warn!(cause = %cause, "not ready: the store is unreachable");
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Not ready")
        .detail("the store is unreachable")
        .retry_after(5)
        .into_response()
}
