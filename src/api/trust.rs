//! `GET /v1/connections/{id}/device-trust?serial_number=…`: is this device managed? For
//! device-trust products that are not workflow engines (the `get_device_trust` card answers the
//! same from the same inventory).

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::connections::ConnectionId;
use super::openapi::{BudgetSpent, InternalError, KandjiTimeout, KandjiUnreachable};
use crate::error::{FieldError, Problem, ProblemBody};
use crate::kandji::TenantError;
use crate::trust::{SerialNumber, TrustAnswer};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(device_trust))
}

/// The query (read by [`serial_from_query`], which also refuses repeated and unknown
/// parameters).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct TrustQuery {
    /// The device's serial number: 1 to 64 visible ASCII characters; matched exactly, not case
    /// sensitive.
    #[param(
        min_length = 1,
        max_length = 64,
        pattern = "^[!-~]+$",
        example = "C02XK1ZZJGH5"
    )]
    serial_number: String,
}

fn serial_from_query(query: Option<&str>) -> Result<SerialNumber, Problem> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.unwrap_or("")).map_err(|_| {
            Problem::invalid(vec![FieldError::new(
                &["query"],
                "is not a valid query string",
                "query",
            )])
        })?;
    let mut errors = Vec::new();
    let mut serial = None;
    for (k, v) in pairs {
        match k.as_str() {
            "serial_number" if serial.is_none() => serial = Some(v),
            "serial_number" => errors.push(FieldError::new(
                &["query", "serial_number"],
                "give it once",
                "duplicate",
            )),
            _ => errors.push(FieldError::new(
                &["query", &k],
                "is not a parameter of this endpoint",
                "unknown_field",
            )),
        }
    }
    let parsed = match serial {
        None => {
            errors.push(FieldError::new(
                &["query", "serial_number"],
                "is required",
                "required",
            ));
            None
        }
        Some(s) => SerialNumber::parse(&s)
            .map_err(|m| {
                errors.push(FieldError::new(
                    &["query", "serial_number"],
                    m,
                    "serial_number",
                ))
            })
            .ok(),
    };
    match parsed {
        Some(s) if errors.is_empty() => Ok(s),
        _ => Err(errors.into()),
    }
}

/// Is this device managed?
///
/// For device-trust products (at sign-in): whether the device with this serial number is managed, with what Kandji says of it. Needs the `trust:read` scope (which opens this route and nothing else: give it to the device-trust product) or `cards:invoke`. With the connection's `inventory_sync` on, answers come from the synced device inventory without a request to Kandji; a serial number the inventory has not seen costs one live `GET /api/v1/devices?serial_number=` within the connection's budget and within the share of its rate kept for live lookups (`KANDJI_CONNECTOR_TRUST_LIVE_SHARE`, 10 % by default; a serial number Kandji does not know is then remembered for one sync interval). A live lookup waits at most `KANDJI_CONNECTOR_TRUST_LIVE_WAIT_MS` (250 ms by default) for that share and budget; without them the inventory answers at once with `live_check: skipped` (`inventory_complete` says whether its `found: false` means "not enrolled as of `checked_at`"). With the sync off, every lookup is live. When Kandji cannot be reached, the inventory answers with `kandji_available: false` and `stale: true` instead of failing; without an inventory the failure shows as 502, 504 or 429. The same answer is the `get_device_trust` card's.
#[utoipa::path(get, path = "/connections/{id}/device-trust", tag = "connections", operation_id = "getDeviceTrust",
    params(ConnectionId, TrustQuery),
    responses(
        (status = 200, description = "The answer (`Cache-Control: no-store`).", body = TrustAnswer,
            headers(("Cache-Control" = String, description = "Always `no-store`: a device's state changes.")),
            example = json!({
                "serial_number": "C02XK1ZZJGH5",
                "found": true,
                "managed": true,
                "mdm_enabled": true,
                "agent_installed": true,
                "is_missing": false,
                "is_removed": false,
                "platform": "Mac",
                "os_version": "14.5",
                "last_check_in": "2024-07-23T14:11:37.150080Z",
                "device_id": "fc60decb-3a34-4e8c-9e2b-5c3d2a1b0f9e",
                "blueprint_name": "All Staff",
                "checked_at": "2024-07-23T14:20:02.004512Z",
                "age_seconds": 41,
                "source": "inventory",
                "live_check": "not_needed",
                "inventory_complete": true,
                "kandji_available": true,
                "stale": false,
            }),
        ),
        (status = 422, description = "`serial_number` is missing or malformed, or the query has another parameter; `errors[].loc` is `[\"query\", name]`.",
            body = ProblemBody, content_type = "application/problem+json", example = json!({
                "type": "about:blank", "title": "Invalid request", "status": 422,
                "detail": "query.serial_number: is required",
                "errors": [{"loc": ["query", "serial_number"], "msg": "is required", "type": "required"}],
            }),
        ),
        (status = 429, response = BudgetSpent),
        (status = 500, response = InternalError),
        (status = 502, response = KandjiUnreachable),
        (status = 504, response = KandjiTimeout),
    ),
)]
async fn device_trust(
    State(app): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    let serial = serial_from_query(query.as_deref())?;
    // The inventory answers without reading the store or resolving the tenant.
    crate::telemetry::record_ids(None, Some(&id), None);
    let answer = match app.trust.known(&id, &serial) {
        Some(a) => {
            crate::telemetry::trust_lookup(Ok(&a), false);
            a
        }
        None => {
            let tenant = app.tenants.get(&id).await.map_err(|e| match e {
                TenantError::Unknown => Problem::not_found(format!("no connection {id:?}")),
                TenantError::Store(e) => e.into(),
            })?;
            let answer = app.trust.ask_kandji(&tenant, &serial).await;
            crate::telemetry::trust_lookup(answer.as_ref().map_err(|_| ()), true);
            answer?
        }
    };
    let mut resp = Json(answer).into_response();
    // A device's state changes; a cached answer is a security decision made on old facts.
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
