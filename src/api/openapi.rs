//! The OpenAPI document, generated from the router: every route is registered through
//! `OpenApiRouter::routes(routes!(handler))`, which needs the handler's `#[utoipa::path]`, so a
//! route cannot be served without being documented. `docs/openapi.json` is this document,
//! committed; a test fails when it differs (regenerate with
//! `cargo run -- openapi > docs/openapi.json`). `GET /openapi.json` serves it.
//!
//! What is common to operations is added here, unless an operation documents its own: to every
//! `/v1` operation the bearer scheme and the 401, 403 and 429 of the authentication layer; to
//! those with a JSON body the extractor's 400 and 413; to those with an `{id}` a 404; to those
//! that read the store (they document a 500) the 503 `Store unavailable`.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{RefOr, Response};

/// Where the authenticated routes are nested.
pub const V1: &str = "/v1";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "kandji-connector",
        description = DESCRIPTION,
        license(name = "Proprietary"),
    ),
    tags(
        (name = "health", description = "Liveness and readiness probes; no authentication."),
        (name = "meta", description = "This document, and the Prometheus metrics."),
        (name = "console", description = "The browser console (catalog, try a card, streams, connections); no authentication to load it, its pages call `/v1` with the key pasted into it."),
        (name = "cards", description = "The catalog of action cards and their invocation."),
        (name = "connections", description = "Kandji tenants the cards run against. The API token is write-only."),
        (name = "streams", description = "Stream result sets: durable jobs that POST every record of a list card to a helper-flow callback. A key with `cards:invoke` sees and cancels the streams it started; an `admin` key, every stream."),
        (name = "events", description = "Event cards and subscriptions: Kandji changes (a device enrolled, a Blueprint changed, a FileVault key read, ...) detected once per connection from Kandji's audit log and POSTed to each subscription's URL as signed webhooks. Subscriptions need `events:manage` (or `admin`); a key sees the subscriptions it created, an `admin` key every one."),
    ),
    components(schemas(super::cards::HelperFlow), responses(
        BadRequest, Unauthorized, Forbidden, NotFound, PayloadTooLarge, ConnectionInvalid,
        BudgetSpent, TooManyRequests, InternalError, KandjiUnreachable, KandjiTimeout, NotReady,
        StreamFinished, InvalidQuery, InFlight, StoreUnavailable, SubscriptionInvalid,
        ReplayInvalid,
    )),
    modifiers(&Bearer),
)]
pub struct ApiDoc;

const DESCRIPTION: &str = "Hosts Kandji \"action cards\" for workflow engines. A card is one Kandji operation (lock a device, list devices, read a FileVault key, ...) with a JSON Schema for its inputs, options and outputs. A workflow designer reads the catalog (`GET /v1/cards`, `GET /v1/cards/{id}`) to build its forms; a running workflow invokes a card against a registered Kandji tenant (`POST /v1/cards/{id}/invoke`). Kandji tenants and their API tokens are registered under `/v1/connections`; tokens are write-only and never returned.

Every route under `/v1` needs `Authorization: Bearer <API key>`, and so does `/metrics` (a key with the `metrics:read` scope); `/healthz`, `/readyz`, `/openapi.json` and the console (`/`, `/console/…`) do not.

Errors of the connector itself are RFC 9457 `application/problem+json` documents (see the `Problem` schema); a request whose fields are wrong gets 422 with one entry in `errors` per offending field. An answer from Kandji, whatever its status, is not an error of the connector: invoking a card returns 200 with Kandji's status in `outputs.status_code` and Kandji's message in `outputs.error`.

Every response carries an `x-request-id` header (the caller's, or a new UUID). An unknown path gives 404 and a known path with the wrong method gives 405, both as problem+json. When the connector's own database cannot be reached, routes that need it answer 503 (title `Store unavailable`) with `Retry-After`; nothing is sent to Kandji. A request that exceeds the connector's overall request timeout gets 504 with an empty body.";

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.info.version = env!("CARGO_PKG_VERSION").to_string();
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("One of the connector's API keys (configured on the server), sent as `Authorization: Bearer <key>`. Required on every route under /v1 and on /metrics."))
                    .build(),
            ),
        );
    }
}

/// The document of the router's routes, with what the authentication layer adds to every
/// `/v1` operation.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = super::routes().into_openapi();
    for (path, item) in doc.paths.paths.iter_mut() {
        let path = path.as_str();
        if !path.starts_with(&format!("{V1}/")) {
            continue;
        }
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            op.security = Some(vec![SecurityRequirement::new(
                "bearer",
                Vec::<String>::new(),
            )]);
            let responses = &mut op.responses.responses;
            let mut common = vec![
                ("401", "Unauthorized"),
                ("403", "Forbidden"),
                ("429", "TooManyRequests"),
            ];
            // What the JSON body extractor refuses.
            if op.request_body.is_some() {
                common.extend([("400", "BadRequest"), ("413", "PayloadTooLarge")]);
            }
            if path.contains("{id}") {
                common.push(("404", "NotFound"));
            }
            if responses.contains_key("500") {
                common.push(("503", "StoreUnavailable"));
            }
            for (code, name) in common {
                responses
                    .entry(code.to_string())
                    .or_insert_with(|| utoipa::openapi::Ref::from_response_name(name).into());
            }
        }
    }
    doc
}

/// The document as committed in `docs/openapi.json` and served at `/openapi.json`.
pub fn document_json() -> String {
    let mut s = document()
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    s.push('\n');
    s
}

static DOCUMENT: LazyLock<String> = LazyLock::new(document_json);

/// This OpenAPI document
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    operation_id = "getOpenApi",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", content_type = "application/json", body = Object)),
)]
pub async fn serve_document() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}

/// A problem+json response component with an example body.
fn problem(
    status: u16,
    title: &str,
    detail: &str,
    description: &str,
    retry_after: Option<&str>,
) -> RefOr<Response> {
    let example =
        json!({"type": "about:blank", "title": title, "status": status, "detail": detail});
    let content = json!({"schema": {"$ref": "#/components/schemas/Problem"}, "example": example});
    let mut r =
        json!({"description": description, "content": {"application/problem+json": content}});
    if let Some(what) = retry_after {
        r["headers"] = json!({"Retry-After": {"description": what, "schema": {"type": "integer", "minimum": 1}}});
    }
    response(r)
}

/// A 422 problem naming one field.
fn invalid(loc: &[&str], msg: &str, kind: &str) -> Value {
    json!({
        "type": "about:blank", "title": "Invalid request", "status": 422,
        "detail": format!("{}: {msg}", loc.join(".")),
        "errors": [{"loc": loc, "msg": msg, "type": kind}],
    })
}

fn response(v: Value) -> RefOr<Response> {
    RefOr::T(serde_json::from_value(v).expect("a valid response object"))
}

/// Reusable responses, referenced as `response = Name` in the operations.
macro_rules! reusable {
    ($($name:ident => $body:expr;)*) => {$(
        pub struct $name;
        impl<'s> utoipa::ToResponse<'s> for $name {
            fn response() -> (&'s str, RefOr<Response>) {
                (stringify!($name), $body)
            }
        }
    )*};
}

const NOT_KANDJI: &str = "host \"example.com\" is not a Kandji API host (expected <tenant>.api.kandji.io, <tenant>.api.eu.kandji.io, <tenant>.api.iru.com or similar)";
const REFUSED: &str =
    "Kandji refused the token (401): check the token, and that it has the Device list permission";
const NOT_JSON: &str = "not valid JSON: EOF while parsing an object at line 1 column 15";

reusable! {
    BadRequest => response(json!({
        "description": "The body is not valid JSON, or Kandji's request could not be built.",
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}, "example": {
            "type": "about:blank", "title": "Bad request", "status": 400, "detail": format!("the body is {NOT_JSON}"),
            "errors": [{"loc": ["body"], "msg": NOT_JSON, "type": "json"}],
        }}},
    }));
    Unauthorized => problem(401, "Unauthorized", "send `Authorization: Bearer <API key>`", "No `Authorization: Bearer <key>` header, or the key is not one of the connector's API keys.", None);
    Forbidden => problem(403, "Missing scope", "this API key lacks the \"cards:invoke\" scope", "The API key lacks the scope this operation needs.", None);
    NotFound => problem(404, "Not found", "no connection \"conn_00000000000000000000000000000000\"", "Nothing has this id.", None);
    InFlight => problem(409, "Request in progress", "a request with this Idempotency-Key is still running; retry shortly", "A request with this Idempotency-Key is still running; retry shortly.", None);
    StreamFinished => problem(409, "Stream already finished", "the stream str_0b7c2f4e9d1a4c3b8e6f5a2d1c0b9e8f has succeeded", "The stream has already succeeded or failed.", None);
    PayloadTooLarge => problem(413, "Request body too large", "the body must be at most 1048576 bytes", "The body exceeds the connector's size limit.", None);
    ConnectionInvalid => response(json!({
        "description": "A field is invalid, or Kandji did not accept the URL and token. `errors[].type` says which: `name`, `api_url`, `token`, `range` (`requests_per_hour` below 1), `shape` (unknown field or wrong JSON type), `kandji_auth` (Kandji refused the token with 401/403), `kandji_status` (Kandji answered another error status), `unreachable` (Kandji could not be reached or timed out).",
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}, "examples": {
            "token_refused": {"summary": "Kandji refused the token", "value": invalid(&["api_token"], REFUSED, "kandji_auth")},
            "bad_url": {"summary": "Not a Kandji API host", "value": invalid(&["api_url"], NOT_KANDJI, "api_url")},
        }}},
    }));
    SubscriptionInvalid => response(json!({
        "description": "A field is invalid; `errors` names each: `connection` (unknown), `event` (unknown, or an inventory event on a connection whose `inventory_sync` is off), `url` (not an allowed callback URL), `secret` (not `whsec_<base64 of 24 to 64 bytes>`), `filters.<name>` (not a filter of the event card, or the wrong type), or an unknown field.",
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}, "example": invalid(&["filters", "platform"], "3 is not valid under any of the schemas listed in the 'oneOf' keyword", "filter")}},
    }));
    ReplayInvalid => response(json!({
        "description": "`since` is not an RFC 3339 date-time.",
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}, "example": invalid(&["since"], "must be an RFC 3339 date-time, e.g. 2024-06-03T09:00:00Z", "date_time")}},
    }));
    InvalidQuery => response(json!({
        "description": "A query parameter is malformed; `errors` names it.",
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}, "example": invalid(&["query", "limit"], "must be between 1 and 500", "range")}},
    }));
    BudgetSpent => problem(429, "Kandji request budget spent", "this connection's share of the tenant's hourly Kandji quota is used up for now; retry later", "This connection's Kandji request budget (`requests_per_hour`) had no room within the connector's wait bound, so the request was not sent to Kandji. Retry after `Retry-After` seconds.", Some("Seconds until the connection's Kandji request budget has room again."));
    TooManyRequests => problem(429, "Too many requests", "this API key is sending requests faster than its limit", "This API key sends requests faster than its limit (KANDJI_CONNECTOR_RATE_LIMIT_PER_SECOND, or its own `rate=N`).", Some("Seconds until this API key may send again."));
    InternalError => problem(500, "Internal error", "the connector's database failed; the cause is in its log", "The connector's database failed (the cause is in the connector's log).", None);
    KandjiUnreachable => problem(502, "Kandji could not be reached", "Kandji could not be reached: error sending request", "Kandji could not be reached (connection refused, DNS, TLS, ...) or its answer exceeded the connector's size limit.", None);
    StoreUnavailable => problem(503, "Store unavailable", "the connector's database cannot be reached right now; retry later", "The connector's database cannot be reached right now; nothing was sent to Kandji. Retry after `Retry-After` seconds.", Some("Seconds to wait before retrying."));
    NotReady => problem(503, "Not ready", "the store is unreachable", "The store is unreachable.", Some("Seconds to wait before probing again."));
    KandjiTimeout => problem(504, "Kandji did not answer in time", "Kandji did not answer within 30s", "Kandji did not answer within the connector's Kandji timeout. (A request exceeding the connector's overall request timeout also gets 504, with an empty body.)", None);
}
