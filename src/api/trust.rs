//! `GET /v1/connections/{id}/device-trust?serial_number=…`: is this device managed? For
//! device-trust products that are not workflow engines (the `get_device_trust` card answers the
//! same from the same inventory).

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::cards::{kandji_problem, tenant_for};
use super::tenants::TenantError;
use crate::engine::error_message;
use crate::error::{FieldError, Problem};
use crate::trust::{LookupError, SerialNumber};

pub fn routes() -> Router<AppState> {
    Router::new().route("/connections/{id}/device-trust", get(device_trust))
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
        _ => Err(Problem::invalid(errors)),
    }
}

async fn device_trust(
    State(app): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    let serial = serial_from_query(query.as_deref())?;
    // The inventory answers without reading the store or resolving the tenant.
    let answer = match app.trust.known(&id, &serial) {
        Some(a) => a,
        None => {
            let tenant = tenant_for(&app, &id).await.map_err(|e| match e {
                TenantError::Unknown(_) => Problem::not_found(format!("no connection {id:?}")),
                TenantError::Store(e) => Problem::store(&e),
            })?;
            app.trust
                .ask_kandji(&tenant, &serial)
                .await
                .map_err(|e| match e {
                    LookupError::Kandji(e) => kandji_problem(&e),
                    LookupError::KandjiStatus { status, body } => {
                        Problem::new(StatusCode::BAD_GATEWAY, format!("Kandji answered {status}"))
                            .detail(error_message(status, &body))
                    }
                })?
        }
    };
    let mut resp = axum::Json(answer).into_response();
    // A device's state changes; a cached answer is a security decision made on old facts.
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
