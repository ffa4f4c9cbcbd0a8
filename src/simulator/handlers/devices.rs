//! `/devices` and everything under `/devices/{id}` except actions.

use std::cmp::Ordering;
use std::sync::Arc;

use axum::response::Response;
use chrono::Utc;
use serde::Serialize;
use uuid::Uuid;

use super::{contains_ci, parse_uuid, uuid_filter};
use crate::simulator::SimState;
use crate::simulator::catalog::Platform;
use crate::simulator::http::{
    BodyData, Envelope, ErrorStyle, Req, empty, field_error, json, limit_offset_page,
    non_negative_int, not_found, parse_body, positive_int, str_list,
};
use crate::simulator::rng::Gen;
use crate::simulator::tenant::{Device, IdSet, Note, Tenant};
use crate::simulator::views::{self, Ts, ts_iso};

/// Kandji's hard maximum (and default) page size for `/devices`.
pub const DEVICE_PAGE_MAX: usize = 300;

/// The filters of `GET /devices`, parsed once per request.
#[derive(Default)]
struct DeviceFilter {
    asset_tag: Option<String>,
    blueprint_id: Option<String>,
    device_id: Option<Uuid>,
    device_name: Option<String>,
    filevault_enabled: Option<bool>,
    /// `None` inside: the filter value is not a MAC address, so nothing matches.
    mac_address: Option<Option<[u8; 6]>>,
    model: Option<String>,
    os_version: Option<String>,
    platform: Option<String>,
    serial_number: Option<String>,
    tag_names: Option<Vec<String>>,
    /// The users that pass the user filters, computed once per request.
    users: Option<IdSet>,
    active: bool,
}

impl DeviceFilter {
    fn parse(req: &Req, t: &Tenant) -> Result<DeviceFilter, Response> {
        let lower = |k: &str| req.filter(k).map(str::to_lowercase);
        let mut f = DeviceFilter {
            asset_tag: req.filter("asset_tag").map(str::to_string),
            blueprint_id: lower("blueprint_id"),
            device_id: uuid_filter(req, "device_id")?,
            device_name: lower("device_name"),
            filevault_enabled: match req.filter("filevault_enabled") {
                Some("true" | "True" | "1") => Some(true),
                Some("false" | "False" | "0") => Some(false),
                _ => None,
            },
            mac_address: req.filter("mac_address").map(parse_mac),
            model: lower("model"),
            os_version: lower("os_version"),
            platform: req.filter("platform").map(str::to_string),
            serial_number: lower("serial_number"),
            tag_names: None,
            users: None,
            active: false,
        };
        let user = lower("user");
        let user_name = lower("user_name");
        let user_email = lower("user_email");
        let user_email_exact = lower("user_email_exact");
        let user_id = uuid_filter(req, "user_id")?;
        if user.is_some()
            || user_name.is_some()
            || user_email.is_some()
            || user_email_exact.is_some()
            || user_id.is_some()
        {
            f.users = Some(
                t.users
                    .iter()
                    .filter(|u| {
                        user_id.is_none_or(|id| id == u.id)
                            && user.as_deref().is_none_or(|s| contains_ci(&u.name, s))
                            && user_name.as_deref().is_none_or(|s| contains_ci(&u.name, s))
                            && user_email
                                .as_deref()
                                .is_none_or(|s| contains_ci(&u.email, s))
                            && user_email_exact
                                .as_deref()
                                .is_none_or(|s| u.email.eq_ignore_ascii_case(s))
                    })
                    .map(|u| u.id)
                    .collect(),
            );
        }
        // Tag filters are case sensitive and all narrow the same set.
        let mut tag_sets: Vec<Vec<String>> = Vec::new();
        if let Some(name) = req.filter("tag_name") {
            tag_sets.push(vec![name.to_string()]);
        }
        if let Some(names) = req.filter("tag_name_in") {
            tag_sets.push(names.split(',').map(|s| s.trim().to_string()).collect());
        }
        let tag_name_of = |id: Uuid| t.tags.iter().find(|t| t.id == id).map(|t| t.name.clone());
        if let Some(id) = uuid_filter(req, "tag_id")? {
            tag_sets.push(tag_name_of(id).into_iter().collect());
        }
        if let Some(ids) = req.filter("tag_id_in") {
            let mut names = Vec::new();
            for id in ids.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let id = parse_uuid(id)
                    .ok_or_else(|| field_error(400, "tag_id_in", "Enter a valid UUID."))?;
                names.extend(tag_name_of(id));
            }
            tag_sets.push(names);
        }
        if !tag_sets.is_empty() {
            let mut names = tag_sets.remove(0);
            for set in tag_sets {
                names.retain(|n| set.contains(n));
            }
            f.tag_names = Some(names);
        }
        f.active = f.asset_tag.is_some()
            || f.blueprint_id.is_some()
            || f.device_id.is_some()
            || f.device_name.is_some()
            || f.filevault_enabled.is_some()
            || f.mac_address.is_some()
            || f.model.is_some()
            || f.os_version.is_some()
            || f.platform.is_some()
            || f.serial_number.is_some()
            || f.tag_names.is_some()
            || f.users.is_some();
        Ok(f)
    }

    fn matches(&self, d: &Device) -> bool {
        if let Some(id) = &self.device_id
            && d.device_id != *id
        {
            return false;
        }
        if let Some(p) = &self.platform
            && d.platform.as_str() != p
        {
            return false;
        }
        if let Some(s) = &self.serial_number
            && !contains_ci(&d.serial_number, s)
        {
            return false;
        }
        if let Some(s) = &self.device_name
            && !contains_ci(&d.device_name, s)
        {
            return false;
        }
        if let Some(s) = &self.model
            && !contains_ci(d.model.name, s)
        {
            return false;
        }
        if let Some(s) = &self.os_version
            && !contains_ci(d.os_version, s)
        {
            return false;
        }
        if let Some(s) = &self.blueprint_id
            && !contains_ci(
                d.blueprint_id
                    .hyphenated()
                    .encode_lower(&mut Uuid::encode_buffer()),
                s,
            )
        {
            return false;
        }
        if let Some(s) = &self.asset_tag
            && d.asset_tag.as_deref() != Some(s.as_str())
        {
            return false;
        }
        if let Some(fv) = self.filevault_enabled
            && (d.platform != Platform::Mac || d.filevault_enabled != fv)
        {
            return false;
        }
        if let Some(mac) = &self.mac_address
            && (mac.is_none() || d.mac_address != *mac)
        {
            return false;
        }
        if let Some(names) = &self.tag_names
            && !d.tags.iter().any(|t| names.contains(t))
        {
            return false;
        }
        if let Some(users) = &self.users
            && !d.user_id.is_some_and(|id| users.contains(&id))
        {
            return false;
        }
        true
    }
}

/// `00:0c:29:05:43:b6` (or with `-`), any case.
fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.trim().split([':', '-']);
    for b in out.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum SortKey {
    AssetTag,
    BlueprintId,
    DeviceId,
    DeviceName,
    LastCheckIn,
    Model,
    Platform,
    OsVersion,
    SerialNumber,
    User,
}

impl SortKey {
    fn parse(s: &str) -> Option<SortKey> {
        Some(match s {
            "asset_tag" => SortKey::AssetTag,
            "blueprint_id" => SortKey::BlueprintId,
            "device_id" => SortKey::DeviceId,
            "device_name" => SortKey::DeviceName,
            "last_check_in" => SortKey::LastCheckIn,
            "model" => SortKey::Model,
            "platform" => SortKey::Platform,
            "os_version" => SortKey::OsVersion,
            "serial_number" => SortKey::SerialNumber,
            "user" => SortKey::User,
            _ => return None,
        })
    }

    /// Ascending order; missing values last, as PostgreSQL sorts NULLs.
    fn compare(self, t: &Tenant, a: &Device, b: &Device) -> Ordering {
        fn nulls_last<T: Ord>(a: Option<T>, b: Option<T>) -> Ordering {
            match (a, b) {
                (Some(a), Some(b)) => a.cmp(&b),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            }
        }
        match self {
            SortKey::AssetTag => nulls_last(a.asset_tag.as_deref(), b.asset_tag.as_deref()),
            SortKey::BlueprintId => a.blueprint_id.cmp(&b.blueprint_id),
            SortKey::DeviceId => a.device_id.cmp(&b.device_id),
            SortKey::DeviceName => a.device_name.cmp(&b.device_name),
            SortKey::LastCheckIn => nulls_last(a.last_check_in, b.last_check_in),
            SortKey::Model => a.model.name.cmp(b.model.name),
            SortKey::Platform => a.platform.as_str().cmp(b.platform.as_str()),
            SortKey::OsVersion => a.os_version.cmp(b.os_version),
            SortKey::SerialNumber => a.serial_number.cmp(&b.serial_number),
            SortKey::User => {
                let name = |d: &Device| d.user_id.and_then(|id| t.user(&id)).map(|u| &*u.name);
                nulls_last(name(a), name(b))
            }
        }
    }
}

/// DRF's OrderingFilter: comma-separated fields, `-` for descending, unknown fields ignored.
fn ordering(req: &Req) -> Vec<(SortKey, bool)> {
    req.filter("ordering")
        .map(|o| {
            o.split(',')
                .filter_map(|f| {
                    let f = f.trim();
                    let (desc, name) = match f.strip_prefix('-') {
                        Some(n) => (true, n),
                        None => (false, f),
                    };
                    SortKey::parse(name).map(|k| (k, desc))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Positions of all devices in `keys` order, cached until a device changes.
fn sorted_positions(state: &SimState, t: &Tenant, keys: &[(SortKey, bool)]) -> Arc<Vec<u32>> {
    let cache_key = format!("{keys:?}");
    if let Some((generation, positions)) = state.order_cache().get(&cache_key)
        && *generation == t.generation()
    {
        return positions.clone();
    }
    let mut positions: Vec<u32> = (0..t.devices.len() as u32).collect();
    positions.sort_by(|&a, &b| {
        let (a, b) = (&t.devices[a as usize], &t.devices[b as usize]);
        keys.iter()
            .map(|&(k, desc)| {
                let o = k.compare(t, a, b);
                if desc { o.reverse() } else { o }
            })
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    });
    let positions = Arc::new(positions);
    state
        .order_cache()
        .insert(cache_key, (t.generation(), positions.clone()));
    positions
}

/// `GET /devices`: a bare array, `limit` (default and maximum 300) and `offset`.
pub fn list(state: &SimState, req: &Req) -> Response {
    let t = state.read();
    let filter = match DeviceFilter::parse(req, &t) {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let limit = positive_int(req.q("limit"), DEVICE_PAGE_MAX, DEVICE_PAGE_MAX);
    let offset = non_negative_int(req.q("offset"));
    let keys = ordering(req);
    let positions = (!keys.is_empty()).then(|| sorted_positions(state, &t, &keys));
    let all: Box<dyn Iterator<Item = &Device>> = match &positions {
        Some(p) => Box::new(p.iter().map(|&i| &t.devices[i as usize])),
        None => {
            // The default order: the devices that checked in most recently come first.
            let front = t.devices.len() - state.check_in() % t.devices.len().max(1);
            Box::new(t.devices[front..].iter().chain(&t.devices[..front]))
        }
    };
    let page: Vec<views::DeviceOut> = if filter.active {
        all.filter(|d| filter.matches(d))
            .skip(offset)
            .take(limit)
            .map(|d| views::device_out(&t, d))
            .collect()
    } else {
        all.skip(offset)
            .take(limit)
            .map(|d| views::device_out(&t, d))
            .collect()
    };
    json(200, &page)
}

fn with_device(
    state: &SimState,
    id: &str,
    f: impl FnOnce(&Tenant, &Device) -> Response,
) -> Response {
    let t = state.read();
    match t.device_by_str(id) {
        Some(d) => f(&t, d),
        None => not_found(),
    }
}

pub fn get(state: &SimState, id: &str) -> Response {
    with_device(state, id, |t, d| json(200, &views::device_out(t, d)))
}

pub fn details(state: &SimState, id: &str) -> Response {
    with_device(state, id, |t, d| json(200, &views::details_out(t, d)))
}

#[derive(Serialize)]
struct DeviceLostModeOut<'a> {
    device_id: &'a Uuid,
    lost_mode: views::LostModeOut,
}

pub fn lost_mode(state: &SimState, id: &str) -> Response {
    with_device(state, id, |_, d| match &d.lost_mode {
        Some(l) => json(
            200,
            &DeviceLostModeOut {
                device_id: &d.device_id,
                lost_mode: views::lost_mode_out(l),
            },
        ),
        None => str_list(400, "Device is not in lost mode."),
    })
}

/// `DELETE /devices/{id}/details/lostmode`: clears Lost Mode stuck in an error state.
pub fn cancel_lost_mode(state: &SimState, id: &str) -> Response {
    let Some(id) = parse_uuid(id) else {
        return not_found();
    };
    let mut t = state.write();
    match t.device_mut(&id) {
        None => not_found(),
        Some(d) if d.lost_mode.is_none() => str_list(400, "Device is not in lost mode."),
        Some(d) => {
            d.lost_mode = None;
            empty(204)
        }
    }
}

#[derive(Serialize)]
struct AppsOut<'a> {
    device_id: &'a Uuid,
    apps: Vec<views::AppOut>,
}

pub fn apps(state: &SimState, id: &str) -> Response {
    with_device(state, id, |t, d| {
        json(
            200,
            &AppsOut {
                device_id: &d.device_id,
                apps: views::apps_out(t, d),
            },
        )
    })
}

#[derive(Serialize)]
struct LibraryItemsOut<'a> {
    device_id: &'a Uuid,
    library_items: Vec<views::LibraryItemOut<'a>>,
}

pub fn library_items(state: &SimState, id: &str) -> Response {
    with_device(state, id, |t, d| {
        json(
            200,
            &LibraryItemsOut {
                device_id: &d.device_id,
                library_items: views::library_items_out(t, d),
            },
        )
    })
}

#[derive(Serialize)]
struct ActivityEntry {
    id: u64,
    created_at: Ts,
    action_type: &'static str,
    details: serde_json::Value,
    computer: serde_json::Value,
    blueprint: Option<serde_json::Value>,
    user: Option<()>,
}

#[derive(Serialize)]
struct NestedPage<'a, T: Serialize> {
    device_id: &'a Uuid,
    #[serde(flatten)]
    page: NestedKey<'a, T>,
}

#[derive(Serialize)]
enum NestedKey<'a, T: Serialize> {
    #[serde(rename = "activity")]
    Activity(Envelope<'a, T>),
    #[serde(rename = "commands")]
    Commands(Envelope<'a, T>),
}

/// `GET /devices/{id}/activity`: the enrollment, then the MDM commands sent through the API.
pub fn activity(state: &SimState, req: &Req, id: &str) -> Response {
    with_device(state, id, |t, d| {
        let blueprint = t
            .blueprint(&d.blueprint_id)
            .map(|b| serde_json::json!({"id": b.id, "name": b.name, "is_removed": false}));
        let computer = serde_json::json!({"id": d.device_id, "name": d.device_name, "is_removed": d.is_removed});
        let mut entries = vec![ActivityEntry {
            id: 5_000 + u64::from(d.seq) * 100,
            created_at: Ts(d.first_enrollment, ts_iso),
            action_type: "enrollment",
            details: serde_json::json!({
                "blueprint_name": t.blueprint_name(&d.blueprint_id),
                "enrollment_type": if d.ade_device_id.is_some() { "DEP" } else { "OTA" },
            }),
            computer: computer.clone(),
            blueprint,
            user: None,
        }];
        for (k, c) in t
            .commands
            .get(&d.device_id)
            .into_iter()
            .flatten()
            .enumerate()
        {
            entries.push(ActivityEntry {
                id: 5_001 + u64::from(d.seq) * 100 + k as u64,
                created_at: Ts(c.date_requested, ts_iso),
                action_type: "mdm_command_sent",
                details: serde_json::json!({
                    "uuid": c.uuid,
                    "command_type": c.command_type,
                    "request_type": c.request_type,
                    "status": 1,
                }),
                computer: computer.clone(),
                blueprint: None,
                user: None,
            });
        }
        let path = format!("/api/v1/devices/{}/activity", d.device_id);
        json(
            200,
            &NestedPage {
                device_id: &d.device_id,
                page: NestedKey::Activity(limit_offset_page(state, req, &path, &entries, 300)),
            },
        )
    })
}

/// `GET /devices/{id}/commands`: the MDM commands sent through the API (status 1, pending).
pub fn commands(state: &SimState, req: &Req, id: &str) -> Response {
    with_device(state, id, |t, d| {
        let cmds: Vec<views::CommandOut> = t
            .commands
            .get(&d.device_id)
            .into_iter()
            .flatten()
            .map(views::command_out)
            .collect();
        let path = format!("/api/v1/devices/{}/commands", d.device_id);
        json(
            200,
            &NestedPage {
                device_id: &d.device_id,
                page: NestedKey::Commands(limit_offset_page(state, req, &path, &cmds, 300)),
            },
        )
    })
}

/// `GET /devices/{id}/notes`: a bare array (Kandji's documented example).
pub fn notes(state: &SimState, id: &str) -> Response {
    with_device(state, id, |t, d| {
        let notes: Vec<_> = t
            .notes_of(&d.device_id)
            .iter()
            .map(views::note_out)
            .collect();
        json(200, &notes)
    })
}

/// The `content` of a note body, with DRF's field errors.
fn note_content(body: &BodyData, required: bool) -> Result<Option<String>, Response> {
    match body.get("content") {
        None if required => Err(field_error(400, "content", "This field is required.")),
        None => Ok(None),
        Some(serde_json::Value::Null) => {
            Err(field_error(400, "content", "This field may not be null."))
        }
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => {
            Err(field_error(400, "content", "This field may not be blank."))
        }
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(field_error(400, "content", "Not a valid string.")),
    }
}

/// The author Kandji records for notes written with an API token.
const API_AUTHOR: &str = "Kandji API";

/// The device a write names (404 when there is none) and the request's body (read only then).
fn device_and_body(state: &SimState, req: &Req, id: &str) -> Result<(Uuid, BodyData), Response> {
    let device_id = parse_uuid(id).ok_or_else(not_found)?;
    if state.read().device(&device_id).is_none() {
        return Err(not_found());
    }
    Ok((device_id, parse_body(req, ErrorStyle::Detail)?))
}

pub fn create_note(state: &SimState, req: &Req, id: &str) -> Response {
    let (device_id, body) = match device_and_body(state, req, id) {
        Ok(found) => found,
        Err(r) => return r,
    };
    let content = match note_content(&body, true) {
        Ok(c) => c.unwrap_or_default(),
        Err(r) => return r,
    };
    let now = Utc::now();
    let note = Note {
        note_id: Uuid::new_v4(),
        created_at: now,
        updated_at: now,
        author: API_AUTHOR.to_string(),
        content,
    };
    let mut t = state.write();
    if t.device(&device_id).is_none() {
        return not_found();
    }
    let resp = json(201, &views::note_out(&note));
    t.notes.entry(device_id).or_default().push(note);
    resp
}

/// `GET|PATCH|DELETE /devices/{id}/notes/{note_id}`.
pub fn note(state: &SimState, req: &Req, id: &str, note_id: &str) -> Response {
    let (Some(device_id), Some(note_id)) = (parse_uuid(id), parse_uuid(note_id)) else {
        return not_found();
    };
    let body = if *req.method == axum::http::Method::PATCH {
        match parse_body(req, ErrorStyle::Detail) {
            Ok(b) => Some(b),
            Err(r) => return r,
        }
    } else {
        None
    };
    let mut t = state.write();
    if t.device(&device_id).is_none() {
        return not_found();
    }
    let notes = t.notes.entry(device_id).or_default();
    let Some(pos) = notes.iter().position(|n| n.note_id == note_id) else {
        return not_found();
    };
    match *req.method {
        axum::http::Method::GET => json(200, &views::note_out(&notes[pos])),
        axum::http::Method::PATCH => {
            let content = match note_content(body.as_ref().unwrap_or(&BodyData::Empty), false) {
                Ok(c) => c,
                Err(r) => return r,
            };
            let note = &mut notes[pos];
            if let Some(c) = content {
                note.content = c;
                note.updated_at = Utc::now();
            }
            json(200, &views::note_out(note))
        }
        _ => {
            let note = notes.remove(pos);
            json(
                200,
                &serde_json::json!({"note_id": note.note_id, "deleted_at": ts_iso(&Utc::now())}),
            )
        }
    }
}

/// `PATCH /devices/{id}`: any of `blueprint_id`, `user`, `asset_tag`, `tags`.
pub fn update(state: &SimState, req: &Req, id: &str) -> Response {
    let (device_id, body) = match device_and_body(state, req, id) {
        Ok(found) => found,
        Err(r) => return r,
    };
    if let BodyData::Json(v) = &body
        && !v.is_object()
    {
        let kind = match v {
            serde_json::Value::Array(_) => "list",
            serde_json::Value::String(_) => "str",
            serde_json::Value::Number(_) => "int",
            serde_json::Value::Bool(_) => "bool",
            _ => "NoneType",
        };
        return json(
            400,
            &serde_json::json!({"non_field_errors": [format!("Invalid data. Expected a dictionary, but got {kind}.")]}),
        );
    }
    let mut t = state.write();
    let mut errors = serde_json::Map::new();
    let mut err = |field: &str, msg: String| {
        errors.insert(field.to_string(), serde_json::json!([msg]));
    };

    let blueprint = match body.get("blueprint_id") {
        None => None,
        Some(serde_json::Value::String(s)) => match parse_uuid(&s) {
            None => {
                err("blueprint_id", format!("“{s}” is not a valid UUID."));
                None
            }
            Some(id) if t.blueprint(&id).is_none() => {
                err(
                    "blueprint_id",
                    format!("Invalid pk \"{s}\" - object does not exist."),
                );
                None
            }
            Some(id) => Some(id),
        },
        Some(serde_json::Value::Null) => {
            err("blueprint_id", "This field may not be null.".into());
            None
        }
        Some(other) => {
            err("blueprint_id", format!("“{other}” is not a valid UUID."));
            None
        }
    };

    // `user`: a user UUID, the deprecated integer id, or null to unassign.
    let user: Option<Option<Uuid>> = match body.get("user") {
        None => None,
        Some(serde_json::Value::Null) => Some(None),
        Some(serde_json::Value::String(s)) if s.is_empty() => Some(None),
        Some(v) => {
            let found = match &v {
                serde_json::Value::String(s) => match parse_uuid(s) {
                    Some(id) => t.user(&id).map(|u| u.id),
                    None => s
                        .parse::<u64>()
                        .ok()
                        .and_then(|n| t.user_by_deprecated_id(n))
                        .map(|u| u.id),
                },
                serde_json::Value::Number(n) => n
                    .as_u64()
                    .and_then(|n| t.user_by_deprecated_id(n))
                    .map(|u| u.id),
                _ => None,
            };
            match found {
                Some(id) => Some(Some(id)),
                None => {
                    let shown = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    err(
                        "user",
                        format!("Invalid pk \"{shown}\" - object does not exist."),
                    );
                    None
                }
            }
        }
    };

    let asset_tag: Option<Option<String>> = match body.get("asset_tag") {
        None => None,
        Some(serde_json::Value::Null) => Some(None),
        Some(serde_json::Value::String(s)) => Some(Some(s)),
        Some(serde_json::Value::Number(n)) => Some(Some(n.to_string())),
        Some(_) => {
            err("asset_tag", "Not a valid string.".into());
            None
        }
    };

    let tags: Option<Vec<String>> = match body.get("tags") {
        None => None,
        Some(serde_json::Value::Array(items)) => {
            let names: Vec<String> = items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect();
            if names.len() != items.len() || names.iter().any(|n| n.trim().is_empty()) {
                err("tags", "Each tag must be a non-empty string.".into());
                None
            } else {
                Some(names)
            }
        }
        Some(serde_json::Value::Null) => {
            err("tags", "This field may not be null.".into());
            None
        }
        Some(other) => {
            let kind = if other.is_string() { "str" } else { "dict" };
            err(
                "tags",
                format!("Expected a list of items but got type \"{kind}\"."),
            );
            None
        }
    };

    if !errors.is_empty() {
        return json(400, &errors);
    }
    if let Some(names) = &tags {
        for n in names {
            t.ensure_tag(n);
        }
    }
    t.touch();
    let Some(d) = t.device_mut(&device_id) else {
        return not_found();
    };
    if let Some(u) = user {
        d.user_id = u;
    }
    if let Some(a) = asset_tag {
        d.asset_tag = a.map(Into::into);
    }
    if let Some(mut names) = tags {
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(n.clone()));
        d.tags = names;
    }
    if let Some(b) = blueprint {
        t.move_device(super::audit::Actor::ApiToken, &device_id, b);
    }
    let t = &*t;
    match t.device(&device_id) {
        Some(d) => json(200, &views::device_out(t, d)),
        None => not_found(),
    }
}

/// `DELETE /devices/{id}`: 204.
pub fn delete(state: &SimState, id: &str) -> Response {
    let Some(id) = parse_uuid(id) else {
        return not_found();
    };
    let mut t = state.write();
    match t.remove_device(&id) {
        Some(d) => {
            t.audit_device(
                super::audit::Actor::ApiToken,
                "delete",
                "",
                &d,
                serde_json::json!({}),
            );
            empty(204)
        }
        None => not_found(),
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Secret {
    FileVaultKey,
    UnlockPin,
    BypassCode,
    RecoveryPassword,
}

impl Secret {
    pub fn parse(s: &str) -> Option<Secret> {
        Some(match s {
            "filevaultkey" => Secret::FileVaultKey,
            "unlockpin" => Secret::UnlockPin,
            "bypasscode" => Secret::BypassCode,
            "recoverypassword" => Secret::RecoveryPassword,
            _ => return None,
        })
    }
}

const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRTUVWXYZ0123456789";

/// Groups of random characters joined by `-` (`A00M6-04XTY-YDMG-JNTE-EMZ3-FTJ5`).
fn grouped_code(g: &mut Gen, groups: &[usize]) -> String {
    groups
        .iter()
        .map(|&n| g.chars_from(CODE_ALPHABET, n))
        .collect::<Vec<_>>()
        .join("-")
}

/// The Unlock PIN a Mac has before any Lock through the API (derived, stable).
pub fn default_unlock_pin(t: &Tenant, d: &Device) -> String {
    Gen::keyed(t.seed, u64::from(d.seq), "unlockpin").digits(6)
}

pub fn secret(state: &SimState, id: &str, secret: Secret) -> Response {
    let resp = secret_answer(state, id, secret);
    if resp.status().is_success() {
        let mut t = state.write();
        if let Some(d) = t.device_by_str(id).cloned() {
            let component = match secret {
                Secret::FileVaultKey => "filevault_key",
                Secret::UnlockPin => "unlock_pin",
                Secret::BypassCode => "activation_lock_bypass_code",
                Secret::RecoveryPassword => "recovery_password",
            };
            t.audit_device(
                super::audit::Actor::ApiToken,
                "read",
                component,
                &d,
                serde_json::json!({}),
            );
        }
    }
    resp
}

fn secret_answer(state: &SimState, id: &str, secret: Secret) -> Response {
    with_device(state, id, |t, d| {
        let mut g = Gen::keyed(t.seed, u64::from(d.seq), "secrets");
        let is_mac = d.platform == Platform::Mac;
        let mac_only = || {
            crate::simulator::http::detail(400, "This secret is only available for Mac computers.")
        };
        match secret {
            Secret::FileVaultKey if !is_mac => mac_only(),
            Secret::FileVaultKey => {
                let key = if d.filevault_enabled {
                    grouped_code(&mut g, &[4, 4, 4, 4, 4, 4])
                } else {
                    String::new()
                };
                json(200, &serde_json::json!({ "key": key }))
            }
            Secret::UnlockPin if !is_mac => mac_only(),
            Secret::UnlockPin => {
                let pin = d
                    .unlock_pin
                    .clone()
                    .map(String::from)
                    .unwrap_or_else(|| default_unlock_pin(t, d));
                json(200, &serde_json::json!({ "pin": pin }))
            }
            Secret::RecoveryPassword if !is_mac => mac_only(),
            Secret::RecoveryPassword => json(
                200,
                &serde_json::json!({ "recovery_password": grouped_code(&mut g, &[5, 5, 4, 4, 4, 4]) }),
            ),
            Secret::BypassCode => {
                let (user, device) = if d.platform == Platform::AppleTv {
                    (String::new(), String::new())
                } else {
                    let code = grouped_code(&mut g, &[5, 5, 4, 4, 4, 4]);
                    (code.clone(), code)
                };
                json(
                    200,
                    &serde_json::json!({ "user_based_albc": user, "device_based_albc": device }),
                )
            }
        }
    })
}
