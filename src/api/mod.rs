//! HTTP routes, grouped by resource, and the cross-cutting layers (auth, limits, errors, tracing).

pub mod auth;
mod cards;
mod connections;
mod extract;
mod health;
#[cfg(test)]
mod openapi_check;
mod streams;
pub mod tenants;
mod trust;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, StatusCode, header};
use axum::routing::get;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::catalog::Catalog;
use crate::engine::Resolvers;
use crate::error::Problem;
use crate::kandji::KandjiClient;
use crate::store::Store;
use crate::streams::Streams;
use crate::trust::Trust;

pub use extract::AppJson;

/// Everything a handler may need.
pub struct App {
    pub catalog: Arc<Catalog>,
    pub store: Arc<dyn Store>,
    pub kandji: KandjiClient,
    pub streams: Arc<Streams>,
    /// Device inventories and device-trust lookups.
    pub trust: Arc<Trust>,
    /// What answers cards' resolver variants.
    pub resolvers: Resolvers,
    pub api_keys: Vec<auth::ApiKey>,
    pub inbound_limit: auth::InboundLimit,
    pub max_concurrent_requests: usize,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub tenants: tenants::TenantCache,
}

pub type AppState = Arc<App>;

pub const OPENAPI_JSON: &str = include_str!("../../docs/openapi.json");

/// The whole HTTP API; shared by `main` and the tests.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .merge(
            cards::catalog_routes().route_layer(axum::middleware::from_fn(auth::scope_layer(
                auth::Scope::CatalogRead,
            ))),
        )
        .merge(
            cards::invoke_routes().route_layer(axum::middleware::from_fn(auth::scope_layer(
                auth::Scope::CardsInvoke,
            ))),
        )
        .merge(
            streams::routes().route_layer(axum::middleware::from_fn(auth::scope_layer(
                auth::Scope::CardsInvoke,
            ))),
        )
        .merge(
            // A key that may run cards may also ask the same question through the Get Device
            // Trust card, so cards:invoke opens this route too; trust:read opens only this route.
            trust::routes().route_layer(axum::middleware::from_fn(auth::any_scope_layer(vec![
                auth::Scope::TrustRead,
                auth::Scope::CardsInvoke,
            ]))),
        )
        .merge(
            connections::routes().route_layer(axum::middleware::from_fn(auth::scope_layer(
                auth::Scope::Admin,
            ))),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_api_key,
        ));
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(openapi))
        .nest("/v1", v1)
        .fallback(|| async { Problem::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
        })
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            state.max_concurrent_requests,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            state.request_timeout,
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http())
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
        .with_state(state)
}

async fn openapi() -> impl axum::response::IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}
