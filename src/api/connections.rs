//! Kandji tenants (`/v1/connections`): register, verify, list, change, remove. Tokens never leave.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

use super::cards::kandji_problem;
use super::{AppJson, AppState};
use crate::error::{FieldError, Problem};
use crate::kandji::{ApiBaseUrl, ApiPath, KandjiError, KandjiRequest, Tenant};
use crate::store::{Connection, ConnectionPatch, NewConnection, StoreError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/connections", get(list).post(create))
        .route("/connections/{id}", get(show).patch(update).delete(remove))
}

fn view(c: &Connection) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "api_url": c.api_url,
        "requests_per_hour": c.requests_per_hour,
        "inventory_sync": c.inventory_sync,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    api_url: String,
    api_token: SecretString,
    #[serde(default)]
    requests_per_hour: Option<u32>,
    #[serde(default)]
    inventory_sync: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    api_url: Option<String>,
    #[serde(default)]
    api_token: Option<SecretString>,
    #[serde(default, deserialize_with = "double_option")]
    requests_per_hour: Option<Option<u32>>,
    #[serde(default)]
    inventory_sync: Option<bool>,
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
        Err(e) => Err(kandji_problem(&e)),
    }
}

fn store_failed(e: StoreError) -> Problem {
    Problem::store(&e)
}

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
        return Err(Problem::invalid(errors));
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
        .await
        .map_err(store_failed)?;
    if body.inventory_sync {
        let patch = ConnectionPatch {
            inventory_sync: Some(true),
            ..Default::default()
        };
        if let Some(c) = app
            .store
            .update_connection(&conn.id, patch)
            .await
            .map_err(store_failed)?
        {
            conn = c;
        }
        app.trust.enable(&conn.id).await.map_err(store_failed)?;
    }
    Ok((StatusCode::CREATED, axum::Json(view(&conn))).into_response())
}

async fn list(State(app): State<AppState>) -> Result<Response, Problem> {
    let all = app.store.list_connections().await.map_err(store_failed)?;
    Ok(
        axum::Json(json!({"connections": all.iter().map(view).collect::<Vec<_>>()}))
            .into_response(),
    )
}

async fn show(State(app): State<AppState>, Path(id): Path<String>) -> Result<Response, Problem> {
    match app.store.get_connection(&id).await.map_err(store_failed)? {
        Some(c) => {
            let mut v = view(&c);
            v["budget"] = json!(app.kandji.budget_report(&c.id, c.requests_per_hour));
            v["inventory"] = json!(app.trust.status(&c.id));
            Ok(axum::Json(v).into_response())
        }
        None => Err(Problem::not_found(format!("no connection {id:?}"))),
    }
}

async fn update(
    State(app): State<AppState>,
    Path(id): Path<String>,
    AppJson(body): AppJson<UpdateBody>,
) -> Result<Response, Problem> {
    let current = app
        .store
        .get_connection(&id)
        .await
        .map_err(store_failed)?
        .ok_or_else(|| Problem::not_found(format!("no connection {id:?}")))?;
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
        return Err(Problem::invalid(errors));
    }
    if body.api_url.is_some() || body.api_token.is_some() {
        let token = match &body.api_token {
            Some(t) => t.clone(),
            None => app
                .store
                .connection_token(&id)
                .await
                .map_err(store_failed)?
                .ok_or_else(|| Problem::not_found(format!("no connection {id:?}")))?,
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
    let Some(c) = app
        .store
        .update_connection(&id, patch)
        .await
        .map_err(store_failed)?
    else {
        return Err(Problem::not_found(format!("no connection {id:?}")));
    };
    match (current.inventory_sync, c.inventory_sync) {
        (false, true) => app.trust.enable(&id).await,
        (true, false) => app.trust.disable(&id).await,
        // The devices of the old URL's tenant are not this one's.
        (true, true) if other_tenant => app.trust.reset(&id).await,
        _ => Ok(()),
    }
    .map_err(store_failed)?;
    Ok(axum::Json(view(&c)).into_response())
}

async fn remove(State(app): State<AppState>, Path(id): Path<String>) -> Result<Response, Problem> {
    app.tenants.invalidate(&id);
    app.trust.disable(&id).await.map_err(store_failed)?;
    if app
        .store
        .delete_connection(&id)
        .await
        .map_err(store_failed)?
    {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(Problem::not_found(format!("no connection {id:?}")))
    }
}
