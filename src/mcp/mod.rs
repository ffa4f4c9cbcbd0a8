//! The cards as tools for AI agents: a Model Context Protocol server at `/mcp` (Streamable HTTP
//! transport, the official Rust SDK `rmcp`), in the same axum app as the HTTP API.
//!
//! - **Tools** come from card data ([`tools`]): name = card id, title and description from the
//!   card, annotations from its `effect` and `idempotent`, `inputSchema` = its inputs and
//!   options as one object, `outputSchema` = its output schema. Two tools of the connector's
//!   own: `get_stream` (a started stream's state) and `list_connections` (admin keys). A card
//!   whose id is one of theirs is not offered over MCP.
//! - **Calls** go through [`crate::invocation`], the path HTTP invocations take: the same
//!   scopes, connection budget, retries, idempotency keys, logging and metrics.
//! - **Safety**: the same API keys (`Authorization: Bearer`); a key sees and calls only the
//!   tools its scopes allow; destructive cards are not offered at all unless
//!   `KANDJI_CONNECTOR_MCP_DESTRUCTIVE=on`; a request with an `Origin` header (a web page) is
//!   refused unless that origin is in `KANDJI_CONNECTOR_MCP_ALLOWED_ORIGINS`.
//! - **Stateless**: no MCP session is kept (every request stands alone, authenticated by its
//!   key), so any replica answers any request and one key can never reach another's session.

mod server;
pub mod tools;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use crate::api::AppState;
use crate::error::Problem;

pub use server::{BUILTIN_TOOLS, IDEMPOTENCY_META_KEY, McpServer, SUPPORTED_VERSIONS};

/// Where the MCP endpoint is mounted.
pub const PATH: &str = "/mcp";

/// MCP settings (`KANDJI_CONNECTOR_MCP_*`).
#[derive(Debug, Clone, Default)]
pub struct McpConfig {
    /// Offer destructive cards as tools (`KANDJI_CONNECTOR_MCP_DESTRUCTIVE=on`).
    pub destructive: bool,
    /// Browser origins allowed to call `/mcp` (`KANDJI_CONNECTOR_MCP_ALLOWED_ORIGINS`).
    pub allowed_origins: Vec<McpOrigin>,
}

/// A web origin, `scheme://host[:port]` as browsers serialise it (default port left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpOrigin(String);

impl McpOrigin {
    /// An `http` or `https` origin (no path, query or credentials).
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = url::Url::parse(text).map_err(|_| format!("{text:?} is not an origin"))?;
        let plain = matches!(url.scheme(), "http" | "https")
            && url.username().is_empty()
            && url.password().is_none()
            && url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none();
        if !plain {
            return Err(format!(
                "{text:?} is not an origin: give scheme://host[:port] (http or https), e.g. https://agent.example.com"
            ));
        }
        Ok(Self(url.origin().ascii_serialization()))
    }

    /// Comma-separated origins (empty: none).
    pub fn parse_list(text: &str) -> Result<Vec<Self>, String> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Self::parse)
            .collect()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `/mcp`: the Origin check, then the API key (and the key's inbound limit), then the SDK's
/// Streamable HTTP service.
pub fn router(state: AppState) -> Router<AppState> {
    let app = state.clone();
    let config = StreamableHttpServerConfig::default()
        // Stateless: see the module doc. Answers are plain JSON (no SSE stream is needed: the
        // server sends nothing before its answer).
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        // The SDK's Host allow-list (loopback names by default) guards key-less local servers
        // against DNS rebinding; this one is deployed under any host name and every request
        // needs an API key, and browsers are held off by the Origin check below.
        .disable_allowed_hosts()
        .disable_allowed_origins()
        .with_max_request_body_bytes(state.max_body_bytes);
    let service = StreamableHttpService::new(
        move || Ok(McpServer::new(app.clone())),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    let auth =
        axum::middleware::from_fn_with_state(state.clone(), crate::api::auth::require_api_key);
    Router::new()
        .route_service(PATH, service)
        .route_layer(auth)
        .route_layer(axum::middleware::from_fn_with_state(state, check_origin))
}

/// The spec's rule against DNS rebinding and cross-site requests: a request that carries
/// `Origin` (a web page's) is refused with 403 unless the origin is allowed. MCP clients that
/// are not web pages send no `Origin` and pass. Every answer is `Cache-Control: no-store`.
async fn check_origin(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let allowed = origin
            .to_str()
            .ok()
            .and_then(|o| McpOrigin::parse(o).ok())
            .is_some_and(|o| app.mcp.allowed_origins.contains(&o));
        if !allowed {
            return Problem::new(StatusCode::FORBIDDEN, "Origin not allowed")
                .detail("a web page may call /mcp only from an origin listed in KANDJI_CONNECTOR_MCP_ALLOWED_ORIGINS")
                .into_response();
        }
    }
    let mut resp = next.run(req).await;
    // Tool results may carry secrets (PINs, FileVault keys), as `no-store` HTTP answers do.
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    resp
}
