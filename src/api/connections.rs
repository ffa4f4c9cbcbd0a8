//! Kandji tenants (`/v1/connections`): register, verify, list, change, remove. Tokens never leave.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::{BudgetSpent, ConnectionInvalid, InternalError, KandjiUnreachable};
use super::{AppJson, AppState};
use crate::error::{FieldError, Problem};
use crate::kandji::{ApiBaseUrl, ApiPath, BudgetReport, KandjiError, KandjiRequest, Tenant};
use crate::store::{Connection, ConnectionPatch, NewConnection};
use crate::trust::InventoryStatus;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, update, remove))
}

/// A registered Kandji tenant. Its API token is write-only and never part of a response.
#[derive(Serialize, ToSchema)]
#[schema(as = Connection, example = json!({
        "id": "conn_5f0c2b7d9a8e4c1f8b3a6d2e1c0f9a7b",
        "name": "Accuhive production",
        "api_url": "https://accuhive.api.kandji.io",
        "requests_per_hour": null,
        "inventory_sync": false,
        "created_at": "2024-06-01T08:30:00.123456Z",
        "updated_at": "2024-06-01T08:30:00.123456Z",
    }))]
pub(crate) struct View<'a> {
    /// `conn_` followed by a hyphenless UUID v4.
    #[schema(
        pattern = "^conn_[0-9a-f]{32}$",
        examples("conn_5f0c2b7d9a8e4c1f8b3a6d2e1c0f9a7b")
    )]
    id: &'a str,
    #[schema(examples("Accuhive production"))]
    name: &'a str,
    /// The tenant's API origin, normalised (no path).
    #[schema(format = "uri", examples("https://accuhive.api.kandji.io"))]
    api_url: &'a str,
    /// Cap on the requests per hour the connector sends to Kandji for this connection; null
    /// when not set, in which case the default of 10,000 (Kandji's documented per-tenant
    /// limit) applies.
    #[schema(required = true, minimum = 1)]
    requests_per_hour: Option<u32>,
    /// Whether a background sync keeps a device inventory of this tenant for device-trust
    /// lookups (`GET /v1/connections/{id}/device-trust`, card `get_device_trust`).
    inventory_sync: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

pub(crate) fn connection_view(c: &Connection) -> View<'_> {
    View {
        id: &c.id,
        name: &c.name,
        api_url: &c.api_url,
        requests_per_hour: c.requests_per_hour,
        inventory_sync: c.inventory_sync,
        created_at: c.created_at,
        updated_at: c.updated_at,
    }
}

#[derive(Serialize, ToSchema)]
struct ConnectionList<'a> {
    connections: Vec<View<'a>>,
}

/// A connection with its current request budget and, when `inventory_sync` is on, its device
/// inventory.
#[derive(Serialize, ToSchema)]
struct ConnectionDetail<'a> {
    #[serde(flatten)]
    connection: View<'a>,
    budget: BudgetReport,
    /// null when `inventory_sync` is off.
    #[schema(required = true)]
    inventory: Option<InventoryStatus>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ConnectionCreate)]
struct CreateBody {
    /// Display name; surrounding whitespace is trimmed.
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    /// The tenant's API address: `https://<tenant>.api.kandji.io` (optionally ending in
    /// `/api/v1`), the host alone, or just `<tenant>` for `https://<tenant>.api.kandji.io`. Must
    /// be a Kandji API host (e.g. `*.api.kandji.io`, `*.api.eu.kandji.io`, `*.api.iru.com`) over
    /// https; http is accepted only for a loopback simulator.
    #[schema(examples("https://accuhive.api.kandji.io", "accuhive"))]
    api_url: String,
    /// Kandji API token (needs at least the Device list permission). Stored encrypted; never
    /// returned or logged.
    #[schema(value_type = String, write_only, min_length = 1, max_length = 4096, pattern = r"^\S+$")]
    api_token: SecretString,
    /// Optional cap on the requests per hour the connector sends to Kandji for this connection
    /// (e.g. this connection's share of a tenant shared with other tools); omitted or null
    /// means 10,000.
    #[serde(default)]
    #[schema(minimum = 1)]
    requests_per_hour: Option<u32>,
    /// Keep a device inventory for device-trust lookups: a background sync reads the whole
    /// device list (300 devices a request) every sync interval
    /// (`KANDJI_CONNECTOR_INVENTORY_INTERVAL_MS`, default 5 minutes) within this connection's
    /// budget.
    #[serde(default)]
    inventory_sync: bool,
}

/// Only the fields sent are changed.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ConnectionUpdate)]
struct UpdateBody {
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
    /// As on create. Changing it re-verifies the connection with Kandji.
    #[serde(default)]
    api_url: Option<String>,
    /// A new Kandji API token; verified with Kandji before it replaces the old one. Never
    /// returned.
    #[serde(default)]
    #[schema(value_type = Option<String>, write_only, min_length = 1, max_length = 4096, pattern = r"^\S+$")]
    api_token: Option<SecretString>,
    /// A new cap on requests per hour, or null to clear it (back to 10,000).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>, minimum = 1)]
    requests_per_hour: Option<Option<u32>>,
    /// Turn the device inventory on (a first sync starts at once) or off (the inventory is
    /// forgotten and device-trust lookups go to Kandji).
    #[serde(default)]
    inventory_sync: Option<bool>,
}

/// The connection's id, in the path.
#[derive(IntoParams)]
#[into_params(names("id"), parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct ConnectionId(
    /// The connection's id, as returned when it was created.
    #[param(example = "conn_5f0c2b7d9a8e4c1f8b3a6d2e1c0f9a7b")]
    String,
);

fn no_connection(id: &str) -> Problem {
    Problem::not_found(format!("no connection {id:?}"))
}

fn double_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    Option::<u32>::deserialize(d).map(Some)
}

fn check_name(name: &str, errors: &mut Vec<FieldError>) {
    if name.trim().is_empty() || name.len() > 200 {
        errors.push(FieldError::new(
            &["name"],
            "must be 1 to 200 characters",
            "name",
        ));
    }
}

fn check_token(token: &SecretString, errors: &mut Vec<FieldError>) {
    use secrecy::ExposeSecret;
    let t = token.expose_secret();
    if t.trim().is_empty()
        || t.len() > 4096
        || t.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        errors.push(FieldError::new(
            &["api_token"],
            "must be a non-empty token without spaces",
            "token",
        ));
    }
}

fn check_rate(rate: Option<u32>, errors: &mut Vec<FieldError>) {
    if rate == Some(0) {
        errors.push(FieldError::new(
            &["requests_per_hour"],
            "must be at least 1",
            "range",
        ));
    }
}

/// One cheap read proves the host answers and the token may list devices.
async fn verify(
    app: &AppState,
    id: &str,
    base: &ApiBaseUrl,
    token: &SecretString,
    per_hour: Option<u32>,
) -> Result<(), Problem> {
    // Verification counts against the connection's own budget (a new connection gets a fresh one).
    let tenant = Tenant::new(id, base.clone(), token.clone(), per_hour);
    let mut req =
        KandjiRequest::get(ApiPath::from_template("/devices", |_| None).expect("static path"));
    req.query.push(("limit".into(), "1".into()));
    match app.kandji.send(&tenant, &req).await {
        Ok(r) if r.is_success() => Ok(()),
        Ok(r) if r.status == 401 || r.status == 403 => {
            Err(Problem::invalid(vec![FieldError::new(
                &["api_token"],
                format!(
                    "Kandji refused the token ({}): check the token, and that it has the Device list permission",
                    r.status
                ),
                "kandji_auth",
            )]))
        }
        Ok(r) => Err(Problem::invalid(vec![FieldError::new(
            &["api_url"],
            format!(
                "Kandji answered {} to GET /api/v1/devices?limit=1; check the API URL",
                r.status
            ),
            "kandji_status",
        )])),
        Err(e @ (KandjiError::Unreachable(_) | KandjiError::Timeout(_))) => {
            Err(Problem::invalid(vec![FieldError::new(
                &["api_url"],
                format!("{e}; check the API URL (e.g. https://<tenant>.api.kandji.io)"),
                "unreachable",
            )]))
        }
        Err(e) => Err(e.into()),
    }
}

/// Register a Kandji tenant
///
/// Checks the fields, then proves the URL and token with one cheap read
/// (`GET /api/v1/devices?limit=1`) before storing anything. The token is stored encrypted and never
/// returned. When Kandji refuses the token (401 or 403), answers another error status, or
/// cannot be reached, the answer is 422 naming `api_token` or `api_url`.
#[utoipa::path(post, path = "/connections", tag = "connections", operation_id = "createConnection",
    request_body(content = CreateBody, example = json!({
        "name": "Accuhive production",
        "api_url": "https://accuhive.api.kandji.io",
        "api_token": "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
    })),
    responses(
        (status = 201, description = "The connection was verified and stored.", body = View),
        (status = 422, response = ConnectionInvalid),
        (status = 429, response = BudgetSpent),
        (status = 500, response = InternalError),
        (status = 502, response = KandjiUnreachable),
    ),
)]
async fn create(
    State(app): State<AppState>,
    AppJson(body): AppJson<CreateBody>,
) -> Result<Response, Problem> {
    let mut errors = Vec::new();
    check_name(&body.name, &mut errors);
    check_token(&body.api_token, &mut errors);
    check_rate(body.requests_per_hour, &mut errors);
    let base = ApiBaseUrl::parse(&body.api_url)
        .map_err(|m| errors.push(FieldError::new(&["api_url"], m, "api_url")))
        .ok();
    let Some(base) = base.filter(|_| errors.is_empty()) else {
        return Err(errors.into());
    };
    verify(
        &app,
        "new-connection",
        &base,
        &body.api_token,
        body.requests_per_hour,
    )
    .await?;
    let mut conn = app
        .store
        .create_connection(NewConnection {
            name: body.name.trim().to_string(),
            api_url: base.to_string(),
            api_token: body.api_token,
            requests_per_hour: body.requests_per_hour,
        })
        .await?;
    if body.inventory_sync {
        let patch = ConnectionPatch {
            inventory_sync: Some(true),
            ..Default::default()
        };
        if let Some(c) = app.store.update_connection(&conn.id, patch).await? {
            conn = c;
        }
        app.trust.enable(&conn.id).await?;
    }
    Ok((StatusCode::CREATED, Json(connection_view(&conn))).into_response())
}

/// List the connections
///
/// Every registered Kandji tenant. Tokens are never returned.
#[utoipa::path(get, path = "/connections", tag = "connections", operation_id = "listConnections", responses(
    (status = 200, description = "The connections.", body = ConnectionList),
    (status = 500, response = InternalError),
))]
async fn list(State(app): State<AppState>) -> Result<Response, Problem> {
    let all = app.store.list_connections().await?;
    let connections = all.iter().map(connection_view).collect();
    Ok(Json(ConnectionList { connections }).into_response())
}

/// Get one connection
///
/// The connection (without its token), its current Kandji request budget and, when
/// `inventory_sync` is on, its device inventory.
#[utoipa::path(get, path = "/connections/{id}", tag = "connections", operation_id = "getConnection", params(ConnectionId), responses(
    (status = 200, description = "The connection (without its token), with its budget.", body = ConnectionDetail, example = json!({
        "id": "conn_5f0c2b7d9a8e4c1f8b3a6d2e1c0f9a7b",
        "name": "Accuhive production",
        "api_url": "https://accuhive.api.kandji.io",
        "requests_per_hour": null,
        "inventory_sync": false,
        "created_at": "2024-06-01T08:30:00.123456Z",
        "updated_at": "2024-06-01T08:30:00.123456Z",
        "budget": {
            "requests_per_hour": 10000,
            "used_last_hour": 42,
            "remaining_this_hour": 9958,
            "next_refill_in_seconds": 1834,
        },
        "inventory": null,
    })),
    (status = 500, response = InternalError),
))]
async fn show(State(app): State<AppState>, Path(id): Path<String>) -> Result<Response, Problem> {
    crate::telemetry::record_ids(None, Some(&id), None);
    let c = app
        .store
        .get_connection(&id)
        .await?
        .ok_or_else(|| no_connection(&id))?;
    Ok(Json(ConnectionDetail {
        budget: app.kandji.budget_report(&c.id, c.requests_per_hour),
        inventory: app.trust.status(&c.id),
        connection: connection_view(&c),
    })
    .into_response())
}

/// Change a connection
///
/// Changes only the fields sent; `requests_per_hour: null` clears the cap. When `api_url` or
/// `api_token` changes, the new pair is verified against Kandji first (as on create) and
/// nothing is changed when that fails.
#[utoipa::path(patch, path = "/connections/{id}", tag = "connections", operation_id = "updateConnection", params(ConnectionId),
    request_body(content = UpdateBody, examples(
        ("rotate_token" = (summary = "Rotate the API token", value = json!({"api_token": "0a9b8c7d-6e5f-4a3b-2c1d-0e9f8a7b6c5d"}))),
        ("rename" = (summary = "Rename and set a budget", value = json!({"name": "Accuhive (prod)", "requests_per_hour": 5000}))),
    )),
    responses(
        (status = 200, description = "The changed connection (without its token).", body = View),
        (status = 422, response = ConnectionInvalid),
        (status = 429, response = BudgetSpent),
        (status = 500, response = InternalError),
        (status = 502, response = KandjiUnreachable),
    ),
)]
async fn update(
    State(app): State<AppState>,
    Path(id): Path<String>,
    AppJson(body): AppJson<UpdateBody>,
) -> Result<Response, Problem> {
    crate::telemetry::record_ids(None, Some(&id), None);
    let current = app
        .store
        .get_connection(&id)
        .await?
        .ok_or_else(|| no_connection(&id))?;
    let mut errors = Vec::new();
    if let Some(n) = &body.name {
        check_name(n, &mut errors);
    }
    if let Some(t) = &body.api_token {
        check_token(t, &mut errors);
    }
    if let Some(r) = body.requests_per_hour {
        check_rate(r, &mut errors);
    }
    let base = match &body.api_url {
        Some(u) => ApiBaseUrl::parse(u)
            .map_err(|m| errors.push(FieldError::new(&["api_url"], m, "api_url")))
            .ok(),
        None => ApiBaseUrl::parse(&current.api_url).ok(),
    };
    if !errors.is_empty() {
        return Err(errors.into());
    }
    if body.api_url.is_some() || body.api_token.is_some() {
        let token = match &body.api_token {
            Some(t) => t.clone(),
            None => app
                .store
                .connection_token(&id)
                .await?
                .ok_or_else(|| no_connection(&id))?,
        };
        let checked = base
            .as_ref()
            .ok_or_else(|| Problem::internal("the stored API URL is invalid"))?;
        let rate = body.requests_per_hour.unwrap_or(current.requests_per_hour);
        verify(&app, &id, checked, &token, rate).await?;
    }
    let new_url = body.api_url.as_ref().and(base.map(|b| b.to_string()));
    let other_tenant = new_url.as_ref().is_some_and(|u| *u != current.api_url);
    let patch = ConnectionPatch {
        name: body.name.map(|n| n.trim().to_string()),
        api_url: new_url,
        api_token: body.api_token,
        requests_per_hour: body.requests_per_hour,
        inventory_sync: body.inventory_sync,
    };
    app.tenants.invalidate(&id);
    let c = app
        .store
        .update_connection(&id, patch)
        .await?
        .ok_or_else(|| no_connection(&id))?;
    match (current.inventory_sync, c.inventory_sync) {
        (false, true) => app.trust.enable(&id).await?,
        (true, false) => app.trust.disable(&id).await?,
        // The devices of the old URL's tenant are not this one's.
        (true, true) if other_tenant => app.trust.reset(&id).await?,
        _ => {}
    }
    Ok(Json(connection_view(&c)).into_response())
}

/// Remove a connection
///
/// Deletes the connection and its stored token. Invocations naming it then get 422
/// (`unknown_connection`).
#[utoipa::path(delete, path = "/connections/{id}", tag = "connections", operation_id = "deleteConnection", params(ConnectionId), responses(
    (status = 204, description = "Deleted."),
    (status = 500, response = InternalError),
))]
async fn remove(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    crate::telemetry::record_ids(None, Some(&id), None);
    app.tenants.invalidate(&id);
    app.trust.disable(&id).await?;
    if app.store.delete_connection(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_connection(&id))
    }
}
