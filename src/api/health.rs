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

/// The store is reachable.
pub async fn readyz(State(app): State<AppState>) -> axum::response::Response {
    match app.store.ping().await {
        Ok(()) => axum::Json(json!({"status": "ready"})).into_response(),
        Err(_) => Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Not ready")
            .detail("the store is unreachable")
            .into_response(),
    }
}
