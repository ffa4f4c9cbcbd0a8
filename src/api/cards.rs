//! The catalog (`/v1/cards`) and invocations (`/v1/cards/{id}/invoke`).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppJson, AppState};
use crate::catalog::{Card, ResultSetKind};
use crate::engine::{self, RunError};
use crate::error::{FieldError, Problem};
use crate::kandji::{ApiBaseUrl, KandjiError, Tenant};
use crate::streams::{StartError, StreamRequest};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/cards", get(list_cards))
        .route("/cards/{id}", get(get_card))
        .route("/cards/{id}/invoke", post(invoke))
}

fn summary(card: &Card) -> Value {
    let d = &card.def;
    json!({
        "id": d.id,
        "title": d.title,
        "description": d.description,
        "category": d.category,
        "result_sets": d.result_sets.iter().map(|r| json!({"id": r.id, "label": r.label})).collect::<Vec<_>>(),
        "returns_secrets": d.has_secret_outputs(),
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
    m.insert("options_schema".into(), d.options_schema.clone().unwrap_or(json!({"type": "object", "properties": {}})));
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

async fn invoke(State(app): State<AppState>, Path(id): Path<String>, AppJson(body): AppJson<InvokeBody>) -> Response {
    match invoke_inner(&app, &id, body).await {
        Ok(resp) => resp,
        Err(p) => p.into_response(),
    }
}

async fn invoke_inner(app: &AppState, id: &str, body: InvokeBody) -> Result<Response, Problem> {
    let card = app.catalog.get(id).ok_or_else(|| Problem::not_found(format!("no card {id:?}")))?;
    let mut errors = Vec::new();
    let tenant = match tenant_for(app, &body.connection).await {
        Ok(t) => Some(t),
        Err(Some(e)) => {
            errors.push(e);
            None
        }
        Err(None) => return Err(Problem::internal("the store could not be read")),
    };
    // A stream result set's helper_flow and record_limit are the connector's options, not the
    // card's: take them out (and check the callback URL) before the card's options are validated.
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
    let prepared = engine::prepare(card, &body.inputs, &options).map_err(|e| errors.extend(e)).ok();
    let (Some(prepared), Some(tenant), true) = (prepared, tenant, errors.is_empty()) else {
        return Err(Problem::invalid(errors));
    };
    if let (Some(request), Some(rs)) = (stream, &prepared.result_set) {
        let started = app
            .streams
            .start(&tenant.connection_id, &card.def.id, &rs.id, Value::Object(prepared.inputs.clone()), Value::Object(prepared.options.clone()), request)
            .await
            .map_err(|e| match e {
                StartError::ShuttingDown => Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Shutting down").detail("the connector is shutting down; start the stream again").retry_after(5),
                StartError::Store(e) => {
                    tracing::error!(error = %e, "cannot record a stream");
                    Problem::internal("the stream could not be recorded")
                }
            })?;
        let url = super::streams::status_url(&started.id);
        let mut resp = (StatusCode::ACCEPTED, axum::Json(json!({"stream_id": started.id, "status_url": url}))).into_response();
        if let Ok(v) = header::HeaderValue::from_str(&url) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        return Ok(resp);
    }
    let outputs = engine::run(&app.kandji, &tenant, &prepared).await.map_err(|e| match e {
        RunError::Unsupported(m) => Problem::not_implemented(m),
        RunError::Kandji(k) => kandji_problem(&k),
    })?;
    let mut resp = axum::Json(json!({ "outputs": outputs })).into_response();
    if card.def.has_secret_outputs() {
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    }
    Ok(resp)
}

/// The connection's tenant; `Err(Some(field error))` when unknown, `Err(None)` when the store failed.
pub async fn tenant_for(app: &AppState, connection: &str) -> Result<Tenant, Option<FieldError>> {
    let unknown = || Some(FieldError::new(&["connection"], "no such connection", "unknown_connection"));
    let conn = app.store.get_connection(connection).await.map_err(|_| None)?.ok_or_else(unknown)?;
    let token = app.store.connection_token(connection).await.map_err(|_| None)?.ok_or_else(unknown)?;
    let base = ApiBaseUrl::parse(&conn.api_url).map_err(|_| None)?;
    Ok(Tenant {
        connection_id: conn.id,
        base,
        token,
    })
}

pub fn kandji_problem(e: &KandjiError) -> Problem {
    match e {
        KandjiError::Timeout(_) => Problem::new(StatusCode::GATEWAY_TIMEOUT, "Kandji did not answer in time").detail(e.to_string()),
        KandjiError::Unreachable(_) | KandjiError::TooLarge(_) => {
            Problem::new(StatusCode::BAD_GATEWAY, "Kandji could not be reached").detail(e.to_string())
        }
        KandjiError::InvalidRequest(m) => Problem::bad_request(m.clone()),
    }
}
