//! `GET /audit/events`: Kandji's audit log (Postman folder "Audit Log"), and the simulator's own
//! admin routes under `/_sim/` that make changes happen as an admin would in Kandji's web app
//! (enroll a device, remove it from MDM, move it to another Blueprint, mark it missing, read its
//! FileVault key, create / update / delete a Library Item), so the demo and the tests can trigger
//! events.
//!
//! The audit log's documented example only shows Blueprint, Library Item and API token entries.
//! Device entries here follow the same shape, as the simulator's assumption: `target_type`
//! `"device"`, `target_id` the device id, and
//! * enrollment: `action` `"create"`, `target_component` `"enrollment"`;
//! * deletion: `"delete"`, component `""`; MDM removal: `"delete"`, component `"mdm"`;
//! * Blueprint change: `"update"`, component `"blueprint"`, `metadata.previous_blueprint_*`;
//! * access to a secret: `"read"`, component the secret (`filevault_key`, `unlock_pin`,
//!   `recovery_password`, `activation_lock_bypass_code`);
//!
//! each with `new_state` holding `device_name`, `serial_number`, `platform`, `blueprint_id`,
//! `blueprint_name`. Paging: `sort_by` `occurred_at`/`id` (`-` for descending; default
//! ascending), `start_date`/`end_date` inclusive (a date-time or `YYYY-MM-DD`), `limit` 1–500
//! (default 500), and an opaque keyset `cursor` in `next`, as Kandji's
//! (`>dt:<occurred_at>|<id>` in base64).

use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use super::parse_uuid;
use crate::simulator::SimState;
use crate::simulator::catalog::Platform;
use crate::simulator::http::ErrorStyle;
use crate::simulator::http::{Req, detail, empty, field_error, not_found, parse_body};
use crate::simulator::tenant::{AuditEvent, Device, Tenant};

pub const MAX_LIMIT: usize = 500;

/// Who made a change: an admin in the web app, or the API token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    Admin,
    ApiToken,
}

/// What an audit entry records (see the module doc for the device entries).
pub struct AuditChange<'a> {
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: Uuid,
    pub target_component: &'a str,
    pub new_state: Value,
    pub metadata: Value,
}

impl Tenant {
    /// Appends an entry to the audit log, now.
    pub fn record_audit(&mut self, actor: Actor, change: AuditChange<'_>) {
        let AuditChange {
            action,
            target_type,
            target_id,
            target_component,
            new_state,
            metadata,
        } = change;
        let mut at = crate::simulator::tenant::now_micros();
        if let Some(last) = self.audit.last()
            && last.occurred_at > at
        {
            at = last.occurred_at;
        }
        self.audit_seq += 1;
        let (actor_type, actor_id) = match actor {
            Actor::Admin => ("user", self.admin_id),
            Actor::ApiToken => ("api_token", self.api_token_id),
        };
        self.audit.push(AuditEvent {
            id: ulid_like(at, self.audit_seq),
            action: action.to_string(),
            occurred_at: at,
            actor_id,
            actor_type: actor_type.to_string(),
            target_id,
            target_type: target_type.to_string(),
            target_component: target_component.to_string(),
            new_state,
            metadata,
        });
    }

    /// The audit `new_state` of a device.
    pub fn device_audit_state(&self, d: &Device) -> Value {
        json!({
            "device_name": &*d.device_name,
            "serial_number": &*d.serial_number,
            "platform": d.platform.as_str(),
            "blueprint_id": d.blueprint_id,
            "blueprint_name": self.blueprint_name(&d.blueprint_id),
        })
    }

    /// Records a device entry (see the module doc).
    pub fn audit_device(
        &mut self,
        actor: Actor,
        action: &str,
        component: &str,
        d: &Device,
        metadata: Value,
    ) {
        let state = self.device_audit_state(d);
        self.record_audit(
            actor,
            AuditChange {
                action,
                target_type: "device",
                target_id: d.device_id,
                target_component: component,
                new_state: state,
                metadata,
            },
        );
    }
}

const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// 26 Crockford base-32 characters: 10 of milliseconds, 16 of a sequence number (sorts by time
/// like a ULID).
fn ulid_like(at: DateTime<Utc>, seq: u64) -> String {
    let ms = at.timestamp_millis().max(0) as u128;
    let v: u128 = (ms << 80) | u128::from(seq);
    (0..26)
        .rev()
        .map(|i| CROCKFORD[((v >> (i * 5)) & 31) as usize] as char)
        .collect()
}

fn out(e: &AuditEvent) -> Value {
    json!({
        "id": e.id,
        "action": e.action,
        "occurred_at": e.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "actor_id": e.actor_id,
        "actor_type": e.actor_type,
        "target_id": e.target_id,
        "target_type": e.target_type,
        "target_component": e.target_component,
        "new_state": e.new_state,
        "metadata": e.metadata,
    })
}

fn parse_date(s: &str, end: bool) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Some(t.with_timezone(&Utc));
    }
    let d = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()?;
    let t = if end {
        d.and_hms_micro_opt(23, 59, 59, 999_999)?
    } else {
        d.and_hms_opt(0, 0, 0)?
    };
    Some(t.and_utc())
}

fn encode_cursor(e: &AuditEvent) -> String {
    STANDARD.encode(format!(
        ">dt:{}|{}",
        e.occurred_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        e.id
    ))
}

fn decode_cursor(c: &str) -> Option<(DateTime<Utc>, String)> {
    let raw = String::from_utf8(STANDARD.decode(c.trim()).ok()?).ok()?;
    let (at, id) = raw.strip_prefix(">dt:")?.split_once('|')?;
    Some((
        DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc),
        id.to_string(),
    ))
}

/// `GET /api/v1/audit/events`.
pub fn list(state: &SimState, req: &Req) -> Response {
    let limit = match req.q("limit") {
        None => MAX_LIMIT,
        Some(s) => match s.trim().parse::<usize>() {
            Ok(n) if n >= 1 => n.min(MAX_LIMIT),
            _ => return field_error(400, "limit", "A valid integer is required."),
        },
    };
    let (key, desc) = match req.q("sort_by").unwrap_or("occurred_at") {
        "occurred_at" => ("occurred_at", false),
        "-occurred_at" => ("occurred_at", true),
        "id" => ("id", false),
        "-id" => ("id", true),
        other => {
            return field_error(
                400,
                "sort_by",
                &format!("Invalid sort_by {other:?}: use occurred_at or id, optionally with -."),
            );
        }
    };
    let mut bounds = [None, None];
    for (i, name) in ["start_date", "end_date"].into_iter().enumerate() {
        if let Some(v) = req.q(name) {
            match parse_date(v, i == 1) {
                Some(t) => bounds[i] = Some(t),
                None => {
                    return field_error(400, name, "Enter a valid date/time.");
                }
            }
        }
    }
    let after = match req.q("cursor") {
        None => None,
        Some(c) => match decode_cursor(c) {
            Some(k) => Some(k),
            None => return detail(400, "Invalid cursor"),
        },
    };
    let t = state.read();
    let sort_key = |e: &AuditEvent| -> (DateTime<Utc>, String) {
        if key == "id" {
            (DateTime::<Utc>::MIN_UTC, e.id.clone())
        } else {
            (e.occurred_at, e.id.clone())
        }
    };
    let mut matching: Vec<&AuditEvent> = t
        .audit
        .iter()
        .filter(|e| bounds[0].is_none_or(|s| e.occurred_at >= s))
        .filter(|e| bounds[1].is_none_or(|s| e.occurred_at <= s))
        .collect();
    matching.sort_by_key(|e| sort_key(e));
    if desc {
        matching.reverse();
    }
    if let Some((at, id)) = after {
        let k = if key == "id" {
            (DateTime::<Utc>::MIN_UTC, id)
        } else {
            (at, id)
        };
        matching.retain(|e| {
            let ek = sort_key(e);
            if desc { ek < k } else { ek > k }
        });
    }
    let page: Vec<&AuditEvent> = matching.iter().take(limit).copied().collect();
    let next = (matching.len() > limit).then(|| {
        let q = req.query_with(&[("cursor", Some(encode_cursor(page[page.len() - 1])))]);
        req.absolute_url(state, "/api/v1/audit/events", &q)
    });
    let results: Vec<Value> = page.iter().map(|e| out(e)).collect();
    crate::simulator::http::json(
        200,
        &json!({"results": results, "previous": Value::Null, "next": next}),
    )
}

/// A change to a custom-app library item, made through the admin routes.
fn library_item_change<'a>(
    action: &'a str,
    id: Uuid,
    name: &str,
    active: bool,
    metadata: Value,
) -> AuditChange<'a> {
    AuditChange {
        action,
        target_type: "library_item",
        target_id: id,
        target_component: "",
        new_state: json!({"name": name, "type": "custom-app", "active": active, "label": null}),
        metadata,
    }
}

/// `/_sim/...`: the simulator's admin routes (same bearer token as the API).
pub fn admin(state: &SimState, req: &Req, segments: &[&str]) -> Response {
    use axum::http::Method;
    let m = req.method.clone();
    let body = match parse_body(req, ErrorStyle::Detail) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let text = |k: &str| match body.get(k) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let mut t = state.write();
    t.touch();
    match (m, segments) {
        (Method::POST, ["devices"]) => {
            let platform = text("platform")
                .and_then(|p| Platform::parse(&p))
                .unwrap_or(Platform::Mac);
            let blueprint = text("blueprint_id").and_then(|s| parse_uuid(&s));
            if let Some(b) = blueprint
                && t.blueprint(&b).is_none()
            {
                return field_error(400, "blueprint_id", "No such blueprint.");
            }
            let d = t.enroll_device(platform, text("device_name"), blueprint);
            t.audit_device(Actor::Admin, "create", "enrollment", &d, json!({}));
            crate::simulator::http::json(
                201,
                &json!({"device_id": d.device_id, "serial_number": &*d.serial_number, "device_name": &*d.device_name}),
            )
        }
        (Method::POST, ["devices", id, what]) => {
            let Some(id) = parse_uuid(id) else {
                return not_found();
            };
            let Some(before) = t.device(&id).cloned() else {
                return not_found();
            };
            match *what {
                "remove-mdm" => {
                    if let Some(d) = t.device_mut(&id) {
                        d.mdm_enabled = false;
                        d.is_removed = true;
                    }
                    t.audit_device(Actor::Admin, "delete", "mdm", &before, json!({}));
                }
                "delete" => {
                    t.remove_device(&id);
                    t.audit_device(Actor::Admin, "delete", "", &before, json!({}));
                }
                "blueprint" => {
                    let Some(b) = text("blueprint_id").and_then(|s| parse_uuid(&s)) else {
                        return field_error(400, "blueprint_id", "This field is required.");
                    };
                    if t.blueprint(&b).is_none() {
                        return field_error(400, "blueprint_id", "No such blueprint.");
                    }
                    t.move_device(Actor::Admin, &id, b);
                }
                "missing" => {
                    let missing = !matches!(body.get("missing"), Some(Value::Bool(false)));
                    if let Some(d) = t.device_mut(&id) {
                        d.is_missing = missing;
                    }
                }
                "check-in" => {
                    let at = match text("at") {
                        Some(s) => match parse_date(&s, false) {
                            Some(t) => t,
                            None => return field_error(400, "at", "Enter a valid date/time."),
                        },
                        None => crate::simulator::tenant::now_micros(),
                    };
                    let os = text("os_version");
                    if let Some(d) = t.device_mut(&id) {
                        d.last_check_in = Some(at);
                        if let Some(os) = os {
                            d.os_version = Box::leak(os.into_boxed_str());
                        }
                    }
                }
                "read-secret" => {
                    let kind = text("secret").unwrap_or_else(|| "filevault_key".into());
                    t.audit_device(Actor::Admin, "read", &kind, &before, json!({}));
                }
                _ => return not_found(),
            }
            empty(204)
        }
        (Method::POST, ["library-items"]) => {
            let name = text("name").unwrap_or_else(|| "New Library Item".into());
            let id = Uuid::new_v4();
            let metadata = json!({"source_id": null, "source": null});
            t.record_audit(
                Actor::Admin,
                library_item_change("create", id, &name, true, metadata),
            );
            crate::simulator::http::json(201, &json!({"id": id, "name": name}))
        }
        (Method::POST | Method::DELETE, ["library-items", id]) => {
            let Some(id) = parse_uuid(id) else {
                return not_found();
            };
            let name = text("name").unwrap_or_default();
            let action = if req.method == Method::DELETE {
                "delete"
            } else {
                "update"
            };
            let active = action == "update";
            t.record_audit(
                Actor::Admin,
                library_item_change(action, id, &name, active, json!({})),
            );
            empty(204)
        }
        _ => not_found(),
    }
}
