//! Several replicas on one PostgreSQL database (KANDJI_CONNECTOR_TEST_POSTGRES_URL; without it
//! every test here says it was skipped and passes). Each test gets a fresh schema.

mod common;
mod pg_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{API_KEY, test_config};
use kandji_connector::config::Config;
use kandji_connector::simulator::{self, SimConfig, SimHandle};
use kandji_connector::store::TokenCipher;
use pg_support::PgSchema;
use serde_json::{Value, json};

struct Replica {
    url: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Replica {
    async fn start(pg: &PgSchema, cipher: &TokenCipher, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(&dir.path().join("unused.db"));
        config.database_url = pg.url();
        config.cipher = cipher.clone();
        config.streams.lease = Duration::from_millis(1_000);
        tweak(&mut config);
        let state = kandji_connector::build_state(config)
            .await
            .expect("replica state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(kandji_connector::serve(
            state,
            listener,
            std::future::pending(),
        ));
        Replica {
            url,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            _dir: dir,
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(API_KEY);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn invoke(&self, connection: &str, card: &str, options: Value) -> (u16, Value) {
        self.send(
            reqwest::Method::POST,
            &format!("/v1/cards/{card}/invoke"),
            Some(json!({"connection": connection, "inputs": {}, "options": options})),
        )
        .await
    }
}

async fn sim(devices: usize) -> SimHandle {
    simulator::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SimConfig {
            devices,
            ..SimConfig::default()
        },
    )
    .await
}

/// Two replicas started at the same moment on an empty schema.
async fn two(pg: &PgSchema, tweak: fn(&mut Config)) -> (Replica, Replica) {
    let (cipher, _) = TokenCipher::generate();
    tokio::join!(
        Replica::start(pg, &cipher, tweak),
        Replica::start(pg, &cipher, tweak)
    )
}

async fn connect(r: &Replica, sim: &SimHandle) -> String {
    let (status, body) = r
        .send(
            reqwest::Method::POST,
            "/v1/connections",
            Some(json!({"name": "sim", "api_url": sim.base_url(), "api_token": sim.token()})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn replicas_start_together_and_share_connections() {
    let Some(pg) = PgSchema::new("replicas_start_together_and_share_connections").await else {
        return;
    };
    let sim = sim(50).await;
    let (a, b) = two(&pg, |_| {}).await;
    for r in [&a, &b] {
        let (status, body) = r.send(reqwest::Method::GET, "/readyz", None).await;
        assert_eq!(status, 200, "{body}");
    }
    let conn = connect(&a, &sim).await;
    let (status, body) = b
        .send(
            reqwest::Method::GET,
            &format!("/v1/connections/{conn}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = b
        .invoke(
            &conn,
            "list_devices",
            json!({"result_set": "first_matching_record"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn one_budget_across_replicas() {
    let Some(pg) = PgSchema::new("one_budget_across_replicas").await else {
        return;
    };
    let sim = sim(50).await;
    let (a, b) = two(&pg, |c| c.kandji.budget_wait = Duration::from_secs(40)).await;
    let conn = connect(&a, &sim).await;
    let (status, body) = b
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/connections/{conn}"),
            Some(json!({"requests_per_hour": 3600})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    sim.clear_requests();
    let (a, b) = (Arc::new(a), Arc::new(b));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let r = if i % 2 == 0 { a.clone() } else { b.clone() };
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            let (status, body) = r
                .invoke(
                    &conn,
                    "list_devices",
                    json!({"result_set": "first_matching_record"}),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            started.elapsed()
        }));
    }
    let mut done: Vec<Duration> = Vec::new();
    for t in tasks {
        done.push(t.await.unwrap());
    }
    done.sort();
    assert_eq!(sim.request_count(), 20, "one Kandji request per invocation");
    // 3,600/h is one a second with a burst of one: 20 requests need 19 s, whichever replica
    // sends them (two independent budgets would need about 9 s).
    let span = *done.last().unwrap();
    assert!(
        span >= Duration::from_millis(18_500),
        "20 requests in {span:?}"
    );
    for w in done.windows(4) {
        assert!(
            w[3] - w[0] >= Duration::from_millis(2_500),
            "spacing: {done:?}"
        );
    }
}

/// A callback receiver that answers slowly and counts.
async fn receiver(delay: Duration) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let h = h.clone();
            async move {
                tokio::time::sleep(delay).await;
                h.fetch_add(1, Ordering::SeqCst);
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hits)
}

async fn until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_cancel_on_one_replica_stops_the_stream_on_the_other() {
    let Some(pg) = PgSchema::new("a_cancel_on_one_replica_stops_the_stream_on_the_other").await
    else {
        return;
    };
    let sim = sim(600).await;
    let (a, b) = two(&pg, |_| {}).await;
    let conn = connect(&a, &sim).await;
    let (url, hits) = receiver(Duration::from_millis(100)).await;
    let (status, body) = a
        .invoke(
            &conn,
            "list_devices",
            json!({"result_set": "stream_matching_records", "helper_flow": {"url": url}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["stream_id"].as_str().expect("stream_id").to_string();
    until("deliveries", Duration::from_secs(10), || {
        hits.load(Ordering::SeqCst) >= 20
    })
    .await;
    let (status, body) = b
        .send(reqwest::Method::DELETE, &format!("/v1/streams/{id}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "cancelled");
    // A notices at its next checkpoint (50 ms) and lets in-flight callbacks (100 ms) end.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let settled = hits.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(hits.load(Ordering::SeqCst), settled, "A stopped delivering");
    assert!(settled < 600);
    let (_, body) = a
        .send(reqwest::Method::GET, &format!("/v1/streams/{id}"), None)
        .await;
    assert_eq!(body["state"], "cancelled", "{body}");
}

/// Measures the cost the shared budget adds to each Kandji call (one statement, one round trip).
/// Prints the figure; the README quotes it.
#[tokio::test]
async fn shared_budget_cost_per_call() {
    let Some(pg) = PgSchema::new("shared_budget_cost_per_call").await else {
        return;
    };
    let (cipher, _) = TokenCipher::generate();
    let store = kandji_connector::store::open(&pg.url(), cipher)
        .await
        .unwrap();
    let n = 500;
    let started = Instant::now();
    for _ in 0..n {
        store
            .budget_take(
                "conn_bench",
                Duration::from_micros(1),
                Duration::from_secs(1),
            )
            .await
            .unwrap();
    }
    let per = started.elapsed() / n;
    eprintln!("shared budget: {per:?} per Kandji call (mean of {n}, local PostgreSQL)");
    assert!(per < Duration::from_millis(50), "{per:?}");
    store.close().await;
}
