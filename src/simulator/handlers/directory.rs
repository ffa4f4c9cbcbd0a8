//! `/users` (cursor paging), `/tags` and `/settings/licensing`.

use std::collections::HashMap;

use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use uuid::Uuid;

use super::{contains_ci, parse_uuid, uuid_filter};
use crate::simulator::SimState;
use crate::simulator::catalog::Platform;
use crate::simulator::http::{
    Envelope, ErrorStyle, Req, detail, empty, field_error, json, not_found, parse_body,
};
use crate::simulator::tenant::{Tag, Tenant, User};
use crate::simulator::views;

/// Opaque cursor like DRF's (`cD0yOTE0Mw==` is base64 of `p=29143`); here the position is an
/// index into the filtered list.
fn encode_cursor(position: usize) -> String {
    STANDARD.encode(format!("p={position}"))
}

fn decode_cursor(cursor: &str) -> Option<usize> {
    let raw = STANDARD.decode(cursor.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    text.strip_prefix("p=")?.parse().ok()
}

fn device_counts(t: &Tenant) -> HashMap<Uuid, usize> {
    let mut m = HashMap::new();
    for id in t.devices.iter().filter_map(|d| d.user_id) {
        *m.entry(id).or_insert(0) += 1;
    }
    m
}

/// `GET /users`: `{next, previous, results}` without `count`, 300 per page (see
/// `SimConfig::users_page_size`).
pub fn users(state: &SimState, req: &Req) -> Response {
    let page_size = state.users_page_size();
    let t = state.read();
    let id = match uuid_filter(req, "id") {
        Ok(v) => v,
        Err(r) => return r,
    };
    let integration = match uuid_filter(req, "integration_id") {
        Ok(v) => v,
        Err(r) => return r,
    };
    let archived = match req.filter("archived") {
        Some("true" | "True" | "1") => Some(true),
        Some("false" | "False" | "0") => Some(false),
        _ => None,
    };
    let email = req.filter("email").map(str::to_lowercase);
    let matching: Vec<&User> = t
        .users
        .iter()
        .filter(|u| id.is_none_or(|id| u.id == id))
        .filter(|_| integration.is_none_or(|i| i == t.user_integration.uuid))
        .filter(|u| archived.is_none_or(|a| u.archived == a))
        .filter(|u| email.as_deref().is_none_or(|e| contains_ci(&u.email, e)))
        .collect();
    let start = match req.filter("cursor") {
        None => 0,
        Some(c) => match decode_cursor(c) {
            Some(p) if p <= matching.len() => p,
            _ => return detail(404, "Invalid cursor"),
        },
    };
    let end = (start + page_size).min(matching.len());
    let link = |position: usize| {
        let q = req.query_with(&[("cursor", Some(encode_cursor(position)))]);
        req.absolute_url(state, "/api/v1/users", &q)
    };
    let next = (end < matching.len()).then(|| link(end));
    let previous = (start > 0).then(|| {
        let prev = start.saturating_sub(page_size);
        if prev == 0 {
            let q = req.query_with(&[("cursor", None)]);
            req.absolute_url(state, "/api/v1/users", &q)
        } else {
            link(prev)
        }
    });
    let counts = device_counts(&t);
    let results: Vec<_> = matching[start..end]
        .iter()
        .map(|u| views::user_out(&t, u, counts.get(&u.id).copied().unwrap_or(0)))
        .collect();
    json(
        200,
        &Envelope {
            count: None,
            next,
            previous,
            results: &results,
        },
    )
}

pub fn user(state: &SimState, id: &str) -> Response {
    let t = state.read();
    match parse_uuid(id).and_then(|id| t.user(&id)) {
        Some(u) => {
            let n = t.devices.iter().filter(|d| d.user_id == Some(u.id)).count();
            json(200, &views::user_out(&t, u, n))
        }
        None => not_found(),
    }
}

pub fn delete_user(state: &SimState, id: &str) -> Response {
    let Some(id) = parse_uuid(id) else {
        return not_found();
    };
    match state.write().remove_user(&id) {
        Ok(_) => empty(204),
        Err("assigned") => detail(400, "User still assigned to one or more devices."),
        Err(_) => not_found(),
    }
}

#[derive(serde::Serialize)]
struct TagOut<'a> {
    id: &'a Uuid,
    name: &'a str,
}

fn tag_out(t: &Tag) -> TagOut<'_> {
    TagOut {
        id: &t.id,
        name: &t.name,
    }
}

/// `GET /tags?search=`: a DRF envelope with every matching tag.
pub fn tags(state: &SimState, req: &Req) -> Response {
    let t = state.read();
    let search = req.filter("search").map(str::to_lowercase);
    let results: Vec<_> = t
        .tags
        .iter()
        .filter(|tag| search.as_deref().is_none_or(|s| contains_ci(&tag.name, s)))
        .map(tag_out)
        .collect();
    json(200, &Envelope::all(&results))
}

fn tag_name(req: &Req) -> Result<String, Response> {
    let body = parse_body(req, ErrorStyle::Detail)?;
    match body.get("name") {
        None => Err(field_error(400, "name", "This field is required.")),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Some(Value::String(_)) => Err(field_error(400, "name", "This field may not be blank.")),
        _ => Err(field_error(400, "name", "Not a valid string.")),
    }
}

const TAG_EXISTS: &str = "tag with this name already exists.";

pub fn create_tag(state: &SimState, req: &Req) -> Response {
    let name = match tag_name(req) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let mut t = state.write();
    if t.tags.iter().any(|tag| tag.name == name) {
        return field_error(400, "name", TAG_EXISTS);
    }
    let tag = Tag {
        id: Uuid::new_v4(),
        name,
    };
    let resp = json(201, &tag_out(&tag));
    t.tags.push(tag);
    resp
}

/// `PATCH /tags/{id}`: renames the tag, on every device too.
pub fn update_tag(state: &SimState, req: &Req, id: &str) -> Response {
    let Some(id) = parse_uuid(id) else {
        return not_found();
    };
    if !state.read().tags.iter().any(|t| t.id == id) {
        return not_found();
    }
    let name = match tag_name(req) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let mut t = state.write();
    if t.tags.iter().any(|tag| tag.name == name && tag.id != id) {
        return field_error(400, "name", TAG_EXISTS);
    }
    let Some(tag) = t.tags.iter_mut().find(|tag| tag.id == id) else {
        return not_found();
    };
    let old = std::mem::replace(&mut tag.name, name.clone());
    let resp = json(
        200,
        &TagOut {
            id: &id,
            name: &name,
        },
    );
    for d in t.devices.iter_mut() {
        for n in d.tags.iter_mut().filter(|n| **n == old) {
            *n = name.clone();
        }
    }
    resp
}

/// `DELETE /tags/{id}`: 204, and the tag leaves every device.
pub fn delete_tag(state: &SimState, id: &str) -> Response {
    let Some(id) = parse_uuid(id) else {
        return not_found();
    };
    let mut t = state.write();
    let Some(pos) = t.tags.iter().position(|tag| tag.id == id) else {
        return not_found();
    };
    let tag = t.tags.remove(pos);
    for d in t.devices.iter_mut() {
        d.tags.retain(|n| *n != tag.name);
    }
    empty(204)
}

/// `GET /settings/licensing`.
pub fn licensing(state: &SimState) -> Response {
    let t = state.read();
    let count = |p: Platform| t.devices.iter().filter(|d| d.platform == p).count();
    let (mac, iphone, ipad, tv) = (
        count(Platform::Mac),
        count(Platform::IPhone),
        count(Platform::IPad),
        count(Platform::AppleTv),
    );
    let max = t.devices.len().div_ceil(100) * 100 + 100;
    json(
        200,
        &serde_json::json!({
            "counts": {
                "computers_count": t.devices.len(),
                "ios_count": iphone,
                "ipados_count": ipad,
                "macos_count": mac,
                "tvos_count": tv,
            },
            "limits": {
                "plan_type": "single_limit",
                "max_devices": max,
                "max_devices_per_platform": {"macos": 0, "ios_ipados": 0},
            },
            "tenantOverLicenseLimit": false,
        }),
    )
}
