//! `GET /metrics`: the Prometheus exposition text (see [`crate::telemetry`]).

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::error::Problem;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// Prometheus metrics
///
/// The connector's metrics in the Prometheus text exposition format (0.0.4): HTTP requests,
/// card invocations, requests to Kandji and each connection's budget, streams, device trust,
/// the store. Needs a key with the `metrics:read` scope; `KANDJI_CONNECTOR_METRICS_LISTEN`
/// serves the same without a key on a second address. 404 when metrics are off
/// (`KANDJI_CONNECTOR_METRICS=off`).
#[utoipa::path(get, path = "/metrics", tag = "meta", operation_id = "metrics",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The metrics.", content_type = "text/plain; version=0.0.4", body = String,
         example = "kandji_connector_card_invocations_total{card=\"lock_device\",outcome=\"ok\",surface=\"http\"} 3"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 429, response = super::openapi::TooManyRequests),
    ))]
pub async fn metrics(State(app): State<AppState>) -> Result<Response, Problem> {
    let Some(handle) = &app.metrics else {
        return Err(Problem::not_found(
            "metrics are off (KANDJI_CONNECTOR_METRICS=off)",
        ));
    };
    let text = crate::telemetry::render(&app, handle);
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::telemetry::CONTENT_TYPE),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
