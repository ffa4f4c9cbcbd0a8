//! Every card of the catalog, invoked from its fixture (`tests/fixtures/cards/<card id>.json`)
//! against the real server and the simulated tenant: the exact requests that reached Kandji
//! (method, path, query, body and its encoding, in order, nothing more) and key outputs.
//!
//! A card without a fixture fails the test, and so does a fixture without a card. A fixture is
//! written from the Kandji API contract (kandji-api.md), not recorded from what the code sends:
//!
//! ```json
//! {
//!   "about": "why this example; what of the contract it shows",
//!   "inputs": {"device_id": "{mac}"},
//!   "options": {},
//!   "kandji": [
//!     {"method": "POST", "path": "/api/v1/devices/{mac}/action/erase",
//!      "json": {"PIN": "123456"}}
//!   ],
//!   "outputs": {"/status_code": 200, "/pin": "123456", "/device": {"$type": "object"}}
//! }
//! ```
//!
//! - `kandji[]`: `query` is the exact query string (absent: none); `json` a JSON body with exactly
//!   these keys, `form` a form body with exactly these pairs (any order); neither: no body.
//! - `outputs`: JSON pointer into the card's outputs -> the exact value, or a matcher
//!   `{"$type": "string" | "number" | "boolean" | "array" | "object" | "null"}`,
//!   `{"$len": n}` (an array of n).
//! - `{name}` anywhere stands for a record of the default simulated tenant (see `placeholders`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::harness::TestApp;
use crate::harness::kandji::{assert_form, assert_json, assert_no_body, line, start, take};

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    #[allow(dead_code)]
    about: String,
    #[serde(default = "empty")]
    pub inputs: Value,
    #[serde(default = "empty")]
    pub options: Value,
    /// Invocations that put the tenant in the state the example needs (their requests are not
    /// checked), e.g. Lost Mode turned on before Play Lost Mode Sound.
    #[serde(default)]
    before: Vec<Before>,
    pub kandji: Vec<Expected>,
    outputs: BTreeMap<String, Value>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Before {
    card: String,
    inputs: Value,
}

/// A request the fixture says Kandji must get.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub json: Option<Value>,
    pub form: Option<Vec<(String, String)>>,
}

fn empty() -> Value {
    json!({})
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cards")
}

/// The fixture of a card, its `{name}` placeholders filled in from `app`'s tenant.
pub fn fixture(app: &TestApp, card: &str) -> Fixture {
    let path = dir().join(format!("{card}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{card} has no fixture at {}: {e}", path.display()));
    let raw: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
    let filled = fill(&raw, &placeholders(app));
    serde_json::from_value(filled).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Records of the default simulated tenant a fixture may name.
fn placeholders(app: &TestApp) -> BTreeMap<&'static str, String> {
    let t = app.sim.tenant();
    let mac = t.first_device_of("Mac").expect("a Mac");
    let iphone = t.first_device_of("iPhone").expect("an iPhone");
    let user = &t.users[0];
    let all_staff = &t.blueprints[0];
    BTreeMap::from([
        ("mac", mac.device_id.to_string()),
        ("mac_serial", mac.serial_number.to_string()),
        ("mac_name", mac.device_name.to_string()),
        ("iphone", iphone.device_id.to_string()),
        ("blueprint", all_staff.id.to_string()),
        ("blueprint_name", all_staff.name.to_string()),
        ("blueprint_item", all_staff.library_item_ids[0].to_string()),
        ("library_item", t.library_items[0].id.to_string()),
        ("custom_app", t.custom_apps[0].id.to_string()),
        ("ade_integration", t.ade_integrations[0].id.to_string()),
        ("tag", t.tags[0].id.to_string()),
        ("user", user.id.to_string()),
        ("user_email", user.email.to_string()),
    ])
}

fn fill(v: &Value, vars: &BTreeMap<&str, String>) -> Value {
    match v {
        Value::String(s) => {
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(start) = rest.find('{') {
                let end = rest[start..]
                    .find('}')
                    .unwrap_or_else(|| panic!("unclosed placeholder in {s:?}"));
                let name = &rest[start + 1..start + end];
                let value = vars
                    .get(name)
                    .unwrap_or_else(|| panic!("unknown placeholder {{{name}}} in {s:?}"));
                out.push_str(&rest[..start]);
                out.push_str(value);
                rest = &rest[start + end + 1..];
            }
            out.push_str(rest);
            Value::String(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| fill(x, vars)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| {
                    (
                        k.clone(),
                        if k == "about" {
                            x.clone()
                        } else {
                            fill(x, vars)
                        },
                    )
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Invokes `card` as its fixture says on a fresh app, and checks what reached Kandji and what
/// came back.
async fn check(card: String) {
    let app = start().await;
    let f = fixture(&app, &card);
    for b in &f.before {
        app.outputs(&b.card, b.inputs.clone(), json!({})).await;
    }
    app.sim.clear_requests();
    let outputs = app
        .outputs(&card, f.inputs.clone(), f.options.clone())
        .await;

    let sent = take(&app, f.kandji.len());
    for (got, want) in sent.iter().zip(&f.kandji) {
        let want_line = match &want.query {
            Some(q) => format!("{} {}?{q}", want.method, want.path),
            None => format!("{} {}", want.method, want.path),
        };
        assert_eq!(line(got), want_line, "{card}");
        match (&want.json, &want.form) {
            (Some(body), None) => assert_json(got, body.clone()),
            (None, Some(pairs)) => {
                let pairs: Vec<(&str, &str)> = pairs
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                assert_form(got, &pairs)
            }
            (None, None) => assert_no_body(got),
            (Some(_), Some(_)) => panic!("{card}: a request has one body, json or form"),
        }
    }
    for (pointer, want) in &f.outputs {
        let got = outputs
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{card}: no output at {pointer}: {outputs}"));
        matches(got, want).unwrap_or_else(|e| panic!("{card} {pointer}: {e}; outputs: {outputs}"));
    }
}

fn matches(got: &Value, want: &Value) -> Result<(), String> {
    if let Some(kind) = want.get("$type").and_then(Value::as_str) {
        let is = match got {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        return (is == kind)
            .then_some(())
            .ok_or(format!("a {is}, not a {kind}: {got}"));
    }
    if let Some(n) = want.get("$len").and_then(Value::as_u64) {
        let len = got.as_array().map(Vec::len);
        return (len == Some(n as usize))
            .then_some(())
            .ok_or(format!("{len:?} records, not {n}"));
    }
    (got == want)
        .then_some(())
        .ok_or(format!("{got} is not {want}"))
}

/// The ids of the catalog's cards, as a caller lists them.
pub async fn catalog(app: &TestApp) -> Vec<String> {
    app.get("/v1/cards").await.ok()["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_card_sends_exactly_its_fixtures_requests() {
    let app = TestApp::start().await;
    let cards = catalog(&app).await;
    assert!(!cards.is_empty());

    let mut fixtures: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
        .collect();
    fixtures.sort();
    let without_card: Vec<&String> = fixtures.iter().filter(|f| !cards.contains(f)).collect();
    assert!(
        without_card.is_empty(),
        "fixtures of no card: {without_card:?}"
    );

    // Eight servers at a time: all 46 at once on the test's two worker threads left some
    // connection checks waiting more than the 5 s Kandji timeout on a busy machine.
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
    let runs: Vec<_> = cards
        .iter()
        .map(|card| {
            let (name, slots) = (card.clone(), slots.clone());
            let run = tokio::spawn(async move {
                let _slot = slots.acquire_owned().await.expect("open");
                check(name).await
            });
            (card.clone(), run)
        })
        .collect();
    let mut failed = Vec::new();
    for (card, run) in runs {
        if run.await.is_err() {
            failed.push(card);
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} cards do not match their fixture (each one's panic is above): {failed:?}",
        failed.len(),
        cards.len()
    );
}
