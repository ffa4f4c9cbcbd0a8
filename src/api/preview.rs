//! The dry run (`POST /v1/cards/{id}/preview`): an invocation checked exactly as
//! `POST /v1/cards/{id}/invoke` checks it, answered with the Kandji request(s) it would send
//! instead of sending them. Nothing reaches Kandji, no budget is taken, no idempotency key is
//! claimed and no stream is started.
//!
//! A route of its own rather than `"dry_run": true` in the invoke body: a call here cannot run
//! a card whatever its body says (a flag that a caller's template or a proxy drops would turn a
//! plan into a real, possibly destructive, run), and its answer has a shape of its own.
//!
//! The checks repeat invoke's, in its order (`cards::invoke`, `cards::invoke_inner`), over the
//! same functions (`engine::prepare`, `StreamRequest::take`, the tenant cache);
//! tests/it/preview.rs compares the two answers for every kind of bad input.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Caller, Scope};
use super::cards::InvokeBody;
use super::openapi::InternalError;
use super::{AppJson, AppState};
use crate::catalog::{Effect, Paging};
use crate::engine::{PagingPlan, Plan, Role, RunError};
use crate::error::{FieldError, Problem, ProblemBody};
use crate::invocation;
use crate::kandji::{KandjiError, KandjiRequest, RequestBody, Tenant};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(preview))
}

/// What an invocation would send to Kandji; nothing was sent.
#[derive(Serialize, ToSchema)]
#[schema(as = Preview)]
struct PreviewResponse {
    /// Always true: this is a plan, nothing was sent to Kandji.
    dry_run: bool,
    #[schema(examples("lock_device"))]
    card: String,
    #[schema(examples("conn_5f0c2b7d9a8e4c1f8b3a6d2e1c0f9a7b"))]
    connection: String,
    /// The card's `effect`: `read`, `change` or `destructive`.
    effect: Effect,
    /// The requests, in the order they would be sent. Empty when a resolver would answer
    /// without asking Kandji, or a stream's `record_limit` is 0.
    requests: Vec<RequestView>,
    /// The header every request also carries, whose value is never shown.
    #[schema(examples("Authorization: Bearer <the connection's API token>"))]
    credentials: &'static str,
    /// List cards: how the list goes on after the first page, and when it stops.
    #[schema(required = true)]
    paging: Option<PagingView>,
    /// Cards answered by a resolver built into the connector (Get Device Trust): where the
    /// answer would come from.
    #[schema(required = true)]
    resolver: Option<ResolverView>,
    /// A stream result set: invoke would answer 202 and start a stream delivering each record.
    #[schema(required = true)]
    stream: Option<StreamView>,
}

/// One request as Kandji would receive it.
#[derive(Serialize, ToSchema)]
#[schema(as = PreviewRequest)]
struct RequestView {
    /// `request` (the card's one request), `first_page` (a list's first page), `lookup` (a
    /// follow-up read some outputs come from) or `live_lookup` (a resolver's request).
    #[schema(examples("request"))]
    role: &'static str,
    /// A lookup's name (outputs read its body as `$<name>/…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    lookup: Option<String>,
    /// When it is sent.
    #[schema(examples("always"))]
    when: &'static str,
    #[schema(examples("POST"))]
    method: String,
    /// The full URL on the tenant's host, query included.
    #[schema(
        format = "uri",
        examples(
            "https://accuhive.api.kandji.io/api/v1/devices/4b6b1d43-2a9e-4c56-9d8f-0e5b3c7a1f22/action/lock"
        )
    )]
    url: String,
    /// The URL's query, decoded, in order.
    query: Vec<NameValue>,
    /// The headers sent, but the credentials and what HTTP adds for framing (`Host`,
    /// `Content-Length`), in order.
    headers: Vec<NameValue>,
    /// The body exactly as sent; null: no body.
    #[schema(required = true)]
    body: Option<BodyView>,
}

#[derive(Serialize, ToSchema)]
struct NameValue {
    name: String,
    value: String,
}

/// A request body in its real encoding.
#[derive(Serialize, ToSchema)]
#[schema(as = PreviewBody)]
struct BodyView {
    /// `json` or `form`.
    #[schema(examples("json"))]
    encoding: &'static str,
    #[schema(examples("application/json"))]
    content_type: &'static str,
    /// The bytes sent, as text.
    #[schema(examples("{\"PIN\":\"123456\"}"))]
    text: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = PreviewPaging)]
struct PagingView {
    /// `offset`, `drf`, `page`, `cursor` or `none` (see docs/card-format.md, "Paging styles").
    #[schema(examples("offset"))]
    style: &'static str,
    /// Kandji's largest page for this list.
    page_size: usize,
    /// The query parameter carrying the page size (`offset` and `drf` lists).
    #[schema(required = true)]
    size_param: Option<String>,
    /// Records read before stopping; null: every record.
    #[schema(required = true)]
    records_wanted: Option<u64>,
    /// A name lookup (e.g. Get Blueprint by name) reads pages until a record matches, at most
    /// this many.
    #[schema(required = true)]
    max_pages: Option<usize>,
    /// In words: how each further page is asked for, and when paging stops.
    continues: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = PreviewResolver)]
struct ResolverView {
    #[schema(examples("device_trust"))]
    name: String,
    /// Where the answer would come from, now.
    answer_from: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = PreviewStream)]
struct StreamView {
    /// Origin of the helper flow each record would be POSTed to.
    #[schema(examples("https://acme.workflows.okta.com"))]
    delivers_to: String,
    /// As given; null: every record.
    #[schema(required = true)]
    record_limit: Option<u64>,
}

/// The card's id, in the path.
#[derive(utoipa::IntoParams)]
#[into_params(names("id"), parameter_in = Path)]
#[allow(dead_code)]
struct CardId(
    /// The card's id, as listed by `GET /v1/cards`.
    #[param(example = "lock_device")]
    String,
);

const CREDENTIALS: &str = "Authorization: Bearer <the connection's API token>";

/// Preview a card's invocation (dry run)
///
/// Takes the same body as `POST /v1/cards/{id}/invoke` and checks it exactly as invoke does (the same 404, 422 and 501 problems for the same input, the same connection check, the same scopes, `secrets:read` included), then answers 200 with the Kandji request(s) the invocation would send: method, full URL on the tenant's host, query, headers (but the connection's token) and body in its real encoding (JSON or form). A list card's first page comes with how paging goes on and when it stops; a card whose outputs come from a follow-up read (the lost-mode cards, Lock and Erase Device) lists that read too; a stream result set shows the first page and where the records would be delivered.
///
/// Nothing is sent to Kandji, the connection's budget is untouched, an `Idempotency-Key` is not claimed (a later invoke with it runs), and no stream starts. The answer carries `Cache-Control: no-store` (a body may hold what the caller typed, such as a PIN).
///
/// Get Device Trust has no Kandji request of its own: the answer says whether the connection's device inventory would answer (nothing sent) or one live `GET /devices?serial_number=` would.
#[utoipa::path(
    post,
    path = "/cards/{id}/preview",
    tag = "cards",
    operation_id = "previewCard",
    params(CardId),
    request_body(content = InvokeBody, examples(
        ("lock_device" = (summary = "POST /v1/cards/lock_device/preview", value = json!({
            "connection": "conn_5f0c2b7d9a8e4c1f8b3a6d2e1c0f9a7b",
            "inputs": {"device_id": "4b6b1d43-2a9e-4c56-9d8f-0e5b3c7a1f22"},
        }))),
        ("list_devices" = (summary = "POST /v1/cards/list_devices/preview (first 200 Macs)", value = json!({
            "connection": "conn_5f0c2b7d9a8e4c1f8b3a6d2e1c0f9a7b",
            "inputs": {"platform": "Mac"},
            "options": {"result_set": "first_200_matching_records"},
        }))),
    )),
    responses(
        (status = 200, description = "What the invocation would send; nothing was sent.", body = PreviewResponse,
            headers(("Cache-Control" = String, description = "`no-store`.")),
            examples(
                ("lock_device" = (summary = "lock_device", value = json!({
                    "dry_run": true,
                    "card": "lock_device",
                    "connection": "conn_5f0c2b7d9a8e4c1f8b3a6d2e1c0f9a7b",
                    "effect": "destructive",
                    "requests": [{
                        "role": "request",
                        "when": "always",
                        "method": "POST",
                        "url": "https://accuhive.api.kandji.io/api/v1/devices/4b6b1d43-2a9e-4c56-9d8f-0e5b3c7a1f22/action/lock",
                        "query": [],
                        "headers": [
                            {"name": "accept", "value": "application/json"},
                            {"name": "user-agent", "value": "kandji-connector/0.1.0"},
                        ],
                        "body": null,
                    }],
                    "credentials": CREDENTIALS,
                    "paging": null,
                    "resolver": null,
                    "stream": null,
                }))),
                ("list_devices" = (summary = "list_devices, first 200 Macs", value = json!({
                    "dry_run": true,
                    "card": "list_devices",
                    "connection": "conn_5f0c2b7d9a8e4c1f8b3a6d2e1c0f9a7b",
                    "effect": "read",
                    "requests": [{
                        "role": "first_page",
                        "when": "always",
                        "method": "GET",
                        "url": "https://accuhive.api.kandji.io/api/v1/devices?platform=Mac&limit=200&offset=0",
                        "query": [
                            {"name": "platform", "value": "Mac"},
                            {"name": "limit", "value": "200"},
                            {"name": "offset", "value": "0"},
                        ],
                        "headers": [
                            {"name": "accept", "value": "application/json"},
                            {"name": "user-agent", "value": "kandji-connector/0.1.0"},
                        ],
                        "body": null,
                    }],
                    "credentials": CREDENTIALS,
                    "paging": {
                        "style": "offset",
                        "page_size": 300,
                        "size_param": "limit",
                        "records_wanted": 200,
                        "max_pages": null,
                        "continues": "each further page asks for the next records with `offset` (the records read so far) and `limit`; paging stops at a page shorter than asked for or empty; reading stops once 200 records are read.",
                    },
                    "resolver": null,
                    "stream": null,
                }))),
            ),
        ),
        (status = 404, description = "No card has this id.", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "The request is invalid, exactly as invoke would say: `errors` names every offending field.", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, response = InternalError),
        (status = 501, description = "The card needs something this connector cannot do.", body = ProblemBody, content_type = "application/problem+json"),
    ),
)]
async fn preview(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    AppJson(raw): AppJson<Value>,
) -> Result<Response, Problem> {
    // The checks of invoke, in its order (src/invocation.rs): who may run the card, the
    // Idempotency-Key's form (checked, never claimed), then the body.
    let card = app.catalog.get(&id);
    if card.is_none() {
        caller.require(Scope::CardsInvoke)?;
    }
    let card = card.ok_or_else(|| Problem::not_found(format!("no card {id:?}")))?;
    invocation::may_invoke(&caller, card)?;
    if let Some(key) = headers.get("idempotency-key") {
        key.to_str()
            .ok()
            .filter(|k| !k.is_empty() && k.len() <= 255)
            .ok_or_else(|| {
                Problem::invalid(vec![FieldError::new(
                    &["headers", "Idempotency-Key"],
                    "must be 1 to 255 visible ASCII characters",
                    "idempotency_key",
                )])
            })?;
    }
    let invocation::Checked {
        prepared,
        tenant,
        stream,
    } = invocation::check(&app, card, raw).await?;

    let Plan {
        requests: planned,
        paging,
        resolver,
    } = prepared.plan(stream.as_ref().and_then(|s| s.record_limit));
    let mut requests = planned
        .into_iter()
        .map(|p| {
            let (role, lookup, when) = match p.role {
                Role::Request => ("request", None, "always"),
                Role::FirstPage => ("first_page", None, "always"),
                Role::Lookup(name) => (
                    "lookup",
                    Some(name),
                    "after the request, when Kandji accepted it (any status below 500 but 401, 403, 404 and 429)",
                ),
            };
            view(&tenant, &p.request, role, lookup, when)
        })
        .collect::<Result<Vec<_>, Problem>>()?;
    let resolver = match resolver {
        None => None,
        Some((name, args)) => {
            let r = app.resolvers.get(&name).ok_or_else(|| {
                RunError::Unsupported(format!("this server has no {name:?} resolver"))
            })?;
            let p = r.preview(&tenant, &args)?;
            for req in &p.requests {
                requests.push(view(&tenant, req, "live_lookup", None, "always")?);
            }
            Some(ResolverView {
                name,
                answer_from: p.answer_from,
            })
        }
    };
    let answer = PreviewResponse {
        dry_run: true,
        card: card.def.id.clone(),
        connection: tenant.connection_id.clone(),
        effect: card.def.effect,
        requests,
        credentials: CREDENTIALS,
        paging: paging.map(paging_view),
        resolver,
        stream: stream.map(|s| StreamView {
            delivers_to: s.origin().to_string(),
            record_limit: s.record_limit,
        }),
    };
    let mut resp = Json(answer).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// A request as the client would send it to this tenant.
fn view(
    tenant: &Tenant,
    req: &KandjiRequest,
    role: &'static str,
    lookup: Option<String>,
    when: &'static str,
) -> Result<RequestView, Problem> {
    // The client's own check: a URL that would leave the tenant's API is refused as invoke
    // would refuse it.
    let url = tenant
        .base
        .endpoint(&req.path, req.raw_query.as_deref(), &req.query)
        .map_err(KandjiError::InvalidRequest)?;
    let pair = |(name, value): (String, String)| NameValue { name, value };
    let headers = req
        .headers_without_credentials()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .map(pair)
        .collect();
    let body = match &req.body {
        RequestBody::None => None,
        RequestBody::Json(b) => Some(("json", b)),
        RequestBody::Form(b) => Some(("form", b)),
    }
    .map(|(encoding, bytes)| BodyView {
        encoding,
        content_type: req.body.content_type().unwrap_or_default(),
        text: String::from_utf8_lossy(bytes).into_owned(),
    });
    Ok(RequestView {
        role,
        lookup,
        when,
        method: req.method.to_string(),
        query: url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .map(pair)
            .collect(),
        url: url.to_string(),
        headers,
        body,
    })
}

fn paging_view(p: PagingPlan) -> PagingView {
    PagingView {
        style: match p.style {
            Paging::Offset => "offset",
            Paging::Drf => "drf",
            Paging::Page => "page",
            Paging::Cursor => "cursor",
            Paging::None => "none",
        },
        page_size: p.page_size,
        size_param: p.size_param,
        records_wanted: p.records_wanted,
        max_pages: p.max_pages,
        continues: p.continues,
    }
}
