//! What reached the simulated Kandji tenant (method, path, query, body and its encoding, how
//! many requests, with the connection's token), and fixtures read from the tenant.

use chrono::{DateTime, SecondsFormat, Utc};
use kandji_connector::simulator::{
    Blueprint, Device, EnrollmentCode, Fault, RecordedRequest, SimConfig, SimHandle, User,
};
use serde_json::Value;
use uuid::Uuid;

use super::{Resp, TestApp};

/// A connection budget of 1,000 requests a second: the default (Kandji's 10,000 an hour, about
/// 3 a second) would make the per-card tests wait.
pub const FAST_BUDGET: u64 = 3_600_000;

/// A server and simulated tenant whose connection has `FAST_BUDGET`.
pub async fn start() -> TestApp {
    start_with(SimConfig::default()).await
}

pub async fn start_with(config: SimConfig) -> TestApp {
    TestApp::builder()
        .sim(config)
        .requests_per_hour(FAST_BUDGET)
        .start()
        .await
}

pub const JSON: &str = "application/json";
pub const FORM: &str = "application/x-www-form-urlencoded";

/// A fault that answers in the tenant's place, with this status and body (text, or JSON).
pub fn answer(status: u16, body: impl ToString) -> Fault {
    Fault::Status {
        status,
        retry_after: None,
        body: Some(body.to_string()),
    }
}

/// A date as the engine writes Date outputs (RFC 3339, UTC, `Z`).
pub fn rfc(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Kandji's ISO form (`2024-07-23T14:11:37.150080Z`, always microseconds), as the simulator writes it.
pub fn ts_iso(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Kandji's date text (`2024-01-26 16:15:36.087016+00:00`, `…Z`, `… 11:32:35+00:00`) as RFC 3339.
pub fn rfc_of(kandji: &str) -> String {
    let t = DateTime::parse_from_rfc3339(kandji)
        .or_else(|_| DateTime::parse_from_str(kandji, "%Y-%m-%d %H:%M:%S%.f%:z"))
        .unwrap_or_else(|e| panic!("{kandji:?} is not a Kandji date: {e}"));
    rfc(&t.with_timezone(&Utc))
}

pub use super::app::devices;

/// Kandji's date text as the engine writes a Date output; `""` and null as null.
pub fn date(v: &Value) -> Value {
    match v.as_str() {
        None | Some("") => Value::Null,
        Some(s) => serde_json::json!(rfc_of(s)),
    }
}

/// `METHOD /path?query` of a recorded request.
pub fn line(r: &RecordedRequest) -> String {
    match &r.query {
        Some(q) => format!("{} {}?{q}", r.method, r.path),
        None => format!("{} {}", r.method, r.path),
    }
}

/// The requests the tenant saw since the last call (exactly `n` of them, each with the
/// connection's token), then forgets them.
#[track_caller]
pub fn take(s: &TestApp, n: usize) -> Vec<RecordedRequest> {
    let reqs = s.sim.requests();
    s.sim.clear_requests();
    assert_eq!(
        reqs.len(),
        n,
        "requests that reached Kandji: {:#?}",
        reqs.iter().map(line).collect::<Vec<_>>()
    );
    let auth = format!("Bearer {}", s.sim.token());
    for r in &reqs {
        assert_eq!(
            r.header("authorization"),
            Some(auth.as_str()),
            "{}",
            line(r)
        );
    }
    reqs
}

/// The one request the tenant saw, which must be `want` (`METHOD /path?query`).
#[track_caller]
pub fn only(s: &TestApp, want: &str) -> RecordedRequest {
    let r = take(s, 1).remove(0);
    assert_eq!(line(&r), want);
    r
}

#[track_caller]
pub fn assert_no_body(r: &RecordedRequest) {
    assert!(
        r.body.is_empty(),
        "{}: unexpected body {:?}",
        line(r),
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.content_type, None, "{}", line(r));
}

/// A JSON body with exactly these keys and values.
#[track_caller]
pub fn assert_json(r: &RecordedRequest, want: Value) {
    assert_eq!(r.content_type.as_deref(), Some(JSON), "{}", line(r));
    assert_eq!(r.json(), Some(want), "{}", line(r));
}

/// A form body with exactly these pairs (in any order).
#[track_caller]
pub fn assert_form(r: &RecordedRequest, want: &[(&str, &str)]) {
    assert_eq!(r.content_type.as_deref(), Some(FORM), "{}", line(r));
    let mut got = r.form();
    got.sort();
    let mut want: Vec<(String, String)> = want
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    want.sort();
    assert_eq!(got, want, "{}", line(r));
}

/// The `key` text of each record of a JSON list, in order.
pub fn texts<'a>(records: &'a Value, key: &str) -> Vec<&'a str> {
    records
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {records}"))
        .iter()
        .map(|r| r[key].as_str().unwrap_or_else(|| panic!("no {key} in {r}")))
        .collect()
}

/// The output keys, sorted.
pub fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

#[track_caller]
pub fn assert_keys(v: &Value, want: &[&str]) {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(keys(v), want, "{v}");
}

pub fn no_store(r: &Resp) -> bool {
    r.headers
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("no-store"))
}

/// What Kandji (the simulator) answers to `GET /api/v1{path}`, read directly; the read is
/// forgotten so it does not count as the connector's.
pub async fn kandji(s: &TestApp, path: &str) -> Value {
    let (status, v) = read_sim(&s.http, &s.sim, path).await;
    assert!(status.is_success(), "{path}: {status}");
    s.sim.clear_requests();
    v
}

/// The status and JSON body the simulated tenant answers to `GET /api/v1{path}` with its token,
/// read directly (the read stays among the tenant's recorded requests).
pub async fn read_sim(
    http: &reqwest::Client,
    sim: &SimHandle,
    path: &str,
) -> (reqwest::StatusCode, Value) {
    let resp = http
        .get(format!("{}/api/v1{path}", sim.base_url()))
        .bearer_auth(sim.token())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body = resp
        .json()
        .await
        .unwrap_or_else(|e| panic!("{path}: {status}: {e}"));
    (status, body)
}

/// The first device of a platform (the simulator keeps it healthy: enrolled, supervised, with a
/// user except on Apple TV).
pub fn device(s: &TestApp, platform: &str) -> Device {
    first_device(&s.sim, platform)
}

/// The first device of a platform of a tenant.
pub fn first_device(sim: &SimHandle, platform: &str) -> Device {
    sim.tenant()
        .first_device_of(platform)
        .unwrap_or_else(|| panic!("no {platform}"))
        .clone()
}

/// A user of the tenant who is not the device's.
pub fn other_user(sim: &SimHandle, d: &Device) -> User {
    let t = sim.tenant();
    t.users
        .iter()
        .find(|u| Some(u.id) != d.user_id)
        .expect("another user")
        .clone()
}

/// A Blueprint the device is not on.
pub fn other_blueprint(sim: &SimHandle, d: &Device) -> Blueprint {
    let t = sim.tenant();
    t.blueprints
        .iter()
        .find(|b| b.id != d.blueprint_id)
        .expect("another Blueprint")
        .clone()
}

pub fn id(d: &Device) -> String {
    d.device_id.to_string()
}

/// The email of the device's user, if it has one.
pub fn user_email(s: &TestApp, d: &Device) -> Option<String> {
    let t = s.sim.tenant();
    d.user_id
        .and_then(|u| t.user(&u))
        .map(|u| u.email.to_string())
}

pub fn new_blueprint(name: &str) -> Blueprint {
    Blueprint {
        id: Uuid::new_v4(),
        name: name.to_string(),
        icon: "ss-files".into(),
        color: "aqua-800".into(),
        description: String::new(),
        params: serde_json::json!({}),
        enrollment_code: EnrollmentCode {
            code: "123456".into(),
            is_active: true,
        },
        kind: "classic".into(),
        library_item_ids: Vec::new(),
    }
}

/// A UUID no fixture has.
pub fn unknown_id() -> String {
    "00000000-0000-4000-8000-0000000000aa".to_string()
}
