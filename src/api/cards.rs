//! The catalog (`/v1/cards`) and invocations (`/v1/cards/{id}/invoke`).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::openapi::{BudgetSpent, InFlight, InternalError, KandjiTimeout, KandjiUnreachable};
use super::{AppJson, AppState};
use crate::catalog::{Card, Effect, ResultSetKind, strip_sources};
use crate::error::{Problem, ProblemBody};
use crate::invocation::{self, Surface};

pub fn catalog_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_cards))
        .routes(routes!(get_card))
}

pub fn invoke_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(invoke))
}

/// One way a list card can answer; pass its `id` as `options.result_set`.
#[derive(Serialize, ToSchema)]
struct ResultSetSummary<'a> {
    #[schema(examples("first_200_matching_records"))]
    id: &'a str,
    #[schema(examples("First 200 Matching Records"))]
    label: &'a str,
    /// `first`: the records come back in the invocation's answer; `stream`: they are POSTed
    /// to `options.helper_flow`, one by one (202, see `GET /v1/streams/{id}`).
    kind: ResultSetKind,
}

#[derive(Serialize, ToSchema)]
struct CardSummary<'a> {
    /// Stable snake_case identifier, used in the card's URLs.
    #[schema(examples("lock_device"))]
    id: &'a str,
    #[schema(examples("Lock Device"))]
    title: &'a str,
    description: &'a str,
    /// Grouping for the designer's menu.
    #[schema(examples("Device actions"))]
    category: &'a str,
    /// What running the card does to the tenant: `read`, `change` (can be changed back) or
    /// `destructive` (wipes, locks, restarts, removes or disrupts devices, or may do anything).
    effect: Effect,
    /// Whether running the card again with the same inputs has no further effect.
    idempotent: bool,
    /// For list cards, the result sets `options.result_set` may pick; empty for other cards.
    result_sets: Vec<ResultSetSummary<'a>>,
    /// Whether some output is a secret (PIN, FileVault key, bypass code); such invocations are
    /// answered with `Cache-Control: no-store`.
    returns_secrets: bool,
}

impl<'a> CardSummary<'a> {
    fn of(card: &'a Card) -> Self {
        let d = &card.def;
        Self {
            id: &d.id,
            title: &d.title,
            description: &d.description,
            category: &d.category,
            effect: d.effect,
            idempotent: d.is_idempotent(),
            result_sets: d
                .result_sets
                .iter()
                .map(|r| ResultSetSummary {
                    id: &r.id,
                    label: &r.label,
                    kind: r.kind,
                })
                .collect(),
            returns_secrets: card.returns_secrets,
        }
    }
}

#[derive(Serialize, ToSchema)]
struct CardList<'a> {
    cards: Vec<CardSummary<'a>>,
}

/// A card's summary plus its schemas.
#[derive(Serialize, ToSchema)]
struct CardDetail<'a> {
    #[serde(flatten)]
    summary: CardSummary<'a>,
    /// JSON Schema (2020-12) of `inputs`; always `additionalProperties: false`. Every property
    /// has a `title` (the designer's label).
    #[schema(value_type = Object)]
    input_schema: &'a Value,
    /// JSON Schema of `options` (e.g. `result_set`); `{"type": "object", "properties": {}}` for
    /// a card without options.
    #[schema(value_type = Object)]
    options_schema: Value,
    /// JSON Schema of `outputs`. `x-secret: true` marks a secret; `x-result-sets` lists the
    /// result sets an output appears for; `x-when` shows an output only when an option has a
    /// value. `status_code` is always present and `error` is added when Kandji answered 4xx/5xx.
    #[schema(value_type = Object)]
    output_schema: Value,
}

/// What a designer needs to build a form: the card's schemas, without the engine's wiring.
fn designer_view(card: &Card) -> CardDetail<'_> {
    let d = &card.def;
    CardDetail {
        summary: CardSummary::of(card),
        input_schema: &d.input_schema,
        options_schema: d
            .options_schema
            .clone()
            .unwrap_or(json!({"type": "object", "properties": {}})),
        output_schema: strip_sources(&d.output_schema),
    }
}

/// List the cards
///
/// Every card of the catalog, in catalog order, without its schemas.
#[utoipa::path(get, path = "/cards", tag = "cards", operation_id = "listCards", responses(
    (status = 200, description = "The catalog.", body = CardList, example = json!({"cards": [
        {
            "id": "list_devices",
            "title": "List Devices",
            "description": "Get a list of all enrolled devices. Optional query parameters can be specified to filter the results. All search fields are optional.",
            "category": "Devices",
            "effect": "read",
            "idempotent": true,
            "result_sets": [
                {"id": "first_matching_record", "label": "First Matching Record", "kind": "first"},
                {"id": "first_200_matching_records", "label": "First 200 Matching Records", "kind": "first"},
                {"id": "stream_matching_records", "label": "Stream Matching Records", "kind": "stream"},
            ],
            "returns_secrets": false,
        },
        {
            "id": "lock_device",
            "title": "Lock Device",
            "description": "Send an MDM command to lock a device. For a Mac computer, a 6-digit PIN will be returned.",
            "category": "Device actions",
            "effect": "destructive",
            "idempotent": false,
            "result_sets": [],
            "returns_secrets": true,
        },
    ]})),
))]
async fn list_cards(State(app): State<AppState>) -> Response {
    let cards = app.catalog.iter().map(|c| CardSummary::of(c)).collect();
    Json(CardList { cards }).into_response()
}

/// The card's id, in the path.
#[derive(IntoParams)]
#[into_params(names("id"), parameter_in = Path)]
#[allow(dead_code)]
struct CardId(
    /// The card's id, as listed by `GET /v1/cards`.
    #[param(example = "lock_device")]
    String,
);

/// Get one card with its schemas
///
/// What a designer needs to build the card's form: the summary plus `input_schema`,
/// `options_schema` and `output_schema` (JSON Schema 2020-12). The engine's wiring (`x-source`)
/// is stripped from the output schema; `x-secret`, `x-result-sets` and `x-when` remain (see
/// docs/card-format.md).
#[utoipa::path(get, path = "/cards/{id}", tag = "cards", operation_id = "getCard", params(CardId), responses(
    (status = 200, description = "The card.", body = CardDetail, example = json!({
        "id": "lock_device",
        "title": "Lock Device",
        "description": "Send an MDM command to lock a device. For a Mac computer, a 6-digit PIN will be returned.",
        "category": "Device actions",
        "effect": "destructive",
        "idempotent": false,
        "result_sets": [],
        "returns_secrets": true,
        "input_schema": {
            "type": "object",
            "additionalProperties": false,
            "required": ["device_id"],
            "properties": {"device_id": {
                "title": "Device ID", "type": "string", "minLength": 1,
                "description": "Kandji-specific device ID of the Mac computer to send the MDM command to",
            }},
        },
        "options_schema": {"type": "object", "properties": {}},
        "output_schema": {"type": "object", "properties": {
            "pin": {"title": "PIN", "type": ["string", "null"], "description": "Lock PIN for Mac computer", "x-secret": true},
            "status_code": {"title": "Status Code", "type": "integer", "description": "HTTP status Kandji answered with"},
        }},
    })),
))]
async fn get_card(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let card = app.catalog.get(&id).ok_or_else(|| no_card(&id))?;
    Ok(Json(designer_view(card)).into_response())
}

fn no_card(id: &str) -> Problem {
    Problem::not_found(format!("no card {id:?}"))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = InvokeRequest)]
pub struct InvokeBody {
    /// Id of the connection (Kandji tenant) to run the card against.
    #[schema(examples("conn_5f0c2b7d9a8e4c1f8b3a6d2e1c0f9a7b"))]
    pub connection: String,
    /// The card's inputs, validated against its `input_schema`. Defaults to `{}`.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object, default = json!({}))]
    pub inputs: Value,
    /// The card's options, validated against its `options_schema` (e.g. `{"result_set":
    /// "first_matching_record"}`). Defaults to `{}`; a card without options accepts none. For a
    /// stream result set, also `helper_flow` and `record_limit` (see `HelperFlow`); they are
    /// refused with any other result set.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object, default = json!({}))]
    pub options: Value,
}

fn empty_object() -> Value {
    json!({})
}

/// Where a stream delivers (`options.helper_flow`). Never returned and stored only encrypted;
/// erased when the stream ends. (Read by `StreamRequest::take`; documented here.)
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(super) struct HelperFlow {
    /// https URL each record is POSTed to. Plain http and non-public targets only for
    /// hosts/networks in `KANDJI_CONNECTOR_CALLBACK_ALLOW`. Redirects are not followed.
    #[schema(format = "uri")]
    url: String,
    /// Standard Webhooks secret: `whsec_` and the base64 of a 24 to 64 byte key. When given,
    /// every callback carries `webhook-signature`.
    #[schema(pattern = "^whsec_")]
    secret: Option<String>,
    /// Any JSON (at most 16 KiB), passed through as `state` in every callback.
    state: Option<Value>,
}

/// An invocation's answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct InvokeResponse {
    #[schema(value_type = Outputs)]
    pub outputs: serde_json::Map<String, Value>,
}

/// The card's outputs, as described by its `output_schema` (only those shown for the chosen
/// result set and options), plus `status_code` and, on 4xx/5xx from Kandji, `error`. Values are
/// coerced to their declared types. (Built by the engine; documented here.)
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
struct Outputs {
    /// The HTTP status Kandji answered with (404 too when a card's name lookup matched no
    /// record).
    #[schema(examples(200))]
    status_code: u16,
    /// Kandji's message, present only when `status_code` is 400 or more.
    #[schema(examples("Not found."), nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The card's own outputs.
    #[serde(flatten)]
    outputs: std::collections::HashMap<String, Value>,
}

/// A stream result set's answer: the stream was recorded and started.
#[derive(Serialize, ToSchema)]
pub(crate) struct StreamStarted {
    pub stream_id: String,
    pub status_url: String,
}

/// The Idempotency-Key header.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct IdempotencyKey {
    /// Makes the invocation safe to retry: a repeat with the same key and body within 24 hours
    /// gets the first answer again (with `Idempotent-Replayed: true`) without touching Kandji;
    /// the same key with a different body gets 422 (`idempotency_mismatch`). Keys are scoped to
    /// the API key. 1 to 255 visible ASCII characters.
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 255,
        nullable = false
    )]
    idempotency_key: Option<String>,
}

/// Invoke a card against a connection
///
/// Validates `inputs` and `options` against the card's schemas and rules, sends the card's request(s) to the connection's Kandji tenant, and maps Kandji's answer to the card's outputs.
///
/// Whenever Kandji answered, the result is 200 with `outputs`, even when Kandji answered 4xx or 5xx: `outputs.status_code` is Kandji's HTTP status and `outputs.error` is Kandji's message when that status is 400 or more. Branch on `outputs.status_code`, not on the HTTP status of this response.
///
/// List cards take `options.result_set`, one of the card's `result_sets` ids. A result set of kind `stream` (e.g. List Devices' `stream_matching_records`, List Blueprints' `stream_all_records`; `GET /v1/cards/{id}` shows each card's) also takes `options.helper_flow` (`{"url", "secret": "whsec_…", "state"}`, see `HelperFlow`) and `options.record_limit` (absent: every record; 0: none), and is answered at once with 202 and the stream's id and `status_url` (also in `Location`). The stream then POSTs each record to `helper_flow.url` as `{"stream_id", "index", "record", "state"}` with Standard Webhooks headers (`webhook-id` stable per record, `webhook-timestamp`, and `webhook-signature: v1,<base64 HMAC-SHA256>` when a secret was given); see `GET /v1/streams/{id}`. The callback URL must be https unless its host or network is listed in `KANDJI_CONNECTOR_CALLBACK_ALLOW`, and may not be or resolve to a loopback, private, link-local or otherwise non-public address (422 at `options.helper_flow.url`, before anything is sent).
///
/// Each request to Kandji draws on the connection's hourly budget (`requests_per_hour`); when none is available within a short wait, the invocation stops there with 429 and `Retry-After`. A stream result set is also refused with 429 while `KANDJI_CONNECTOR_MAX_STREAMS` streams run. Safe requests (GETs) are retried on transient failures and on Kandji's 429; commands are not re-sent after a 5xx or a timeout.
///
/// The response of a card that returns secrets (`returns_secrets: true`, e.g. a lock PIN or a FileVault recovery key) carries `Cache-Control: no-store`.
///
/// Cards whose outputs are secrets (FileVault key, PINs, bypass codes, recovery lock password) also need the `secrets:read` scope.
#[utoipa::path(
    post,
    path = "/cards/{id}/invoke",
    tag = "cards",
    operation_id = "invokeCard",
    params(CardId, IdempotencyKey),
    request_body(content = InvokeBody, examples(
        ("lock_device" = (summary = "POST /v1/cards/lock_device/invoke", value = json!({
            "connection": "conn_5f0c2b7d9a8e4c1f8b3a6d2e1c0f9a7b",
            "inputs": {"device_id": "4b6b1d43-2a9e-4c56-9d8f-0e5b3c7a1f22"},
            "options": {},
        }))),
        ("list_devices_first_match" = (summary = "POST /v1/cards/list_devices/invoke (first matching record)", value = json!({
            "connection": "conn_5f0c2b7d9a8e4c1f8b3a6d2e1c0f9a7b",
            "inputs": {"serial_number": "C02XK1ZZJG5H"},
            "options": {"result_set": "first_matching_record"},
        }))),
        ("list_devices_first_200" = (summary = "POST /v1/cards/list_devices/invoke (first 200 matching records)", value = json!({
            "connection": "conn_5f0c2b7d9a8e4c1f8b3a6d2e1c0f9a7b",
            "inputs": {"platform": "Mac"},
            "options": {"result_set": "first_200_matching_records"},
        }))),
        ("list_devices_stream" = (summary = "POST /v1/cards/list_devices/invoke (stream every Mac to a helper flow)", value = json!({
            "connection": "conn_5f0c2b7d9a8e4c1f8b3a6d2e1c0f9a7b",
            "inputs": {"platform": "Mac"},
            "options": {
                "result_set": "stream_matching_records",
                "record_limit": 5000,
                "helper_flow": {
                    "url": "https://acme.workflows.okta.com/api/flo/3f2a9c/invoke?clientToken=…",
                    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                    "state": {"run": "offboarding-42"},
                },
            },
        }))),
    )),
    responses(
        (status = 200, description = "Kandji answered (with any status); its answer mapped to the card's outputs.", body = InvokeResponse,
            headers(("Cache-Control" = String, description = "`no-store` on the responses of cards that return secrets (`returns_secrets: true`); absent otherwise.")),
            examples(
                ("lock_device" = (summary = "lock_device: Kandji accepted the command (sent with Cache-Control: no-store)", value = json!({"outputs": {"pin": "482913", "status_code": 200}}))),
                ("lock_device_unknown_device" = (summary = "lock_device: Kandji answered 404", value = json!({"outputs": {"pin": null, "status_code": 404, "error": "Not found."}}))),
                ("list_devices_first_match" = (summary = "list_devices with options.result_set = first_matching_record", value = json!({"outputs": {
                    "status_code": 200,
                    "device_id": "4b6b1d43-2a9e-4c56-9d8f-0e5b3c7a1f22",
                    "device_name": "Ada's MacBook Pro",
                    "model": "MacBook Pro (14-inch, 2023)",
                    "serial_number": "C02XK1ZZJG5H",
                    "platform": "Mac",
                    "os_version": "14.5",
                    "last_check_in": "2024-06-03T09:12:44.512000+00:00",
                    "user": {"email": "ada@example.com", "name": "Ada Lovelace", "id": "7c1e2f5a-3b4d-4e6f-8a9b-0c1d2e3f4a5b", "is_archived": false},
                    "asset_tag": null,
                    "blueprint_id": "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d",
                    "agent_installed": true,
                    "is_missing": false,
                    "is_removed": false,
                    "agent_version": "4.2.1",
                    "first_enrollment": "2023-11-20T15:02:10.000000+00:00",
                    "last_enrollment": "2023-11-20T15:02:10.000000+00:00",
                    "blueprint_name": "Engineering",
                }}))),
                ("list_devices_first_200" = (summary = "list_devices with options.result_set = first_200_matching_records", value = json!({"outputs": {
                    "status_code": 200,
                    "devices": [{
                        "device_id": "4b6b1d43-2a9e-4c56-9d8f-0e5b3c7a1f22",
                        "device_name": "Ada's MacBook Pro",
                        "serial_number": "C02XK1ZZJG5H",
                        "platform": "Mac",
                        "os_version": "14.5",
                        "last_check_in": "2024-06-03T09:12:44.512000+00:00",
                    }],
                }}))),
            ),
        ),
        (status = 202, description = "A stream result set: the stream was recorded and started.", body = StreamStarted,
            headers(("Location" = String, description = "The stream's status URL.")),
            example = json!({
                "stream_id": "str_0b7c2f4e9d1a4c3b8e6f5a2d1c0b9e8f",
                "status_url": "/v1/streams/str_0b7c2f4e9d1a4c3b8e6f5a2d1c0b9e8f",
            }),
        ),
        (status = 404, description = "No card has this id.", body = ProblemBody, content_type = "application/problem+json", example = json!({
            "type": "about:blank", "title": "Not found", "status": 404, "detail": "no card \"lock_devices\"",
        })),
        (status = 409, response = InFlight),
        (status = 422, description = "The request is invalid; `errors` names every offending field: an unknown `connection` (`loc: [\"connection\"]`), a missing, unknown or ill-typed input (`loc: [\"inputs\", <name>]`) or option (`loc: [\"options\", <name>]`, e.g. an unknown `result_set`), a value that cannot go in Kandji's URL, a body with unknown top-level fields, or an Idempotency-Key that is malformed or was used with another body. Offending values are never echoed back.",
            body = ProblemBody, content_type = "application/problem+json", examples(
                ("lock_device" = (summary = "lock_device with an unknown connection and no device_id", value = json!({
                    "type": "about:blank", "title": "Invalid request", "status": 422,
                    "detail": "connection: no such connection; inputs.device_id: is required",
                    "errors": [
                        {"loc": ["connection"], "msg": "no such connection", "type": "unknown_connection"},
                        {"loc": ["inputs", "device_id"], "msg": "is required", "type": "required"},
                    ],
                }))),
                ("list_devices" = (summary = "list_devices without options.result_set", value = json!({
                    "type": "about:blank", "title": "Invalid request", "status": 422,
                    "detail": "options.result_set: is required",
                    "errors": [{"loc": ["options", "result_set"], "msg": "is required", "type": "required"}],
                }))),
            ),
        ),
        (status = 429, response = BudgetSpent),
        (status = 500, response = InternalError),
        (status = 501, description = "The card needs something this connector cannot do.", body = ProblemBody, content_type = "application/problem+json"),
        (status = 502, response = KandjiUnreachable),
        (status = 503, description = "The connector is shutting down and takes no new stream, or its database cannot be reached (`Store unavailable`); retry after `Retry-After` seconds.",
            body = ProblemBody, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying.")),
            example = json!({"type": "about:blank", "title": "Shutting down", "status": 503, "detail": "the connector is shutting down; start the stream again"}),
        ),
        (status = 504, response = KandjiTimeout),
    ),
)]
async fn invoke(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    AppJson(raw): AppJson<Value>,
) -> Response {
    // A header that is not text is refused like any malformed key.
    let key = headers
        .get("idempotency-key")
        .map(|k| k.to_str().unwrap_or_default());
    let key = key.map(|key| invocation::IdempotencyKey {
        key,
        loc: &["headers", "Idempotency-Key"],
    });
    let answer = invocation::invoke(&app, &caller, &id, raw, key, Surface::Http).await;
    let mut resp = match answer.result {
        Ok((status, body)) if answer.replayed => {
            let mut resp = replay(status, &body, answer.secret);
            resp.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            resp
        }
        Ok(answer_body) => respond(answer_body, answer.secret),
        Err(p) => p.into_response(),
    };
    if let Some(f) = answer.unshown {
        resp.extensions_mut().insert(f);
    }
    resp
}

fn respond((status, body): (StatusCode, Value), secret: bool) -> Response {
    let resp = (status, Json(&body)).into_response();
    with_headers(resp, &body, secret)
}

/// The first answer again, as it was stored (a stored problem keeps its content type).
fn replay(status: StatusCode, body: &Value, secret: bool) -> Response {
    let ct = if status.is_success() {
        "application/json"
    } else {
        "application/problem+json"
    };
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    with_headers(resp, body, secret)
}

/// A started stream's `Location`, and `Cache-Control: no-store` on a card that returns secrets.
fn with_headers(mut resp: Response, body: &Value, secret: bool) -> Response {
    let location = (resp.status() == StatusCode::ACCEPTED)
        .then(|| body.get("status_url").and_then(Value::as_str))
        .flatten()
        .and_then(|u| HeaderValue::from_str(u).ok());
    if let Some(l) = location {
        resp.headers_mut().insert(header::LOCATION, l);
    }
    if secret {
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}
