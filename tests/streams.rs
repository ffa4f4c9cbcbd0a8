//! Streaming result sets end to end: the real server, the simulated tenant and a real callback
//! receiver, all on 127.0.0.1. The SIGKILL test runs the real binary.
//!
//! The delivery tests run on both stores (`both!`: `name::sqlite` and `name::postgres`; the
//! PostgreSQL half says it was skipped without KANDJI_CONNECTOR_TEST_POSTGRES_URL).

mod common;
mod pg_support;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{API_KEY, TestServer};
use hmac::{Hmac, KeyInit, Mac};
use kandji_connector::simulator::SimConfig;
use kandji_connector::streams::CallbackPolicy;
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

// ---------------------------------------------------------------------------------------------
// A callback receiver whose answers can be scripted per record index.

#[derive(Clone, Debug)]
enum Answer {
    Ok,
    Status(u16, &'static str),
    RetryAfter(u64),
    Redirect,
    Slow(Duration),
}

#[derive(Clone, Debug)]
struct Hit {
    at: Instant,
    id: String,
    timestamp: String,
    signature: Option<String>,
    raw: Bytes,
    body: Value,
    answered: u16,
}

impl Hit {
    fn index(&self) -> u64 {
        self.body["index"].as_u64().expect("index")
    }
}

#[derive(Default)]
struct ReceiverState {
    hits: Mutex<Vec<Hit>>,
    script: Mutex<HashMap<u64, VecDeque<Answer>>>,
    default: Mutex<Option<Answer>>,
    redirected: AtomicUsize,
    connections: AtomicUsize,
}

#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
}

impl Receiver {
    async fn start() -> Self {
        let state = Arc::new(ReceiverState::default());
        let app = axum::Router::new()
            .route("/hook", post(receive))
            .route("/elsewhere", post(elsewhere))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counter = state.clone();
        let listener = listener.tap_io(move |_| {
            counter.connections.fetch_add(1, Ordering::SeqCst);
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { addr, state }
    }

    fn url(&self) -> String {
        format!("http://{}/hook?token=flow-token-123", self.addr)
    }

    /// The next answers to give for record `index` (then 200).
    fn script(&self, index: u64, answers: Vec<Answer>) {
        self.state
            .script
            .lock()
            .unwrap()
            .insert(index, answers.into());
    }

    fn answer_all(&self, a: Answer) {
        *self.state.default.lock().unwrap() = Some(a);
    }

    fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    fn hit_count(&self) -> usize {
        self.state.hits.lock().unwrap().len()
    }

    fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Hits by index, in arrival order.
    fn by_index(&self) -> BTreeMap<u64, Vec<Hit>> {
        let mut m: BTreeMap<u64, Vec<Hit>> = BTreeMap::new();
        for h in self.hits() {
            m.entry(h.index()).or_default().push(h);
        }
        m
    }
}

async fn receive(State(s): State<Arc<ReceiverState>>, headers: HeaderMap, raw: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let index = body["index"].as_u64().unwrap_or(u64::MAX);
    let scripted = s
        .script
        .lock()
        .unwrap()
        .get_mut(&index)
        .and_then(VecDeque::pop_front);
    let answer = scripted
        .or_else(|| s.default.lock().unwrap().clone())
        .unwrap_or(Answer::Ok);
    let (status, resp) = match answer {
        Answer::Ok | Answer::Slow(_) => (200, (StatusCode::OK, "ok").into_response()),
        Answer::Status(code, text) => (
            code,
            (StatusCode::from_u16(code).unwrap(), text.to_string()).into_response(),
        ),
        Answer::RetryAfter(secs) => (
            429,
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", secs.to_string())],
                "slow down",
            )
                .into_response(),
        ),
        Answer::Redirect => (
            302,
            (StatusCode::FOUND, [("location", "/elsewhere")], "").into_response(),
        ),
    };
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    s.hits.lock().unwrap().push(Hit {
        at: Instant::now(),
        id: h("webhook-id").unwrap_or_default(),
        timestamp: h("webhook-timestamp").unwrap_or_default(),
        signature: h("webhook-signature"),
        raw,
        body,
        answered: status,
    });
    // Recorded on arrival: a slow answer may be given up on by the connector.
    if let Answer::Slow(d) = answer {
        tokio::time::sleep(d).await;
    }
    resp
}

async fn elsewhere(State(s): State<Arc<ReceiverState>>) -> StatusCode {
    s.redirected.fetch_add(1, Ordering::SeqCst);
    StatusCode::OK
}

/// Checks a hit's Standard Webhooks signature independently of the connector's code.
fn assert_signed(h: &Hit) {
    let key = STANDARD
        .decode(SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", h.id, h.timestamp).as_bytes());
    mac.update(&h.raw);
    let want = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    assert_eq!(
        h.signature.as_deref(),
        Some(want.as_str()),
        "signature of {}",
        h.id
    );
    let ts: i64 = h.timestamp.parse().expect("numeric webhook-timestamp");
    assert!(
        (chrono::Utc::now().timestamp() - ts).abs() < 60,
        "timestamp {ts}"
    );
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn helper_flow(url: &str) -> Value {
    json!({"url": url, "secret": SECRET, "state": {"flow": "offboarding", "run": 7}})
}

/// Starts a stream and returns its id, asserting the 202.
async fn start_stream(server: &TestServer, card: &str, inputs: Value, options: Value) -> String {
    let r = server.invoke(card, inputs, options).await;
    assert_eq!(r.status, 202, "{card}: {}", r.body);
    let id = r.body["stream_id"].as_str().expect("stream_id").to_string();
    assert!(id.starts_with("str_"), "{id}");
    assert_eq!(r.body["status_url"], format!("/v1/streams/{id}"));
    assert_eq!(
        r.headers.get("location").unwrap().to_str().unwrap(),
        format!("/v1/streams/{id}")
    );
    id
}

/// Polls the stream until it is no longer running.
async fn finished(server: &TestServer, id: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let r = server.get(&format!("/v1/streams/{id}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        if r.body["state"] != "running" {
            return r.body;
        }
        assert!(
            Instant::now() < deadline,
            "stream still running: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Record ids in Kandji's order, read straight from the simulated tenant's API by following
/// its paging (offset for devices, `next` links elsewhere).
async fn kandji_ids(server: &TestServer, path: &str, id_field: &str) -> Vec<String> {
    let base = server.sim.base_url();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut ids = Vec::new();
    let mut query = if path == "/devices" {
        "limit=300&offset=0".to_string()
    } else {
        String::new()
    };
    loop {
        let body: Value = http
            .get(format!("{base}/api/v1{path}?{query}"))
            .bearer_auth(server.sim.token())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let records = body
            .get("results")
            .unwrap_or(&body)
            .as_array()
            .expect("records")
            .clone();
        ids.extend(
            records
                .iter()
                .map(|r| r[id_field].as_str().expect("id").to_string()),
        );
        if path == "/devices" {
            if records.len() < 300 {
                break;
            }
            query = format!("limit=300&offset={}", ids.len());
            continue;
        }
        match body.get("next").and_then(Value::as_str) {
            Some(next) => query = next.split_once('?').unwrap().1.to_string(),
            None => break,
        }
    }
    server.sim.clear_requests();
    ids
}

fn kandji_queries(server: &TestServer, path_suffix: &str) -> Vec<String> {
    server
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with(path_suffix))
        .map(|r| r.query.clone().unwrap_or_default())
        .collect()
}

/// Which store a test's server uses: SQLite (a temporary file), or PostgreSQL at this URL.
struct Db(Option<String>);

/// A test server on `db`'s store.
async fn start_on(
    db: &Db,
    sim: SimConfig,
    tweak: impl FnOnce(&mut kandji_connector::config::Config),
) -> TestServer {
    TestServer::start_with(sim, |c| {
        if let Some(url) = &db.0 {
            c.database_url = url.clone();
        }
        tweak(c)
    })
    .await
}

async fn server_with(db: &Db, devices: usize) -> TestServer {
    start_on(
        db,
        SimConfig {
            devices,
            ..SimConfig::default()
        },
        |_| {},
    )
    .await
}

/// Runs `$name(db: Db)` on SQLite (`$name::sqlite`) and on PostgreSQL (`$name::postgres`).
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(super::Db(None)).await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(pg) =
                    super::pg_support::PgSchema::new(concat!(stringify!($name), "::postgres")).await
                {
                    super::$name(super::Db(Some(pg.url()))).await;
                    drop(pg);
                }
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Tests

both!(all_four_list_cards_stream_every_record_once_signed);
/// All four list cards stream every record exactly once, in Kandji's order, signed, with the
/// helper state; the devices stream pages through Kandji with its largest page.
async fn all_four_list_cards_stream_every_record_once_signed(db: Db) {
    let server = server_with(&db, 1000).await;
    let receiver = Receiver::start().await;
    let ade_token = server.sim.tenant().ade_integrations[0].id.to_string();
    let cases = [
        (
            "list_devices",
            json!({}),
            "stream_matching_records",
            "/devices".to_string(),
            "device_id",
        ),
        (
            "list_blueprints",
            json!({}),
            "stream_all_records",
            "/blueprints".to_string(),
            "id",
        ),
        (
            "list_ade_integrations",
            json!({}),
            "stream_all_records",
            "/integrations/apple/ade".to_string(),
            "id",
        ),
        (
            "list_ade_devices",
            json!({"ade_token_id": ade_token}),
            "stream_all_records",
            format!("/integrations/apple/ade/{ade_token}/devices"),
            "id",
        ),
    ];
    for (card, inputs, result_set, path, id_field) in cases {
        let expected = kandji_ids(&server, &path, id_field).await;
        assert!(!expected.is_empty(), "{card}: the tenant has records");
        let before = receiver.hit_count();
        let id = start_stream(
            &server,
            card,
            inputs,
            json!({"result_set": result_set, "helper_flow": helper_flow(&receiver.url())}),
        )
        .await;
        let status = finished(&server, &id, Duration::from_secs(20)).await;
        assert_eq!(status["state"], "succeeded", "{card}: {status}");
        assert_eq!(status["record_count"], expected.len(), "{card}: {status}");
        assert_eq!(status["failed_deliveries"], 0);
        assert_eq!(status["error"], Value::Null);
        assert!(status["finished_at"].is_string() && status["started_at"].is_string());
        assert_eq!(status["card"], card);
        assert_eq!(status["callback"], format!("http://{}", receiver.addr));

        let hits: Vec<Hit> = receiver.hits().split_off(before);
        assert_eq!(
            hits.len(),
            expected.len(),
            "{card}: one callback per record"
        );
        let mut by_index = BTreeMap::new();
        for h in &hits {
            assert_eq!(h.answered, 200);
            assert_signed(h);
            assert_eq!(h.body["stream_id"], id.as_str());
            assert_eq!(h.body["state"], json!({"flow": "offboarding", "run": 7}));
            assert_eq!(
                h.id,
                format!("msg_{}_{}", id.trim_start_matches("str_"), h.index())
            );
            assert!(
                by_index
                    .insert(
                        h.index(),
                        h.body["record"][id_field].as_str().unwrap().to_string()
                    )
                    .is_none(),
                "{card}: index {} twice",
                h.index()
            );
        }
        let delivered: Vec<String> = by_index.into_values().collect();
        assert_eq!(
            delivered, expected,
            "{card}: every record, in Kandji's order"
        );
        if card == "list_devices" {
            // Kandji's largest page, and no request after the short one
            let devices = kandji_queries(&server, "/api/v1/devices");
            assert_eq!(
                devices,
                vec![
                    "limit=300&offset=0",
                    "limit=300&offset=300",
                    "limit=300&offset=600",
                    "limit=300&offset=900"
                ]
            );
            assert_eq!(status["pages_fetched"], 4);
        }
        if card == "list_ade_devices" {
            // two pages: the second found through Kandji's `next` link, which names another
            // host (the simulator's links point at accuhive.kandji.io), rebuilt on the tenant's
            let pages = kandji_queries(&server, "/devices");
            assert_eq!(pages.len(), 2, "{pages:?}");
            assert!(pages[1].contains("page=2"), "{pages:?}");
            assert_eq!(status["pages_fetched"], 2);
        }
    }
    let listed = server.get("/v1/streams").await;
    assert_eq!(
        listed.body["streams"].as_array().unwrap().len(),
        4,
        "{}",
        listed.body
    );
    assert_eq!(
        listed.body["streams"][0]["card"], "list_ade_devices",
        "newest first"
    );
}

both!(newer_list_cards_stream_every_record);
/// The newer list cards stream too: every record their "First 300" result set returns, in the
/// same order and normalised the same way (users across several cursor pages).
async fn newer_list_cards_stream_every_record(db: Db) {
    let server = start_on(
        &db,
        SimConfig {
            devices: 200,
            users_page_size: 40,
            ..SimConfig::default()
        },
        |_| {},
    )
    .await;
    let receiver = Receiver::start().await;
    let (mac, bp, item) = {
        let t = server.sim.tenant();
        (
            t.first_device_of("Mac").unwrap().device_id.to_string(),
            t.blueprints[0].id.to_string(),
            t.library_items[0].id.to_string(),
        )
    };
    let cases = [
        (
            "list_users",
            json!({}),
            "first_300_records",
            "stream_all_matching_records",
        ),
        (
            "list_tags",
            json!({}),
            "first_300_records",
            "stream_all_records",
        ),
        (
            "list_custom_apps",
            json!({}),
            "first_300_records",
            "stream_all_records",
        ),
        (
            "list_device_activity",
            json!({"device_id": mac}),
            "first_300_records",
            "stream_all_records",
        ),
        (
            "list_library_items",
            json!({"blueprint_id": bp}),
            "first_300_records",
            "stream_all_records",
        ),
        (
            "list_library_item_activity",
            json!({"library_item_id": item}),
            "first_300_records",
            "stream_all_records",
        ),
        (
            "list_library_item_statuses",
            json!({"library_item_id": item}),
            "first_300_records",
            "stream_all_records",
        ),
    ];
    for (card, inputs, first, stream) in cases {
        let outputs = server
            .outputs(card, inputs.clone(), json!({"result_set": first}))
            .await;
        let lists: Vec<&Value> = outputs
            .as_object()
            .unwrap()
            .values()
            .filter(|v| v.is_array())
            .collect();
        assert_eq!(lists.len(), 1, "{card}: {outputs}");
        let expected = lists[0].as_array().unwrap().clone();
        assert!(
            !expected.is_empty() && expected.len() < 300,
            "{card}: {} records",
            expected.len()
        );
        server.sim.clear_requests();
        let before = receiver.hit_count();
        let id = start_stream(
            &server,
            card,
            inputs,
            json!({"result_set": stream, "helper_flow": helper_flow(&receiver.url())}),
        )
        .await;
        let status = finished(&server, &id, Duration::from_secs(10)).await;
        assert_eq!(status["state"], "succeeded", "{card}: {status}");
        assert_eq!(status["record_count"], expected.len(), "{card}: {status}");
        let hits: Vec<Hit> = receiver.hits().split_off(before);
        assert_eq!(
            hits.len(),
            expected.len(),
            "{card}: one callback per record"
        );
        let mut by_index = BTreeMap::new();
        for h in &hits {
            assert_signed(h);
            assert!(
                by_index
                    .insert(h.index(), h.body["record"].clone())
                    .is_none(),
                "{card}: index {} twice",
                h.index()
            );
        }
        assert_eq!(
            by_index.into_values().collect::<Vec<_>>(),
            expected,
            "{card}: the same records in the same order"
        );
        if card == "list_users" {
            assert!(expected.len() > 40, "users span several pages");
            assert_eq!(
                status["pages_fetched"].as_u64(),
                Some(server.sim.requests().len() as u64)
            );
            assert!(server.sim.requests().len() > 1, "the cursor was followed");
        }
    }
}

both!(records_are_normalised_like_first_result_sets);
/// Records are normalised as the "First" result sets normalise them.
async fn records_are_normalised_like_first_result_sets(db: Db) {
    let server = server_with(&db, 20).await;
    let receiver = Receiver::start().await;
    let first = server
        .outputs(
            "list_devices",
            json!({}),
            json!({"result_set": "first_200_matching_records"}),
        )
        .await;
    let id = start_stream(
        &server,
        "list_devices",
        json!({}),
        json!({"result_set": "stream_matching_records", "helper_flow": {"url": receiver.url()}}),
    )
    .await;
    assert_eq!(
        finished(&server, &id, Duration::from_secs(10)).await["state"],
        "succeeded"
    );
    let by_index = receiver.by_index();
    for (i, record) in first["devices"].as_array().unwrap().iter().enumerate() {
        let hit = &by_index[&(i as u64)][0];
        assert_eq!(&hit.body["record"], record, "record {i}");
        assert_eq!(hit.body["state"], Value::Null);
        assert_eq!(hit.signature, None, "no secret, no signature");
    }
}

both!(failed_attempts_are_retried_with_the_same_webhook_id);
/// 500s, 429s (with Retry-After) and timeouts are retried until delivered, with the same
/// webhook-id on every attempt.
async fn failed_attempts_are_retried_with_the_same_webhook_id(db: Db) {
    let server = server_with(&db, 30).await;
    let receiver = Receiver::start().await;
    receiver.script(
        3,
        vec![Answer::Status(500, "boom"), Answer::Status(503, "busy")],
    );
    receiver.script(5, vec![Answer::RetryAfter(1)]);
    receiver.script(8, vec![Answer::Slow(Duration::from_millis(2500))]); // past the 2 s callback timeout
    receiver.script(
        13,
        vec![
            Answer::Status(408, "timeout"),
            Answer::Status(502, "bad gateway"),
        ],
    );
    let id = start_stream(&server, "list_devices", json!({}), json!({"result_set": "stream_matching_records", "helper_flow": helper_flow(&receiver.url())})).await;
    let status = finished(&server, &id, Duration::from_secs(20)).await;
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(status["record_count"], 30);
    assert_eq!(status["failed_deliveries"], 0);

    let by_index = receiver.by_index();
    assert_eq!(
        by_index.keys().copied().collect::<Vec<_>>(),
        (0..30).collect::<Vec<u64>>()
    );
    for (i, hits) in &by_index {
        let want = match i {
            3 | 13 => 3,
            5 | 8 => 2,
            _ => 1,
        };
        assert_eq!(hits.len(), want, "attempts of record {i}");
        assert_eq!(
            hits.last().unwrap().answered,
            200,
            "record {i} ends delivered"
        );
        for h in hits {
            assert_eq!(
                h.id, hits[0].id,
                "record {i}: the same webhook-id on every attempt"
            );
            assert_eq!(
                h.raw, hits[0].raw,
                "record {i}: the same body on every attempt"
            );
            assert_signed(h);
        }
    }
    assert_eq!(
        by_index[&3].iter().map(|h| h.answered).collect::<Vec<_>>(),
        vec![500, 503, 200]
    );
    let waited = by_index[&5][1].at - by_index[&5][0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 honoured, waited {waited:?}"
    );
    let failures = server.get(&format!("/v1/streams/{id}/failures")).await;
    assert_eq!(failures.body["failures"], json!([]));
}

both!(refused_records_are_counted_and_listed);
/// 410 and other 4xx are permanent: counted, listed with the callback's answer, not retried;
/// a redirect is a failure too and is not followed.
async fn refused_records_are_counted_and_listed(db: Db) {
    let server = server_with(&db, 12).await;
    let receiver = Receiver::start().await;
    receiver.script(2, vec![Answer::Status(410, "this helper flow was deleted")]);
    receiver.script(6, vec![Answer::Redirect]);
    receiver.script(9, vec![Answer::Status(400, "bad record")]);
    let id = start_stream(&server, "list_devices", json!({}), json!({"result_set": "stream_matching_records", "helper_flow": helper_flow(&receiver.url())})).await;
    let status = finished(&server, &id, Duration::from_secs(10)).await;
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(status["record_count"], 9);
    assert_eq!(status["failed_deliveries"], 3);
    let by_index = receiver.by_index();
    for i in [2, 6, 9] {
        assert_eq!(by_index[&i].len(), 1, "record {i} is not retried");
    }
    assert_eq!(
        receiver.state.redirected.load(Ordering::SeqCst),
        0,
        "redirects are not followed"
    );

    let r = server.get(&format!("/v1/streams/{id}/failures")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let failures = r.body["failures"].as_array().unwrap();
    let summary: Vec<(u64, u64)> = failures
        .iter()
        .map(|f| (f["index"].as_u64().unwrap(), f["status"].as_u64().unwrap()))
        .collect();
    assert_eq!(summary, vec![(2, 410), (6, 302), (9, 400)]);
    assert_eq!(failures[0]["body"], "this helper flow was deleted");
    assert_eq!(failures[0]["attempts"], 1);
    assert_eq!(failures[0]["webhook_id"], by_index[&2][0].id);
    assert!(
        failures[0]["error"].as_str().unwrap().contains("410"),
        "{}",
        failures[0]
    );
    assert!(
        failures[1]["error"]
            .as_str()
            .unwrap()
            .contains("redirects are not followed")
    );
    // paging through the failures
    let r = server
        .get(&format!("/v1/streams/{id}/failures?limit=2"))
        .await;
    assert_eq!(r.body["failures"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["next_after"], 6);
    let r = server
        .get(&format!("/v1/streams/{id}/failures?after=6"))
        .await;
    assert_eq!(r.body["failures"][0]["index"], 9);
    assert_eq!(r.body["next_after"], Value::Null);
}

both!(record_limit_is_exact);
/// `record_limit` is exact: N records and no more are fetched and delivered; 0 streams none;
/// a negative limit is refused.
async fn record_limit_is_exact(db: Db) {
    let server = server_with(&db, 400).await;
    let receiver = Receiver::start().await;
    let opts = |limit: Value| json!({"result_set": "stream_matching_records", "helper_flow": {"url": receiver.url()}, "record_limit": limit});

    let id = start_stream(&server, "list_devices", json!({}), opts(json!(5))).await;
    let status = finished(&server, &id, Duration::from_secs(10)).await;
    assert_eq!(
        (
            status["state"].as_str(),
            status["record_count"].as_u64(),
            status["record_limit"].as_u64()
        ),
        (Some("succeeded"), Some(5), Some(5))
    );
    assert_eq!(
        receiver.by_index().keys().copied().collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    assert_eq!(receiver.hit_count(), 5);
    assert_eq!(
        kandji_queries(&server, "/api/v1/devices"),
        vec!["limit=5&offset=0"]
    );
    server.sim.clear_requests();

    let before = receiver.hit_count();
    let id = start_stream(&server, "list_devices", json!({}), opts(json!(301))).await;
    let status = finished(&server, &id, Duration::from_secs(10)).await;
    assert_eq!(status["record_count"], 301);
    assert_eq!(receiver.hit_count() - before, 301);
    assert_eq!(
        kandji_queries(&server, "/api/v1/devices"),
        vec!["limit=300&offset=0", "limit=1&offset=300"]
    );
    server.sim.clear_requests();

    let before = receiver.hit_count();
    let id = start_stream(&server, "list_devices", json!({}), opts(json!(0))).await;
    let status = finished(&server, &id, Duration::from_secs(10)).await;
    assert_eq!(
        (
            status["state"].as_str(),
            status["record_count"].as_u64(),
            status["pages_fetched"].as_u64()
        ),
        (Some("succeeded"), Some(0), Some(0))
    );
    assert_eq!(receiver.hit_count(), before);
    assert!(
        server.sim.requests().is_empty(),
        "0 records: Kandji is not asked"
    );

    for bad in [json!(-1), json!(2.5), json!("10")] {
        let r = server
            .invoke("list_devices", json!({}), opts(bad.clone()))
            .await;
        assert_eq!(r.problem(422), vec!["options.record_limit"], "{bad}");
    }
    // the connector's stream options belong to stream result sets only
    let r = server.invoke("list_devices", json!({}), json!({"result_set": "first_matching_record", "record_limit": 3, "helper_flow": {"url": receiver.url()}})).await;
    assert_eq!(
        r.problem(422),
        vec!["options.helper_flow", "options.record_limit"]
    );
    let r = server
        .invoke(
            "list_devices",
            json!({}),
            json!({"result_set": "stream_matching_records"}),
        )
        .await;
    assert_eq!(r.problem(422), vec!["options.helper_flow"]);
}

both!(cancel_stops_deliveries);
/// After `DELETE /v1/streams/{id}` answers, no callback starts; the stream is `cancelled` and
/// counts exactly what the receiver accepted.
async fn cancel_stops_deliveries(db: Db) {
    let server = server_with(&db, 600).await;
    let receiver = Receiver::start().await;
    receiver.answer_all(Answer::Slow(Duration::from_millis(100)));
    let id = start_stream(&server, "list_devices", json!({}), json!({"result_set": "stream_matching_records", "helper_flow": helper_flow(&receiver.url())})).await;
    until("a few deliveries", Duration::from_secs(10), || {
        receiver.hit_count() >= 20
    })
    .await;
    let r = server
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/streams/{id}"),
            None,
            Some(API_KEY),
        )
        .await;
    let acked = Instant::now();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["state"], "cancelled");
    let at_ack = receiver.hit_count();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let hits = receiver.hits();
    assert_eq!(
        hits.len(),
        at_ack,
        "no callback after the cancel was acknowledged"
    );
    assert!(hits.iter().all(|h| h.at <= acked));
    let status = server.get(&format!("/v1/streams/{id}")).await.body;
    assert_eq!(status["state"], "cancelled");
    assert!(status["finished_at"].is_string());
    assert_eq!(
        status["record_count"],
        hits.len(),
        "every answered callback is counted: {status}"
    );
    assert!(hits.len() < 600);

    // cancelling again is harmless; a finished stream cannot be cancelled
    let again = server
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/streams/{id}"),
            None,
            Some(API_KEY),
        )
        .await;
    assert_eq!(again.status, 200);
    receiver.answer_all(Answer::Ok);
    let done = start_stream(&server, "list_devices", json!({}), json!({"result_set": "stream_matching_records", "helper_flow": {"url": receiver.url()}, "record_limit": 2})).await;
    finished(&server, &done, Duration::from_secs(10)).await;
    let r = server
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/streams/{done}"),
            None,
            Some(API_KEY),
        )
        .await;
    r.problem(409);
    let r = server
        .send(
            reqwest::Method::DELETE,
            "/v1/streams/str_nope",
            None,
            Some(API_KEY),
        )
        .await;
    r.problem(404);
}

both!(running_streams_are_capped);
/// A connector runs at most `max_running` streams; more are refused with 429 until one ends.
async fn running_streams_are_capped(db: Db) {
    let server = start_on(
        &db,
        SimConfig {
            devices: 300,
            ..SimConfig::default()
        },
        |c| c.streams.max_running = 1,
    )
    .await;
    let receiver = Receiver::start().await;
    receiver.answer_all(Answer::Slow(Duration::from_millis(50)));
    let opts =
        json!({"result_set": "stream_matching_records", "helper_flow": {"url": receiver.url()}});
    let first = start_stream(&server, "list_devices", json!({}), opts.clone()).await;
    let r = server.invoke("list_devices", json!({}), opts.clone()).await;
    r.problem(429);
    assert!(r.headers.get("retry-after").is_some());
    let r = server
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/streams/{first}"),
            None,
            Some(API_KEY),
        )
        .await;
    assert_eq!(r.body["state"], "cancelled");
    start_stream(&server, "list_devices", json!({}), opts).await;
}

/// Every forbidden callback URL gets a 422 naming options.helper_flow.url, and nothing is sent:
/// not to the target (which would answer: it listens on 127.0.0.1) and not to Kandji.
#[tokio::test]
async fn forbidden_callback_urls_are_refused_before_anything_is_sent() {
    let server = TestServer::start_with(SimConfig::default(), |c| {
        c.streams.allow = CallbackPolicy::default()
    })
    .await;
    let receiver = Receiver::start().await;
    let port = receiver.addr.port();
    let urls = [
        format!("http://127.0.0.1:{port}/hook"),
        format!("https://127.0.0.1:{port}/hook"),
        format!("https://localhost:{port}/hook"),
        format!("http://localhost:{port}/hook"),
        format!("https://2130706433:{port}/hook"), // decimal
        format!("https://0x7f000001:{port}/hook"), // hex
        format!("https://0177.0.0.1:{port}/hook"), // octal
        format!("https://0x7f.0.0.1:{port}/hook"), // mixed
        format!("https://127.1:{port}/hook"),      // short form
        format!("https://[::1]:{port}/hook"),
        format!("https://[::ffff:127.0.0.1]:{port}/hook"), // IPv4-mapped IPv6
        format!("https://[::ffff:7f00:1]:{port}/hook"),
        format!("https://0.0.0.0:{port}/hook"),
        "https://169.254.169.254/latest/meta-data".to_string(),
        "https://2852039166/latest/meta-data".to_string(), // 169.254.169.254, decimal
        "https://10.0.0.1/hook".to_string(),
        "https://172.16.5.4/hook".to_string(),
        "https://192.168.1.1/hook".to_string(),
        "https://100.64.0.1/hook".to_string(),
        "https://192.0.2.1/hook".to_string(),
        "https://198.18.0.1/hook".to_string(),
        "https://224.0.0.1/hook".to_string(),
        "https://[fe80::1]/hook".to_string(),
        "https://[fd00::1]/hook".to_string(),
        "https://[2001:db8::1]/hook".to_string(),
        "http://8.8.8.8/hook".to_string(), // public, but not https
        "ftp://8.8.8.8/hook".to_string(),
        "https://user:pass@8.8.8.8/hook".to_string(),
        "not a url".to_string(),
    ];
    for url in &urls {
        let r = server.invoke("list_devices", json!({}), json!({"result_set": "stream_matching_records", "helper_flow": {"url": url, "secret": SECRET}})).await;
        assert_eq!(
            r.problem(422),
            vec!["options.helper_flow.url"],
            "{url}: {}",
            r.body
        );
        assert!(!r.body.to_string().contains(SECRET));
    }
    // a listed CIDR allows exactly that address, and never the mapped IPv6 form
    let listed = TestServer::start_with(SimConfig::default(), |_| {}).await;
    for url in [
        format!("http://127.0.0.2:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        format!("http://localhost:{port}/hook"),
    ] {
        let r = listed
            .invoke(
                "list_devices",
                json!({}),
                json!({"result_set": "stream_matching_records", "helper_flow": {"url": url}}),
            )
            .await;
        assert_eq!(r.problem(422), vec!["options.helper_flow.url"], "{url}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        receiver.connections(),
        0,
        "no connection reached the target"
    );
    assert!(
        server.sim.requests().is_empty() && listed.sim.requests().is_empty(),
        "nothing was sent to Kandji"
    );
    assert_eq!(server.get("/v1/streams").await.body["streams"], json!([]));

    // bad secrets and extra fields are named too, and the secret is never echoed
    let r = server
        .invoke("list_devices", json!({}), json!({"result_set": "stream_matching_records", "helper_flow": {"url": "https://8.8.8.8/", "secret": "whsec_not*base64", "extra": 1}}))
        .await;
    assert_eq!(
        r.problem(422),
        vec!["options.helper_flow.extra", "options.helper_flow.secret"]
    );
    assert!(!r.body.to_string().contains("not*base64"));
}

both!(helper_flow_stays_secret);
/// The helper flow's URL (which may carry a token) and secret are neither returned nor stored
/// in the clear; another API key cannot see the stream.
async fn helper_flow_stays_secret(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret.db");
    let db_url =
        db.0.clone()
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", file.display()));
    let server = TestServer::start_with(
        SimConfig {
            devices: 5,
            ..SimConfig::default()
        },
        |c| {
            c.database_url = db_url.clone();
            c.api_keys.push(
                kandji_connector::api::auth::ApiKey::parse_entry(
                    "other-key-0123456789abcdef cards:invoke",
                )
                .unwrap(),
            );
        },
    )
    .await;
    let receiver = Receiver::start().await;
    let id = start_stream(&server, "list_devices", json!({}), json!({"result_set": "stream_matching_records", "helper_flow": helper_flow(&receiver.url())})).await;
    let status = finished(&server, &id, Duration::from_secs(10)).await;
    assert_eq!(status["state"], "succeeded");
    let everything = format!("{status}{}", server.get("/v1/streams").await.body);
    for secret in [
        SECRET,
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "flow-token-123",
        "offboarding",
    ] {
        assert!(!everything.contains(secret), "{secret} returned");
    }
    let other = server
        .send(
            reqwest::Method::GET,
            &format!("/v1/streams/{id}"),
            None,
            Some("other-key-0123456789abcdef"),
        )
        .await;
    other.problem(404);
    let other = server
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/streams/{id}"),
            None,
            Some("other-key-0123456789abcdef"),
        )
        .await;
    other.problem(404);
    let other = server
        .send(
            reqwest::Method::GET,
            "/v1/streams",
            None,
            Some("other-key-0123456789abcdef"),
        )
        .await;
    assert_eq!(other.body["streams"], json!([]));
    let anon = server
        .send(reqwest::Method::GET, "/v1/streams", None, None)
        .await;
    anon.problem(401);

    server.state.store.close().await;
    let text = match &db.0 {
        None => {
            let mut bytes = std::fs::read(&file).unwrap();
            for ext in ["-wal", "-shm"] {
                bytes.extend(
                    std::fs::read(dir.path().join(format!("secret.db{ext}"))).unwrap_or_default(),
                );
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Some(url) => postgres_text(url).await,
    };
    assert!(text.contains(&id), "the scan reads the database");
    for secret in [
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "flow-token-123",
        "offboarding",
    ] {
        assert!(!text.contains(secret), "{secret} stored in the clear");
    }
}

/// Every row of every table of the test's PostgreSQL schema, as text.
async fn postgres_text(url: &str) -> String {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        tables.len() > 3,
        "the scan sees the connector's tables: {tables:?}"
    );
    let mut text = String::new();
    for (table,) in tables {
        let (rows,): (Option<String>,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT string_agg(t::text, E'\\n') FROM \"{table}\" t"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        text.push_str(&rows.unwrap_or_default());
        text.push('\n');
    }
    pool.close().await;
    text
}

// ---------------------------------------------------------------------------------------------
// The real binary, killed mid-stream.

struct Binary {
    child: std::process::Child,
    url: String,
}

impl Binary {
    fn start(env: &[(&str, String)]) -> Binary {
        use std::io::{BufRead, BufReader};
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kandji-connector"));
        cmd.arg("serve")
            .env_clear()
            .env("NO_COLOR", "1")
            .env("KANDJI_CONNECTOR_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("the binary starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("the server logs its address").unwrap();
            if let Some(rest) = line.split("address=").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Binary {
            child,
            url: format!("http://{addr}"),
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url).bearer_auth(API_KEY);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("the server answers");
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

/// A connector killed with SIGKILL mid-stream and started again on the same database resumes
/// the stream from its checkpoint and finishes it: every record delivered, re-sent ones with
/// their webhook-id; SIGTERM stops it gracefully with nothing to re-send.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_mid_stream_resumes_and_finishes() {
    const DEVICES: usize = 1500;
    let sim = kandji_connector::simulator::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SimConfig {
            devices: DEVICES,
            ..SimConfig::default()
        },
    )
    .await;
    let receiver = Receiver::start().await;
    receiver.answer_all(Answer::Slow(Duration::from_millis(4)));
    let dir = tempfile::tempdir().unwrap();
    let (_, secret_key) = kandji_connector::store::TokenCipher::generate();
    let env = vec![
        ("KANDJI_CONNECTOR_LISTEN", "127.0.0.1:0".to_string()),
        ("KANDJI_CONNECTOR_API_KEYS", API_KEY.to_string()),
        (
            "KANDJI_CONNECTOR_DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.path().join("kill.db").display()),
        ),
        ("KANDJI_CONNECTOR_SECRET_KEY", secret_key),
        (
            "KANDJI_CONNECTOR_CALLBACK_ALLOW",
            "127.0.0.1/32".to_string(),
        ),
        ("KANDJI_CONNECTOR_STREAM_CONCURRENCY", "4".to_string()),
        (
            "KANDJI_CONNECTOR_CALLBACK_RETRY_SCHEDULE_MS",
            "20,40,80".to_string(),
        ),
        ("KANDJI_CONNECTOR_STREAM_CHECKPOINT_MS", "50".to_string()),
    ];
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let first = Binary::start(&env);
    let (s, conn) = call(
        &http,
        reqwest::Method::POST,
        format!("{}/v1/connections", first.url),
        Some(json!({"name": "sim", "api_url": sim.base_url(), "api_token": sim.token()})),
    )
    .await;
    assert_eq!(s, 201, "{conn}");
    let invoke = json!({"connection": conn["id"], "inputs": {}, "options": {"result_set": "stream_matching_records", "helper_flow": helper_flow(&receiver.url())}});
    let (s, started) = call(
        &http,
        reqwest::Method::POST,
        format!("{}/v1/cards/list_devices/invoke", first.url),
        Some(invoke),
    )
    .await;
    assert_eq!(s, 202, "{started}");
    let id = started["stream_id"].as_str().unwrap().to_string();

    // SIGKILL after a few hundred records
    until("records before the kill", Duration::from_secs(20), || {
        receiver.hit_count() >= 500
    })
    .await;
    drop(first);
    sim.clear_requests();
    let at_kill = receiver.by_index().len();
    assert!(at_kill < DEVICES, "killed mid-stream ({at_kill} delivered)");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let hits_at_restart = receiver.hit_count();
    assert_eq!(
        hits_at_restart,
        receiver.hit_count(),
        "nothing is delivered while the connector is down"
    );

    // Started again: it resumes from the checkpoint (not from the start) ...
    let second = Binary::start(&env);
    until("records after the restart", Duration::from_secs(20), || {
        receiver.hit_count() >= hits_at_restart + 300
    })
    .await;
    let first_query = sim
        .requests()
        .iter()
        .find(|r| r.path.ends_with("/devices"))
        .and_then(|r| r.query.clone())
        .unwrap();
    let resumed_at: usize = first_query
        .split("offset=")
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        resumed_at >= 300 && resumed_at <= at_kill,
        "resumed at offset {resumed_at} (killed with {at_kill} delivered)"
    );
    let before_kill = receiver.hits()[..hits_at_restart]
        .iter()
        .map(Hit::index)
        .collect::<std::collections::HashSet<_>>();
    let resent = receiver.hits()[hits_at_restart..]
        .iter()
        .filter(|h| before_kill.contains(&h.index()))
        .count();
    eprintln!(
        "killed with {at_kill} records delivered; resumed at offset {resumed_at}; {resent} re-sent"
    );

    // ... SIGTERM stops it gracefully: in-flight callbacks finish, the checkpoint is saved ...
    let pid = second.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut second = second;
    let exited = tokio::task::spawn_blocking(move || {
        let code = second.child.wait().unwrap();
        (second, code)
    });
    let (second, code) = tokio::time::timeout(Duration::from_secs(10), exited)
        .await
        .expect("SIGTERM ends the process")
        .unwrap();
    assert!(code.success(), "{code}");
    drop(second);
    let after_term = receiver.by_index();
    let hits_at_term = receiver.hit_count();
    assert!(after_term.len() < DEVICES, "stopped mid-stream");

    // ... and a third start finishes it, re-sending nothing that was delivered before SIGTERM.
    let third = Binary::start(&env);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let (s, body) = call(
            &http,
            reqwest::Method::GET,
            format!("{}/v1/streams/{id}", third.url),
            None,
        )
        .await;
        assert_eq!(s, 200, "{body}");
        if body["state"] != "running" {
            break body;
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(status["record_count"], DEVICES);
    assert_eq!(status["failed_deliveries"], 0);
    let by_index = receiver.by_index();
    assert_eq!(
        by_index.keys().copied().collect::<Vec<_>>(),
        (0..DEVICES as u64).collect::<Vec<_>>(),
        "no record missing"
    );
    for (i, hits) in &by_index {
        let want = format!("msg_{}_{i}", id.trim_start_matches("str_"));
        assert!(
            hits.iter().all(|h| h.id == want),
            "record {i}: one webhook-id across restarts"
        );
        assert_signed(&hits[0]);
    }
    let after_third = &receiver.hits()[hits_at_term..];
    let resent_after_term = after_third
        .iter()
        .filter(|h| after_term.contains_key(&h.index()))
        .count();
    assert_eq!(
        resent_after_term, 0,
        "a graceful stop leaves nothing to send twice"
    );
    let ids: Vec<String> = sim
        .tenant()
        .devices
        .iter()
        .map(|d| d.device_id.to_string())
        .collect();
    let delivered: std::collections::BTreeSet<String> = by_index
        .values()
        .map(|h| {
            h[0].body["record"]["device_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        delivered,
        ids.into_iter().collect(),
        "every device, once each"
    );
}
