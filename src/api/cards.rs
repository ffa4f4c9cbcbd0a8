//! The catalog (`/v1/cards`) and invocations (`/v1/cards/{id}/invoke`).

use axum::Extension;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Caller, Scope};
use super::tenants::TenantError;
use super::{AppJson, AppState};
use crate::catalog::{Card, ResultSetKind};
use crate::engine::{self, RunError};
use crate::error::{FieldError, Problem};
use crate::kandji::{KandjiError, Tenant};
use crate::store::IdempotencyClaim;
use crate::streams::{StartError, StreamRequest};
use sha2::{Digest, Sha256};

pub fn catalog_routes() -> Router<AppState> {
    Router::new()
        .route("/cards", get(list_cards))
        .route("/cards/{id}", get(get_card))
}

pub fn invoke_routes() -> Router<AppState> {
    Router::new().route("/cards/{id}/invoke", post(invoke))
}

fn summary(card: &Card) -> Value {
    let d = &card.def;
    json!({
        "id": d.id,
        "title": d.title,
        "description": d.description,
        "category": d.category,
        "result_sets": d.result_sets.iter().map(|r| json!({"id": r.id, "label": r.label})).collect::<Vec<_>>(),
        "returns_secrets": card.returns_secrets,
    })
}

async fn list_cards(State(app): State<AppState>) -> impl IntoResponse {
    let cards: Vec<Value> = app.catalog.iter().map(|c| summary(c)).collect();
    axum::Json(json!({ "cards": cards }))
}

/// What a designer needs to build a form: the card's schemas, without the engine's wiring.
pub fn designer_view(card: &Card) -> Value {
    fn strip(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(k, _)| k.as_str() != "x-source")
                    .map(|(k, v)| (k.clone(), strip(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
            other => other.clone(),
        }
    }
    let d = &card.def;
    let mut out = summary(card);
    let m = out.as_object_mut().expect("object");
    m.insert("input_schema".into(), d.input_schema.clone());
    m.insert(
        "options_schema".into(),
        d.options_schema
            .clone()
            .unwrap_or(json!({"type": "object", "properties": {}})),
    );
    m.insert("output_schema".into(), strip(&d.output_schema));
    out
}

async fn get_card(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    match app.catalog.get(&id) {
        Some(card) => axum::Json(designer_view(card)).into_response(),
        None => Problem::not_found(format!("no card {id:?}")).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvokeBody {
    pub connection: String,
    #[serde(default = "empty_object")]
    pub inputs: Value,
    #[serde(default = "empty_object")]
    pub options: Value,
}

fn empty_object() -> Value {
    json!({})
}

const IDEMPOTENCY_WINDOW_HOURS: i64 = 24;

async fn invoke(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    AppJson(raw): AppJson<Value>,
) -> Response {
    let secret = app.catalog.get(&id).is_some_and(|c| c.returns_secrets);
    if secret && let Err(p) = caller.require(Scope::SecretsRead) {
        return p.into_response();
    }
    let Some(key) = headers.get("idempotency-key") else {
        return respond(invoke_inner(&app, &id, &caller, raw).await, secret);
    };
    let key = match key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255)
    {
        Some(k) => k.to_string(),
        None => {
            return Problem::invalid(vec![FieldError::new(
                &["headers", "Idempotency-Key"],
                "must be 1 to 255 visible ASCII characters",
                "idempotency_key",
            )])
            .into_response();
        }
    };
    // serde_json's maps are ordered, so the same body always hashes the same.
    let hash = hex(&Sha256::digest(format!("{id}\n{raw}").as_bytes()));
    let not_before = chrono::Utc::now() - chrono::Duration::hours(IDEMPOTENCY_WINDOW_HOURS);
    let claim = match app
        .store
        .idempotency_claim(&caller.key_id, &key, &hash, not_before)
        .await
    {
        Ok(c) => c,
        Err(e) => return Problem::store(&e).into_response(),
    };
    match claim {
        IdempotencyClaim::Mismatch => Problem::invalid(vec![FieldError::new(
            &["headers", "Idempotency-Key"],
            "this key was already used with a different request",
            "idempotency_mismatch",
        )])
        .into_response(),
        IdempotencyClaim::InFlight => Problem::new(StatusCode::CONFLICT, "Request in progress")
            .detail("a request with this Idempotency-Key is still running; retry shortly")
            .into_response(),
        IdempotencyClaim::Done { status, response } => {
            let mut resp = replay(status, &response, secret);
            resp.headers_mut().insert(
                "idempotent-replayed",
                header::HeaderValue::from_static("true"),
            );
            resp
        }
        IdempotencyClaim::Claimed => {
            let result = invoke_inner(&app, &id, &caller, raw).await;
            let reached_kandji = match &result {
                Ok(_) => true,
                Err(p) => matches!(
                    p.status,
                    StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
                ),
            };
            if reached_kandji {
                let (status, body) = match &result {
                    Ok((status, v)) => (status.as_u16(), v.clone()),
                    Err(p) => (p.status.as_u16(), p.body_json()),
                };
                let _ = app
                    .store
                    .idempotency_complete(&caller.key_id, &key, status, &body.to_string())
                    .await;
            } else {
                let _ = app.store.idempotency_release(&caller.key_id, &key).await;
            }
            respond(result, secret)
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn respond(result: Result<(StatusCode, Value), Problem>, secret: bool) -> Response {
    match result {
        Ok((status, body)) => {
            let location = stream_location(status, &body);
            let mut resp = (status, axum::Json(body)).into_response();
            if let Some(l) = location {
                resp.headers_mut().insert(header::LOCATION, l);
            }
            if secret {
                resp.headers_mut().insert(
                    header::CACHE_CONTROL,
                    header::HeaderValue::from_static("no-store"),
                );
            }
            resp
        }
        Err(p) => p.into_response(),
    }
}

/// A started stream's status URL, for the `Location` header of its 202.
fn stream_location(status: StatusCode, body: &Value) -> Option<header::HeaderValue> {
    if status != StatusCode::ACCEPTED {
        return None;
    }
    body.get("status_url")
        .and_then(Value::as_str)
        .and_then(|u| header::HeaderValue::from_str(u).ok())
}

fn replay(status: u16, body: &str, secret: bool) -> Response {
    let ct = if (200..300).contains(&status) {
        "application/json"
    } else {
        "application/problem+json"
    };
    let mut resp = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        body.to_string(),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(ct));
    let parsed = serde_json::from_str(body).unwrap_or(Value::Null);
    if let Some(l) = stream_location(resp.status(), &parsed) {
        resp.headers_mut().insert(header::LOCATION, l);
    }
    if secret {
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    resp
}

/// Runs a card: 200 with its outputs, or, for a stream result set, 202 with the started stream.
async fn invoke_inner(
    app: &AppState,
    id: &str,
    caller: &Caller,
    raw: Value,
) -> Result<(StatusCode, Value), Problem> {
    let card = app
        .catalog
        .get(id)
        .ok_or_else(|| Problem::not_found(format!("no card {id:?}")))?;
    let body: InvokeBody = super::extract::from_value(raw)?;
    let mut errors = Vec::new();
    let tenant = match tenant_for(app, &body.connection).await {
        Ok(t) => Some(t),
        Err(TenantError::Unknown(e)) => {
            errors.push(e);
            None
        }
        Err(TenantError::Store(e)) => return Err(Problem::store(&e)),
    };
    // A stream result set's helper_flow and record_limit are the connector's options, not the
    // card's: take them out (checking the callback URL) before the card's options are validated.
    let mut options = body.options;
    let is_stream = options
        .get("result_set")
        .and_then(Value::as_str)
        .and_then(|rs| card.def.result_set(rs))
        .is_some_and(|rs| rs.kind == ResultSetKind::Stream);
    let stream = StreamRequest::take(&mut options, is_stream, &app.streams.config().allow)
        .await
        .map_err(|e| errors.extend(e))
        .ok()
        .flatten();
    let prepared = engine::prepare(card, &body.inputs, &options)
        .map_err(|e| errors.extend(e))
        .ok();
    let (Some(prepared), Some(tenant), true) = (prepared, tenant, errors.is_empty()) else {
        return Err(Problem::invalid(errors));
    };
    if let (Some(request), Some(rs)) = (stream, &prepared.result_set) {
        let started = app
            .streams
            .start(
                &caller.key_id,
                &tenant.connection_id,
                &card.def.id,
                &rs.id,
                Value::Object(prepared.inputs.clone()),
                Value::Object(prepared.options.clone()),
                request,
            )
            .await
            .map_err(|e| match e {
                StartError::ShuttingDown => {
                    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Shutting down")
                        .detail("the connector is shutting down; start the stream again")
                        .retry_after(5)
                }
                StartError::TooMany(n) => {
                    Problem::new(StatusCode::TOO_MANY_REQUESTS, "Too many streams")
                        .detail(format!("{n} streams are running, the most this connector runs at once; wait for one to finish or cancel one"))
                        .retry_after(30)
                }
                StartError::Store(e) => Problem::store(&e),
            })?;
        let body = json!({
            "stream_id": started.id,
            "status_url": super::streams::status_url(&started.id),
        });
        return Ok((StatusCode::ACCEPTED, body));
    }
    let outputs = engine::run_with(&app.kandji, &tenant, &prepared, &app.resolvers)
        .await
        .map_err(|e| match e {
            RunError::Unsupported(m) => Problem::not_implemented(m),
            RunError::Invalid(errors) => Problem::invalid(errors),
            RunError::Kandji(k) => kandji_problem(&k),
        })?;
    Ok((StatusCode::OK, json!({ "outputs": outputs })))
}

/// The connection's tenant, through the short-lived cache.
pub async fn tenant_for(app: &AppState, connection: &str) -> Result<Tenant, TenantError> {
    app.tenants.get(app.store.as_ref(), connection).await
}

pub fn kandji_problem(e: &KandjiError) -> Problem {
    match e {
        KandjiError::Timeout(_) => Problem::new(StatusCode::GATEWAY_TIMEOUT, "Kandji did not answer in time").detail(e.to_string()),
        KandjiError::Unreachable(_) | KandjiError::TooLarge(_) => {
            Problem::new(StatusCode::BAD_GATEWAY, "Kandji could not be reached").detail(e.to_string())
        }
        KandjiError::InvalidRequest(m) => Problem::bad_request(m.clone()),
        KandjiError::Throttled(wait) => Problem::new(StatusCode::TOO_MANY_REQUESTS, "Kandji request budget spent")
            .detail("this connection's share of the tenant's hourly Kandji quota is used up for now; retry later")
            .retry_after(wait.as_secs_f64().ceil().max(1.0) as u64),
    }
}
