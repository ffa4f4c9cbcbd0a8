//! `/blueprints`: DRF limit/offset envelope; create and update take form bodies with dotted
//! keys (`enrollment_code.is_active`) as documented, and JSON (flat dotted or nested) too.

use super::audit::Actor;
use std::collections::HashMap;

use axum::response::Response;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{contains_ci, parse_uuid, uuid_filter};
use crate::simulator::SimState;
use crate::simulator::http::{
    BodyData, ErrorStyle, Req, empty, field_error, json, limit_offset_links, non_negative_int,
    not_found, parse_body, positive_int, str_list,
};
use crate::simulator::rng::Gen;
use crate::simulator::tenant::{Blueprint, EnrollmentCode, Tenant};
use crate::simulator::views;

/// Kandji does not document the page size; we default to and cap at 300 like `/devices`.
const PAGE_MAX: usize = 300;
const PATH: &str = "/api/v1/blueprints";

/// (computers_count, missing_computers_count) per blueprint, in one pass over the devices.
fn counts(t: &Tenant) -> HashMap<Uuid, (usize, usize)> {
    let mut m: HashMap<Uuid, (usize, usize)> = HashMap::new();
    for d in &t.devices {
        let c = m.entry(d.blueprint_id).or_default();
        c.0 += 1;
        if d.is_missing {
            c.1 += 1;
        }
    }
    m
}

pub fn list(state: &SimState, req: &Req) -> Response {
    let t = state.read();
    let id = match uuid_filter(req, "id") {
        Ok(v) => v,
        Err(r) => return r,
    };
    let id_in: Option<Vec<Uuid>> = match req.filter("id__in") {
        None => None,
        Some(s) => {
            let mut ids = Vec::new();
            for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                match parse_uuid(part) {
                    Some(id) => ids.push(id),
                    None => return field_error(400, "id__in", "Enter a valid UUID."),
                }
            }
            Some(ids)
        }
    };
    let name = req.filter("name").map(str::to_lowercase);
    let matching: Vec<&Blueprint> = t
        .blueprints
        .iter()
        .filter(|b| id.is_none_or(|id| b.id == id))
        .filter(|b| id_in.as_ref().is_none_or(|ids| ids.contains(&b.id)))
        .filter(|b| name.as_deref().is_none_or(|n| contains_ci(&b.name, n)))
        .collect();
    let limit = positive_int(req.q("limit"), PAGE_MAX, PAGE_MAX);
    let offset = non_negative_int(req.q("offset"));
    let (next, previous) = limit_offset_links(state, req, PATH, matching.len(), limit, offset);
    let counts = counts(&t);
    let results: Vec<views::BlueprintOut> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|b| views::blueprint_out(b, Some(counts.get(&b.id).copied().unwrap_or_default())))
        .collect();
    json(
        200,
        &crate::simulator::http::Envelope {
            count: Some(matching.len()),
            next,
            previous,
            results: &results,
        },
    )
}

pub fn get(state: &SimState, id: &str) -> Response {
    match parse_uuid(id) {
        Some(id) => blueprint_answer(&state.read(), &id),
        None => not_found(),
    }
}

/// The blueprint with its device count, as `GET /blueprints/{id}` answers it; 404 when none.
fn blueprint_answer(t: &Tenant, id: &Uuid) -> Response {
    match t.blueprint(id) {
        Some(b) => {
            let c = counts(t).get(&b.id).copied().unwrap_or_default();
            json(200, &views::blueprint_out(b, Some(c)))
        }
        None => not_found(),
    }
}

/// The body's fields under their dotted names, whether sent as form pairs, flat JSON or nested
/// JSON (`{"enrollment_code": {"is_active": true}}`).
fn flatten(body: &BodyData) -> HashMap<String, Value> {
    fn walk(prefix: &str, v: &Map<String, Value>, out: &mut HashMap<String, Value>) {
        for (k, v) in v {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                Value::Object(m) => walk(&key, m, out),
                other => {
                    out.insert(key, other.clone());
                }
            }
        }
    }
    let mut out = HashMap::new();
    match body {
        BodyData::Empty => {}
        BodyData::Json(Value::Object(m)) => walk("", m, &mut out),
        BodyData::Json(_) => {}
        BodyData::Form(pairs) => {
            for (k, v) in pairs {
                out.insert(k.clone(), Value::String(v.clone()));
            }
        }
    }
    out
}

fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" => Some(false),
            _ => None,
        },
        Value::Number(n) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Validated blueprint fields; `None` means "not sent".
#[derive(Default)]
struct Fields {
    name: Option<String>,
    is_active: Option<bool>,
    code: Option<String>,
    color: Option<String>,
    icon: Option<String>,
    description: Option<String>,
    kind: Option<String>,
    source_type: Option<String>,
    source_id: Option<String>,
}

/// DRF-style validation; `creating` makes `name` and `enrollment_code.is_active` required.
fn validate(fields: &HashMap<String, Value>, creating: bool) -> Result<Fields, Response> {
    let mut errors = Map::new();
    let mut code_errors = Map::new();
    let mut f = Fields::default();
    let string = |key: &str, errors: &mut Map<String, Value>| -> Option<String> {
        let v = fields.get(key)?;
        match as_string(v) {
            Some(s) => Some(s),
            None if v.is_null() => {
                errors.insert(
                    key.into(),
                    serde_json::json!(["This field may not be null."]),
                );
                None
            }
            None => {
                errors.insert(key.into(), serde_json::json!(["Not a valid string."]));
                None
            }
        }
    };
    match string("name", &mut errors) {
        Some(n) if n.trim().is_empty() => {
            errors.insert(
                "name".into(),
                serde_json::json!(["This field may not be blank."]),
            );
        }
        Some(n) => f.name = Some(n.trim().to_string()),
        None if creating && !errors.contains_key("name") => {
            errors.insert(
                "name".into(),
                serde_json::json!(["This field is required."]),
            );
        }
        None => {}
    }
    match fields.get("enrollment_code.is_active") {
        Some(v) => match as_bool(v) {
            Some(b) => f.is_active = Some(b),
            None => {
                code_errors.insert(
                    "is_active".into(),
                    serde_json::json!(["Must be a valid boolean."]),
                );
            }
        },
        None if creating => {
            code_errors.insert(
                "is_active".into(),
                serde_json::json!(["This field is required."]),
            );
        }
        None => {}
    }
    if let Some(v) = fields.get("enrollment_code.code") {
        match as_string(v) {
            Some(s) if !s.trim().is_empty() => f.code = Some(s.trim().to_string()),
            Some(_) => {}
            None => {
                code_errors.insert("code".into(), serde_json::json!(["Not a valid string."]));
            }
        }
    }
    if !code_errors.is_empty() {
        errors.insert("enrollment_code".into(), Value::Object(code_errors));
    }
    f.color = string("color", &mut errors).filter(|s| !s.is_empty());
    f.icon = string("icon", &mut errors).filter(|s| !s.is_empty());
    f.description = string("description", &mut errors);
    if let Some(kind) = string("type", &mut errors) {
        if kind == "classic" || kind == "map" {
            f.kind = Some(kind);
        } else {
            errors.insert(
                "type".into(),
                serde_json::json!([format!("\"{kind}\" is not a valid choice.")]),
            );
        }
    }
    f.source_type = string("source.type", &mut errors);
    f.source_id = string("source.id", &mut errors);
    if errors.is_empty() {
        Ok(f)
    } else {
        Err(json(400, &errors))
    }
}

fn body_fields(req: &Req) -> Result<HashMap<String, Value>, Response> {
    let body = parse_body(req, ErrorStyle::Detail)?;
    if let BodyData::Json(v) = &body
        && !v.is_object()
    {
        return Err(json(
            400,
            &serde_json::json!({"non_field_errors": ["Invalid data. Expected a dictionary."]}),
        ));
    }
    Ok(flatten(&body))
}

const DUPLICATE: &str = "A blueprint with this name already exists.";

/// `POST /blueprints`: 201 with the new blueprint (without counts, as Kandji's example).
pub fn create(state: &SimState, req: &Req) -> Response {
    let fields = match body_fields(req).and_then(|f| validate(&f, true)) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let mut t = state.write();
    let name = fields.name.unwrap_or_default();
    if t.blueprints.iter().any(|b| b.name == name) {
        return str_list(400, DUPLICATE);
    }
    let kind = fields.kind.unwrap_or_else(|| "classic".to_string());
    let mut library_item_ids = Vec::new();
    let mut params = serde_json::json!({});
    if fields.source_type.as_deref() == Some("blueprint") || fields.source_id.is_some() {
        let source = fields
            .source_id
            .as_deref()
            .and_then(parse_uuid)
            .and_then(|id| t.blueprint(&id));
        match (fields.source_type.as_deref(), source) {
            (Some("template"), _) => {}
            (_, None) => return str_list(400, "The source blueprint does not exist."),
            (_, Some(src)) if src.kind != kind => {
                return str_list(
                    400,
                    "Blueprint type does not match the source blueprint type",
                );
            }
            (_, Some(src)) => {
                library_item_ids = src.library_item_ids.clone();
                params = src.params.clone();
            }
        }
    }
    let mut g = Gen::new(uuid::Uuid::new_v4().as_u64_pair().0);
    let blueprint = Blueprint {
        id: Uuid::new_v4(),
        name,
        icon: fields.icon.unwrap_or_else(|| "ss-files".to_string()),
        color: fields.color.unwrap_or_else(|| "aqua-800".to_string()),
        description: fields.description.unwrap_or_default(),
        params,
        enrollment_code: EnrollmentCode {
            code: fields.code.unwrap_or_else(|| g.digits(6)),
            is_active: fields.is_active.unwrap_or(true),
        },
        kind,
        library_item_ids,
    };
    let resp = json(201, &views::blueprint_out(&blueprint, None));
    let state = audit_state(&blueprint);
    let id = blueprint.id;
    t.blueprints.push(blueprint);
    t.record_audit(
        Actor::ApiToken,
        super::audit::AuditChange {
            action: "create",
            target_type: "blueprint",
            target_id: id,
            target_component: "",
            new_state: state,
            metadata: serde_json::json!({"source_id": null, "source": null}),
        },
    );
    resp
}

/// `PATCH /blueprints/{id}`: name, icon, color, description, enrollment code and active flag.
pub fn update(state: &SimState, req: &Req, id: &str) -> Response {
    let Some(id) = parse_uuid(id) else {
        return not_found();
    };
    if state.read().blueprint(&id).is_none() {
        return not_found();
    }
    let fields = match body_fields(req).and_then(|f| validate(&f, false)) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let mut t = state.write();
    if let Some(name) = &fields.name
        && t.blueprints.iter().any(|b| &b.name == name && b.id != id)
    {
        return str_list(400, DUPLICATE);
    }
    let Some(b) = t.blueprints.iter_mut().find(|b| b.id == id) else {
        return not_found();
    };
    if let Some(v) = fields.name {
        b.name = v;
    }
    if let Some(v) = fields.icon {
        b.icon = v;
    }
    if let Some(v) = fields.color {
        b.color = v;
    }
    if let Some(v) = fields.description {
        b.description = v;
    }
    if let Some(v) = fields.code {
        b.enrollment_code.code = v;
    }
    if let Some(v) = fields.is_active {
        b.enrollment_code.is_active = v;
    }
    let state = audit_state(b);
    t.record_audit(
        Actor::ApiToken,
        super::audit::AuditChange {
            action: "update",
            target_type: "blueprint",
            target_id: id,
            target_component: "",
            new_state: state,
            metadata: serde_json::json!({}),
        },
    );
    blueprint_answer(&t, &id)
}

/// `DELETE /blueprints/{id}`: 204; Kandji un-manages the devices that were on it.
pub fn delete(state: &SimState, id: &str) -> Response {
    let Some(id) = parse_uuid(id) else {
        return not_found();
    };
    let mut t = state.write();
    let Some(pos) = t.blueprints.iter().position(|b| b.id == id) else {
        return not_found();
    };
    let gone = t.blueprints.remove(pos);
    t.record_audit(
        Actor::ApiToken,
        super::audit::AuditChange {
            action: "delete",
            target_type: "blueprint",
            target_id: id,
            target_component: "",
            new_state: audit_state(&gone),
            metadata: serde_json::json!({}),
        },
    );
    t.touch();
    for d in t.devices.iter_mut().filter(|d| d.blueprint_id == id) {
        d.mdm_enabled = false;
        d.is_removed = true;
    }
    empty(204)
}

/// A Blueprint's `new_state` in the audit log (as Kandji's example: name, description, type).
fn audit_state(b: &Blueprint) -> serde_json::Value {
    serde_json::json!({"name": b.name, "description": b.description, "type": b.kind})
}
