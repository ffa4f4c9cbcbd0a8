//! The library: a Blueprint's library items (list, assign, remove), Custom Apps, and a library
//! item's activity and per-device statuses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::{invalid_choice, parse_uuid, uuid_filter};
use crate::simulator::SimState;
use crate::simulator::http::{
    BodyData, ErrorStyle, Req, field_error, json, limit_offset_page, not_found, page_number,
    parse_body,
};
use crate::simulator::tenant::{CustomApp, LibraryActivity, Tenant};
use crate::simulator::views::{self, Ts, ts_iso, ts_iso_seconds};

/// Kandji's hard maximum per request for these lists.
const PAGE_MAX: usize = 300;

#[derive(Serialize)]
struct IdName<'a> {
    id: &'a Uuid,
    name: &'a str,
}

/// `GET /blueprints/{id}/list-library-items`: `{count, next, previous, results: [{id, name}]}`.
pub fn blueprint_library_items(state: &SimState, req: &Req, id: &str) -> Response {
    let t = state.read();
    let Some(bp) = parse_uuid(id).and_then(|id| t.blueprint(&id)) else {
        return not_found();
    };
    let items: Vec<IdName> = bp
        .library_item_ids
        .iter()
        .filter_map(|id| t.library_item(id))
        .map(|l| IdName {
            id: &l.id,
            name: l.name,
        })
        .collect();
    let path = format!("/api/v1/blueprints/{}/list-library-items", bp.id);
    json(200, &limit_offset_page(state, req, &path, &items, PAGE_MAX))
}

/// Kandji answers a refused assignment with a plain-text 400 (Kandji's own `iructl` matches
/// these sentences in the body's text).
fn plain(status: u16, msg: &str) -> Response {
    let mut resp = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        msg.to_string(),
    )
        .into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Assignment {
    Assign,
    Remove,
}

/// `POST /blueprints/{id}/assign-library-item` and `.../remove-library-item`:
/// `{"library_item_id", "assignment_node_id"?}`; 200 with the Blueprint's library item ids after
/// the change. A Classic Blueprint takes no node; an Assignment Map without one uses its root.
pub fn assignment(state: &SimState, req: &Req, id: &str, op: Assignment) -> Response {
    let Some(bp_id) = parse_uuid(id) else {
        return not_found();
    };
    let kind = match state.read().blueprint(&bp_id) {
        Some(bp) => bp.kind.clone(),
        None => return not_found(),
    };
    let body = match parse_body(req, ErrorStyle::Detail) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let BodyData::Json(v) = &body
        && !v.is_object()
    {
        return json(
            400,
            &serde_json::json!({"non_field_errors": ["Invalid data. Expected a dictionary."]}),
        );
    }
    let item = match body.get("library_item_id") {
        None | Some(Value::Null) => {
            return field_error(400, "library_item_id", "This field is required.");
        }
        Some(Value::String(s)) => match parse_uuid(&s) {
            Some(u) => u,
            None => return field_error(400, "library_item_id", "Must be a valid UUID."),
        },
        Some(_) => return field_error(400, "library_item_id", "Must be a valid UUID."),
    };
    let node = match body.get("assignment_node_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => match parse_uuid(&s) {
            Some(u) => Some(u),
            None => return field_error(400, "assignment_node_id", "Must be a valid UUID."),
        },
        Some(_) => return field_error(400, "assignment_node_id", "Must be a valid UUID."),
    };
    let is_map = kind == "map";
    if node.is_some() && !is_map {
        return plain(
            400,
            "assignment_node_id cannot be provided for Classic Blueprint",
        );
    }
    let mut t = state.write();
    if t.library_item(&item).is_none() {
        return not_found();
    }
    let Some(bp) = t.blueprints.iter_mut().find(|b| b.id == bp_id) else {
        return not_found();
    };
    let present = bp.library_item_ids.contains(&item);
    match (op, present) {
        (Assignment::Assign, true) => {
            return plain(
                400,
                if is_map {
                    "Library Item already exists in Assignment Node"
                } else {
                    "Library Item already exists on Blueprint"
                },
            );
        }
        (Assignment::Remove, false) => {
            return plain(
                400,
                if is_map {
                    "Library Item does not exist in Assignment Node"
                } else {
                    "Library Item does not exist on Blueprint"
                },
            );
        }
        (Assignment::Assign, false) => bp.library_item_ids.push(item),
        (Assignment::Remove, true) => bp.library_item_ids.retain(|i| *i != item),
    }
    let ids: Vec<String> = bp.library_item_ids.iter().map(Uuid::to_string).collect();
    t.touch();
    t.record_library_activity(item, "library_item_assignment_changed", None);
    json(200, &ids)
}

#[derive(Serialize)]
struct CustomAppOut<'a> {
    id: &'a Uuid,
    name: &'a str,
    file_key: &'a str,
    install_type: &'a str,
    install_enforcement: &'a str,
    audit_script: &'a str,
    unzip_location: &'a str,
    active: bool,
    restart: bool,
    preinstall_script: &'a str,
    postinstall_script: &'a str,
    file_url: String,
    file_size: u64,
    file_updated: Ts,
    created_at: Ts,
    updated_at: Ts,
    show_in_self_service: bool,
}

fn custom_app_out(a: &CustomApp) -> CustomAppOut<'_> {
    CustomAppOut {
        id: &a.id,
        name: &a.name,
        file_key: &a.file_key,
        install_type: a.install_type,
        install_enforcement: a.install_enforcement,
        audit_script: "",
        unzip_location: a.unzip_location,
        active: a.active,
        restart: false,
        preinstall_script: "",
        postinstall_script: "",
        // A short-lived download link.
        file_url: format!(
            "https://kandji-prd-managed-library-items.s3.amazonaws.com/{}?X-Amz-Expires=3600",
            a.file_key
        ),
        file_size: a.file_size,
        file_updated: Ts(a.file_updated, ts_iso_seconds),
        created_at: Ts(a.created_at, ts_iso),
        updated_at: Ts(a.updated_at, ts_iso),
        show_in_self_service: a.show_in_self_service,
    }
}

/// `GET /library/custom-apps?page=`: page-numbered, 300 per page.
pub fn custom_apps(state: &SimState, req: &Req) -> Response {
    let t = state.read();
    let page = match page_number(
        state,
        req,
        "/api/v1/library/custom-apps",
        t.custom_apps.len(),
        PAGE_MAX,
    ) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let results: Vec<CustomAppOut> = t.custom_apps[page.range.clone()]
        .iter()
        .map(custom_app_out)
        .collect();
    json(200, &page.envelope(t.custom_apps.len(), &results))
}

#[derive(Serialize)]
struct ActivityOut<'a> {
    id: u64,
    activity_time: Ts,
    activity_type: &'a str,
    user_id: &'a Uuid,
    user_email: &'a str,
    details: &'a Option<Vec<String>>,
}

fn activity_out(a: &LibraryActivity) -> ActivityOut<'_> {
    ActivityOut {
        id: a.id,
        activity_time: Ts(a.activity_time, ts_iso),
        activity_type: a.activity_type,
        user_id: &a.user_id,
        user_email: &a.user_email,
        details: &a.details,
    }
}

const ACTIVITY_TYPES: &[&str] = &[
    "library_item_created",
    "library_item_edited",
    "library_item_deleted",
    "library_item_duplicated",
    "library_item_assignment_changed",
];

fn library_item_id(t: &Tenant, id: &str) -> Option<Uuid> {
    parse_uuid(id).filter(|id| t.library_item(id).is_some())
}

/// `GET /library/library-items/{id}/activity`: newest first; `activity_type`, `user_id`,
/// `user_email` filters; `limit` (at most 300) and `offset`.
pub fn activity(state: &SimState, req: &Req, id: &str) -> Response {
    let t = state.read();
    let Some(item) = library_item_id(&t, id) else {
        return not_found();
    };
    let kind = req.filter("activity_type");
    if let Some(k) = kind
        && !ACTIVITY_TYPES.contains(&k)
    {
        return invalid_choice("activity_type", k);
    }
    let user_id = match uuid_filter(req, "user_id") {
        Ok(v) => v,
        Err(r) => return r,
    };
    let email = req.filter("user_email");
    let entries: Vec<ActivityOut> = t
        .library_activity
        .get(&item)
        .into_iter()
        .flatten()
        .rev()
        .filter(|a| kind.is_none_or(|k| a.activity_type == k))
        .filter(|a| user_id.is_none_or(|u| a.user_id == u))
        .filter(|a| email.is_none_or(|e| a.user_email.eq_ignore_ascii_case(e)))
        .map(activity_out)
        .collect();
    let path = format!("/api/v1/library/library-items/{item}/activity");
    json(
        200,
        &limit_offset_page(state, req, &path, &entries, PAGE_MAX),
    )
}

/// `GET /library/library-items/{id}/status`: one record per device in scope (on a Blueprint
/// holding the item, of a platform it applies to), newest first; `computer_id` filter;
/// `limit` (at most 300) and `offset`.
pub fn status(state: &SimState, req: &Req, id: &str) -> Response {
    let t = state.read();
    let Some(item) = library_item_id(&t, id) else {
        return not_found();
    };
    let computer = match uuid_filter(req, "computer_id") {
        Ok(v) => v,
        Err(r) => return r,
    };
    let statuses = views::library_item_statuses_out(&t, &item, computer.as_ref());
    let path = format!("/api/v1/library/library-items/{item}/status");
    json(
        200,
        &limit_offset_page(state, req, &path, &statuses, PAGE_MAX),
    )
}
