//! `/threat-details`: the threats Kandji EDR detected on Macs, with their counts by
//! classification. 404 when the tenant has no EDR.

use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::{contains_ci, invalid_choice, uuid_filter};
use crate::simulator::SimState;
use crate::simulator::catalog::{self, Platform};
use crate::simulator::http::{
    Req, field_error, json, limit_offset_links, non_negative_int, not_found, positive_int,
};
use crate::simulator::rng::Gen;
use crate::simulator::tenant::{Device, Tenant, reference_now};

/// Kandji's hard maximum (and default) per request.
const PAGE_MAX: usize = 1000;
const PATH: &str = "/api/v1/threat-details";

/// One detection, as Kandji lists it.
#[derive(Serialize, Clone)]
pub struct Threat {
    pub threat_name: &'static str,
    pub classification: &'static str,
    pub status: &'static str,
    pub process_name: &'static str,
    pub process_owner: String,
    pub device_name: String,
    pub device_id: Uuid,
    /// Naive ISO timestamps, as Kandji writes them here (`2023-04-21T17:23:13.883134`).
    pub detection_date: String,
    pub date_of_quarantine: String,
    pub date_of_release: String,
    pub released_by: String,
    pub release_note: String,
    pub file_path: String,
    pub file_hash: String,
    pub bundle_path: String,
    pub device_serial_number: String,
    pub blueprint_id: Uuid,
    pub blueprint_name: String,
    pub library_item_name: &'static str,
    pub library_item_id: Option<Uuid>,
    pub pup_posture: &'static str,
    pub malware_posture: &'static str,
    #[serde(skip)]
    detected: DateTime<Utc>,
}

fn naive(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

/// The detections of one Mac, derived from `(seed, device)`: about one Mac in seven has some.
fn threats_of(t: &Tenant, d: &Device, policy: Option<(Uuid, &'static str)>) -> Vec<Threat> {
    let mut g = Gen::keyed(t.seed, u64::from(d.seq), "threats");
    if d.platform != Platform::Mac || !g.percent(15) {
        return Vec::new();
    }
    let user = d
        .user_id
        .and_then(|u| t.user(&u))
        .map(|u| u.email.split('@').next().unwrap_or("").replace('.', ""))
        .unwrap_or_else(|| "Shared".to_string());
    let n = g.range(1, 4);
    (0..n)
        .map(|_| {
            let (name, class, path, process) = *g.pick(catalog::THREATS);
            let detected = reference_now()
                - Duration::seconds(g.range(3_600, 120 * 86_400))
                - Duration::microseconds(g.range(0, 1_000_000));
            let status = *g.weighted(&[
                ("QUARANTINED", 70),
                ("NOT_QUARANTINED", 20),
                ("RELEASED", 10),
            ]);
            let quarantined = detected + Duration::microseconds(g.range(200_000, 2_000_000));
            let released = detected + Duration::hours(g.range(1, 72));
            let file_path = path.replace("{user}", &user);
            let bundle_path = file_path
                .find(".app/")
                .map(|i| file_path[..i + 4].to_string())
                .unwrap_or_default();
            let hash: String = (0..4).map(|_| format!("{:016x}", g.next_u64())).collect();
            Threat {
                threat_name: name,
                classification: class,
                status,
                process_name: process,
                process_owner: if process == "launchd" {
                    "root".to_string()
                } else {
                    user.clone()
                },
                device_name: d.device_name.to_string(),
                device_id: d.device_id,
                detection_date: naive(&detected),
                date_of_quarantine: if status == "NOT_QUARANTINED" {
                    String::new()
                } else {
                    naive(&quarantined)
                },
                date_of_release: if status == "RELEASED" {
                    naive(&released)
                } else {
                    String::new()
                },
                released_by: if status == "RELEASED" {
                    crate::simulator::tenant::ADMIN_EMAIL.to_string()
                } else {
                    String::new()
                },
                release_note: if status == "RELEASED" {
                    "Known developer tool".to_string()
                } else {
                    String::new()
                },
                file_path,
                file_hash: hash,
                bundle_path,
                device_serial_number: d.serial_number.to_string(),
                blueprint_id: d.blueprint_id,
                blueprint_name: t.blueprint_name(&d.blueprint_id).to_string(),
                library_item_name: policy.map(|p| p.1).unwrap_or(""),
                library_item_id: policy.map(|p| p.0),
                pup_posture: "protect",
                malware_posture: "protect",
                detected,
            }
        })
        .collect()
}

/// Every detection of the tenant, newest first.
pub fn all_threats(t: &Tenant) -> Vec<Threat> {
    let policy = t
        .library_items
        .iter()
        .find(|l| l.kind == "threat-security-policy")
        .map(|l| (l.id, l.name));
    let mut all: Vec<Threat> = t
        .devices
        .iter()
        .flat_map(|d| threats_of(t, d, policy))
        .collect();
    all.sort_by_key(|x| std::cmp::Reverse(x.detected));
    all
}

const SORT_FIELDS: &[&str] = &[
    "threat_name",
    "classification",
    "device_name",
    "process_name",
    "process_owner",
    "detection_date",
    "status",
];

/// `GET /threat-details`: `{count, next, previous, malware_count, pup_count, results}`, filtered by
/// `classification`, `date_range` (days), `device_id`, `status` and `term`, sorted by
/// `sort_by`, paged by `limit` (at most 1000) and `offset`.
pub fn threat_details(state: &SimState, req: &Req) -> Response {
    let t = state.read();
    if !t.edr_enabled {
        return not_found();
    }
    let classification = match req.filter("classification") {
        None => None,
        Some(c) => match c.to_ascii_lowercase().as_str() {
            "malware" => Some("MALWARE"),
            "pup" => Some("PUP"),
            _ => return invalid_choice("classification", c),
        },
    };
    let status = match req.filter("status") {
        None => None,
        Some(s) => match s.to_ascii_lowercase().as_str() {
            "quarantined" => Some("QUARANTINED"),
            "not_quarantined" => Some("NOT_QUARANTINED"),
            "released" => Some("RELEASED"),
            _ => return invalid_choice("status", s),
        },
    };
    let device = match uuid_filter(req, "device_id") {
        Ok(v) => v,
        Err(r) => return r,
    };
    let since = match req.filter("date_range") {
        None => None,
        Some(s) => match s.trim().parse::<i64>() {
            Ok(days) if days > 0 => Some(Utc::now() - Duration::days(days)),
            _ => return field_error(400, "date_range", "Enter a whole number."),
        },
    };
    let term = req.filter("term").map(str::to_lowercase);
    let mut matching: Vec<Threat> = all_threats(&t)
        .into_iter()
        .filter(|x| classification.is_none_or(|c| x.classification == c))
        .filter(|x| status.is_none_or(|s| x.status == s))
        .filter(|x| device.is_none_or(|d| x.device_id == d))
        .filter(|x| since.is_none_or(|s| x.detected >= s))
        .filter(|x| {
            term.as_deref().is_none_or(|q| {
                contains_ci(&x.device_name, q)
                    || contains_ci(&x.file_hash, q)
                    || contains_ci(&x.file_path, q)
            })
        })
        .collect();
    if let Some(sort) = req.filter("sort_by") {
        let (desc, field) = match sort.strip_prefix('-') {
            Some(f) => (true, f),
            None => (false, sort),
        };
        if !SORT_FIELDS.contains(&field) {
            return invalid_choice("sort_by", sort);
        }
        let key = |x: &Threat| -> Value {
            serde_json::to_value(x)
                .ok()
                .and_then(|v| v.get(field).cloned())
                .unwrap_or(Value::Null)
        };
        matching.sort_by(|a, b| {
            let o = key(a)
                .as_str()
                .unwrap_or("")
                .cmp(key(b).as_str().unwrap_or(""));
            if desc { o.reverse() } else { o }
        });
    }
    let count = |c: &str| matching.iter().filter(|x| x.classification == c).count();
    let (malware, pup) = (count("MALWARE"), count("PUP"));
    let limit = positive_int(req.q("limit"), PAGE_MAX, PAGE_MAX);
    let offset = non_negative_int(req.q("offset"));
    let (next, previous) = limit_offset_links(state, req, PATH, matching.len(), limit, offset);
    let results: Vec<&Threat> = matching.iter().skip(offset).take(limit).collect();
    json(
        200,
        &serde_json::json!({
            "count": matching.len(),
            "next": next,
            "previous": previous,
            "malware_count": malware,
            "pup_count": pup,
            "results": results,
        }),
    )
}
