//! HTTP routes, grouped by resource, and the cross-cutting layers (auth, limits, errors, tracing).
//!
//! ## Adding a route
//! 1. Write the handler in its resource's module with `#[utoipa::path(...)]` above it: method,
//!    path (relative to where the module's routes are nested: `/v1` routes omit `/v1`), tag,
//!    `operation_id`, a doc comment (first line: summary; the rest: description), params, request
//!    body and its responses (problems through the reusable responses of [`openapi`], e.g.
//!    `(status = 502, response = KandjiUnreachable)`; the 400/401/403/404/413/429/503 that
//!    every operation of its kind can answer are added by [`openapi::document`]). Bodies are
//!    `ToSchema` types the handler really serialises, so the schemas follow the code.
//! 2. Register it in the module's `routes()` with `.routes(routes!(handler))` (handlers of one
//!    path and several methods: `routes!(get_x, delete_x)`). Never `.route(...)`: `routes!` is
//!    the only way in, so an undocumented handler does not compile.
//! 3. A new resource's `routes()` is merged in `routes_with` below, under the scope layer it
//!    needs; everything under `/v1` gets the API-key layer (and its operations the bearer
//!    scheme in the document). A route outside `/v1` (e.g. `/metrics`, a console at `/`) is
//!    added next to `/healthz` there.
//! 4. Regenerate the committed document: `cargo run -- openapi > docs/openapi.json` (a test
//!    fails until it matches).
//!
//! Handlers return `Result<_, Problem>` and use `?`: see `errors` for the conversions.
//!
//! `/mcp` (the MCP endpoint, [`crate::mcp`]) is JSON-RPC, not a REST route: it is merged in
//! [`router`] with its own Origin and API-key layers and stays out of the OpenAPI document.

pub mod auth;
mod cards;
mod connections;
mod errors;
mod extract;
mod health;
mod metrics;
pub mod openapi;
#[cfg(test)]
mod openapi_check;
mod preview;
mod streams;
mod subscriptions;
mod trust;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, StatusCode, header};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::catalog::Catalog;
use crate::engine::Resolvers;
use crate::error::{Problem, log_problems};
use crate::kandji::{KandjiClient, TenantCache};
use crate::store::Store;
use crate::streams::Streams;
use crate::trust::Trust;

pub(crate) use cards::{InvokeBody, StreamStarted};
pub(crate) use connections::connection_view;
pub use extract::AppJson;
pub(crate) use extract::{check_depth, from_value};
pub(crate) use streams::{status_url, stream_view, visible_stream};

/// Everything a handler may need.
pub struct App {
    pub catalog: Arc<Catalog>,
    pub store: Arc<dyn Store>,
    pub kandji: KandjiClient,
    pub streams: Arc<Streams>,
    /// Device inventories and device-trust lookups.
    pub trust: Arc<Trust>,
    /// Event subscriptions: the audit-log poller and the webhook deliverer.
    pub events: Arc<crate::events::Events>,
    /// What answers cards' resolver variants.
    pub resolvers: Resolvers,
    pub api_keys: Vec<auth::ApiKey>,
    pub inbound_limit: auth::InboundLimit,
    pub max_concurrent_requests: usize,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    /// Connections resolved to tenants (shared with the streams and the inventory syncs).
    pub tenants: TenantCache,
    /// Deletes finished records past their retention (stops with the app).
    pub retention: crate::retention::Sweeper,
    /// The MCP endpoint's settings.
    pub mcp: crate::mcp::McpConfig,
    /// What renders `GET /metrics`; `None` when metrics are off.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

pub type AppState = Arc<App>;

/// Every route with its documentation, before the API-key layer: the unauthenticated ones, and
/// those under `/v1` with the scope each needs.
fn routes() -> OpenApiRouter<AppState> {
    routes_with(|v1| v1)
}

fn routes_with(
    authenticate: impl Fn(OpenApiRouter<AppState>) -> OpenApiRouter<AppState>,
) -> OpenApiRouter<AppState> {
    use auth::{Scope, any_scope_layer};
    let scoped = |r: OpenApiRouter<AppState>, scopes: Vec<Scope>| {
        r.route_layer(axum::middleware::from_fn(any_scope_layer(scopes)))
    };
    let v1 = OpenApiRouter::new()
        .merge(scoped(cards::catalog_routes(), vec![Scope::CatalogRead]))
        // trust:read may run the device-trust card (the question its own route answers); the
        // invocation service checks each card's scopes (`invocation::may_invoke`).
        .merge(scoped(
            cards::invoke_routes(),
            vec![Scope::CardsInvoke, Scope::TrustRead],
        ))
        .merge(scoped(
            preview::routes(),
            vec![Scope::CardsInvoke, Scope::TrustRead],
        ))
        .merge(scoped(connections::routes(), vec![Scope::Admin]))
        // A key that may run cards may also ask the same question through the Get Device
        // Trust card, so cards:invoke opens this route too; trust:read opens only this route.
        .merge(scoped(
            trust::routes(),
            vec![Scope::TrustRead, Scope::CardsInvoke],
        ))
        .merge(scoped(streams::routes(), vec![Scope::CardsInvoke]))
        .merge(scoped(
            subscriptions::catalog_routes(),
            vec![Scope::CatalogRead],
        ))
        .merge(scoped(
            subscriptions::routes(),
            vec![Scope::EventsManage, Scope::Admin],
        ));
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(openapi::serve_document))
        .routes(routes!(crate::console::index))
        .routes(routes!(crate::console::asset))
        .merge(authenticate(scoped(
            metrics::routes(),
            vec![Scope::MetricsRead],
        )))
        .nest(openapi::V1, authenticate(v1))
}

/// `GET /metrics` alone, without a key: what `KANDJI_CONNECTOR_METRICS_LISTEN` serves.
pub fn metrics_router(state: AppState) -> Router {
    let (router, _) = metrics::routes().split_for_parts();
    router
        .fallback(|| async { Problem::not_found("no such route") })
        .with_state(state)
}

/// The whole HTTP API; shared by `main` and the tests.
pub fn router(state: AppState) -> Router {
    let auth = axum::middleware::from_fn_with_state(state.clone(), auth::require_api_key);
    let (router, _) = routes_with(|r| r.route_layer(auth.clone())).split_for_parts();
    let request_id = HeaderName::from_static("x-request-id");
    router
        // JSON-RPC, not a REST route: outside the OpenAPI document (see src/mcp).
        .merge(crate::mcp::router(state.clone()))
        .fallback(|| async { Problem::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
        })
        // One layer of the whole stack, not one `.layer` call each: axum boxes every route once
        // per `.layer` call and clones each boxed level on every request, so seven calls cost
        // about 28 boxed clones a request where one costs one (bench/invoke.sh, PROFILE=callgrind).
        // Outermost first.
        .layer(
            tower::ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                    header::COOKIE,
                ]))
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(axum::middleware::from_fn(crate::telemetry::observe))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(axum::middleware::from_fn(log_problems))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::GATEWAY_TIMEOUT,
                    state.request_timeout,
                ))
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                    state.max_concurrent_requests,
                )),
        )
        .with_state(state)
}
