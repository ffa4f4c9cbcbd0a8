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
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
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
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(kandji_connector::serve(state, listener, async move {
            let _ = stopped.await;
        }));
        Replica {
            url,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            stop: Some(stop),
            served: Some(served),
            _dir: dir,
        }
    }

    /// A graceful shutdown, as on SIGTERM.
    async fn shut_down(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.served.take().unwrap().await.unwrap().unwrap();
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

// ---------------------------------------------------------------------------------------------
// Replica A (the real binary) killed with SIGKILL mid-stream; replica B finishes the stream.

/// One POST the receiver saw: its `webhook-id`, the record's index, when it arrived.
#[derive(Clone, Debug)]
struct Hit {
    webhook_id: String,
    index: u64,
    at: Instant,
}

/// A callback receiver that records every POST as it arrives, then answers 200 after `delay`.
async fn recording_receiver(delay: Duration) -> (String, Arc<std::sync::Mutex<Vec<Hit>>>) {
    let hits: Arc<std::sync::Mutex<Vec<Hit>>> = Arc::default();
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let h = h.clone();
                async move {
                    let body: Value = serde_json::from_slice(&body).expect("a JSON body");
                    h.lock().unwrap().push(Hit {
                        webhook_id: headers
                            .get("webhook-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string(),
                        index: body["index"].as_u64().expect("an index"),
                        at: Instant::now(),
                    });
                    tokio::time::sleep(delay).await;
                    StatusCode::OK
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hits)
}

/// Replica A: the real binary, on the test's schema.
async fn binary_replica(env: &[(&str, String)]) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kandji-connector"));
    cmd.arg("serve")
        .env_clear()
        .env("NO_COLOR", "1")
        .env("KANDJI_CONNECTOR_LOG", "info")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("the binary starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("the server logs its address");
            if let Some(rest) = line.split("address=").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        }
    })
    .await
    .expect("replica A starts");
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, format!("http://{addr}"))
}

/// A stream running on replica A (the binary) is finished by replica B (in-process) after A is
/// killed with SIGKILL: B takes it over once A's lease expires, resumes from A's last checkpoint,
/// and every record arrives, each under one webhook-id, with duplicates bounded by the in-flight
/// window.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_on_a_killed_replica_is_finished_by_the_other() {
    let Some(pg) = PgSchema::new("a_stream_on_a_killed_replica_is_finished_by_the_other").await
    else {
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    const DEVICES: u64 = 3_000;
    const CONCURRENCY: u64 = 8;
    const LEASE: Duration = Duration::from_millis(2_000);
    const CHECKPOINT: Duration = Duration::from_millis(100);
    const CALLBACK_DELAY: Duration = Duration::from_millis(15);
    let sim = sim(DEVICES as usize).await;
    let (url, hits) = recording_receiver(CALLBACK_DELAY).await;
    let (cipher, secret_key) = TokenCipher::generate();

    // A: the binary.
    let (mut child, a_url) = binary_replica(&[
        ("KANDJI_CONNECTOR_LISTEN", "127.0.0.1:0".to_string()),
        ("KANDJI_CONNECTOR_API_KEYS", API_KEY.to_string()),
        ("KANDJI_CONNECTOR_DATABASE_URL", pg.url()),
        ("KANDJI_CONNECTOR_SECRET_KEY", secret_key),
        (
            "KANDJI_CONNECTOR_CALLBACK_ALLOW",
            "127.0.0.1/32".to_string(),
        ),
        (
            "KANDJI_CONNECTOR_STREAM_CONCURRENCY",
            CONCURRENCY.to_string(),
        ),
        (
            "KANDJI_CONNECTOR_STREAM_CHECKPOINT_MS",
            CHECKPOINT.as_millis().to_string(),
        ),
        (
            "KANDJI_CONNECTOR_STREAM_LEASE_MS",
            LEASE.as_millis().to_string(),
        ),
    ])
    .await;
    let a = Replica {
        url: a_url,
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        stop: None,
        served: None,
        _dir: tempfile::tempdir().unwrap(),
    };
    // B: in-process, same schema, same secret key, same stream settings.
    let b = Replica::start(&pg, &cipher, |c| {
        c.streams.concurrency = CONCURRENCY as usize;
        c.streams.checkpoint_interval = CHECKPOINT;
        c.streams.lease = LEASE;
    })
    .await;

    let conn = connect(&a, &sim).await;
    let (status, body) = a
        .invoke(
            &conn,
            "list_devices",
            json!({"result_set": "stream_matching_records", "helper_flow": {"url": url}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["stream_id"].as_str().expect("stream_id").to_string();

    // SIGKILL A mid-stream.
    until("deliveries by A", Duration::from_secs(15), || {
        hits.lock().unwrap().len() >= 600
    })
    .await;
    child.start_kill().expect("SIGKILL");
    let killed_at = Instant::now();
    child.wait().await.unwrap();
    // A's last saved checkpoint, read before B can take the lease over.
    let (done_below, done_above, lease_owner): (i64, String, Option<String>) =
        sqlx::query_as("SELECT done_below, done_above, lease_owner FROM streams WHERE id = $1")
            .bind(&id)
            .fetch_one(&pg.raw().await)
            .await
            .unwrap();
    assert!(lease_owner.is_some(), "A held the lease when it died");
    let saved_done: std::collections::HashSet<u64> = serde_json::from_str::<Vec<u64>>(&done_above)
        .unwrap()
        .into_iter()
        .chain(0..done_below as u64)
        .collect();
    // Requests A had written before it died are counted as A's (they arrive within moments).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let by_a = hits.lock().unwrap().len();
    assert!(
        by_a < DEVICES as usize / 2,
        "killed mid-stream ({by_a} delivered)"
    );

    // B takes the stream over once A's lease has expired, and finishes it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let (s, body) = b
            .send(reqwest::Method::GET, &format!("/v1/streams/{id}"), None)
            .await;
        assert_eq!(s, 200, "{body}");
        if body["state"] != "running" {
            break body;
        }
        assert!(Instant::now() < deadline, "B did not finish it: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(status["record_count"], DEVICES, "{status}");
    assert_eq!(status["failed_deliveries"], 0, "{status}");

    let hits = hits.lock().unwrap().clone();
    let (before, after) = hits.split_at(by_a);
    let first_by_b = after.first().expect("B delivered").at - killed_at;
    // The lease was last renewed at A's last checkpoint (at most one interval, plus the write,
    // before the kill); B sweeps every third of the lease.
    assert!(
        first_by_b >= LEASE - CHECKPOINT - Duration::from_millis(300),
        "B resumed {first_by_b:?} after the kill, before A's lease expired"
    );
    assert!(
        first_by_b <= LEASE + LEASE / 3 + Duration::from_secs(2),
        "B resumed only {first_by_b:?} after the kill"
    );

    // No record missing, each with one webhook-id whichever replica sent it.
    let mut by_index: std::collections::BTreeMap<u64, Vec<&Hit>> = Default::default();
    for h in &hits {
        by_index.entry(h.index).or_default().push(h);
    }
    assert!(
        by_index.keys().copied().eq(0..DEVICES),
        "no record missing ({} distinct of {DEVICES})",
        by_index.len()
    );
    for (i, hs) in &by_index {
        let want = kandji_connector::streams::webhook_id(&id, *i);
        assert!(
            hs.iter().all(|h| h.webhook_id == want),
            "record {i}: one webhook-id on both replicas: {hs:?}"
        );
    }

    // Duplicates: only records A had sent but its last checkpoint did not mark done, and no more
    // than the in-flight window allows. Those are the (at most CONCURRENCY) callbacks in flight
    // when A died, plus those that finished after the snapshot of A's last saved checkpoint:
    // that snapshot is at most one checkpoint interval plus the time to write it (allowed
    // 200 ms) old, and each of the CONCURRENCY slots finishes at most one callback per
    // CALLBACK_DELAY (the receiver's answer time), plus one it had started.
    let sent_by_a: std::collections::HashSet<u64> = before.iter().map(|h| h.index).collect();
    let resent: Vec<u64> = after
        .iter()
        .map(|h| h.index)
        .filter(|i| sent_by_a.contains(i))
        .collect();
    let mut unique = resent.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        resent.len(),
        "B sent no record twice: {resent:?}"
    );
    assert!(
        after.iter().all(|h| !saved_done.contains(&h.index)),
        "B re-sent a record A's checkpoint had marked done"
    );
    let stale = CHECKPOINT + Duration::from_millis(200);
    let between_checkpoints =
        CONCURRENCY * (stale.as_millis() / CALLBACK_DELAY.as_millis()) as u64 + CONCURRENCY;
    let bound = CONCURRENCY + between_checkpoints;
    eprintln!(
        "A delivered {by_a} ({} distinct) before SIGKILL; its checkpoint: done below {done_below}, \
         {} done above; B resumed {first_by_b:?} after the kill and re-sent {} (bound {bound})",
        sent_by_a.len(),
        saved_done.len() - done_below as usize,
        resent.len()
    );
    let duplicates = hits.len() as u64 - DEVICES;
    assert_eq!(
        duplicates,
        resent.len() as u64,
        "every duplicate is a re-send by B"
    );
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates, more than the in-flight window ({bound})"
    );
    drop(child);
}

/// Kandji `/devices` list pages that started a sweep (offset 0, the sync's page size).
fn sweeps(sim: &SimHandle) -> usize {
    sim.requests()
        .iter()
        .filter(|r| {
            r.path == "/api/v1/devices"
                && r.query_pairs().contains(&("offset".into(), "0".into()))
                && r.query_pairs().contains(&("limit".into(), "300".into()))
        })
        .count()
}

async fn inventory(r: &Replica, conn: &str) -> Value {
    let (status, body) = r
        .send(
            reqwest::Method::GET,
            &format!("/v1/connections/{conn}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["inventory"].clone()
}

async fn eventually(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One replica at a time pages through Kandji for a connection's inventory; the other loads
/// each completed sync from the store and answers device-trust lookups from it without calling
/// Kandji. Turning the sync on through one replica reaches the other; when the syncing replica
/// shuts down, the other takes over at once.
#[tokio::test]
async fn replicas_share_one_inventory_sync() {
    let Some(pg) = PgSchema::new("replicas_share_one_inventory_sync").await else {
        return;
    };
    const DEVICES: usize = 700; // three pages
    let sim = sim(DEVICES).await;
    let (a, b) = two(&pg, |c| {
        c.trust.interval = Duration::from_millis(1_000);
    })
    .await;
    let conn = connect(&a, &sim).await;
    let (status, body) = a
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/connections/{conn}"),
            // A budget that lets a sweep take milliseconds, so sweeps are counted per interval.
            Some(json!({"inventory_sync": true, "requests_per_hour": 3_600_000})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // B learns of the change by itself and both hold every device.
    for r in [&a, &b] {
        eventually(
            "both replicas hold the inventory",
            Duration::from_secs(20),
            async || inventory(r, &conn).await["devices"] == DEVICES,
        )
        .await;
    }
    let states = [
        inventory(&a, &conn).await["state"].clone(),
        inventory(&b, &conn).await["state"].clone(),
    ];
    assert!(
        states.contains(&json!("following")),
        "one replica follows: {states:?}"
    );

    // Over several intervals, one sweep an interval between them, not one each.
    sim.clear_requests();
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    let n = sweeps(&sim);
    assert!(
        (2..=6).contains(&n),
        "{n} sweeps in 4.5 intervals by two replicas (one replica syncing: about 4-5; both: about 9)"
    );

    // A change in Kandji reaches both replicas' answers, with no live lookup.
    let serial = {
        let mut t = sim.tenant_mut();
        let i = (0..t.devices.len())
            .find(|&i| t.devices[i].platform == kandji_connector::simulator::Platform::Mac)
            .unwrap();
        t.devices[i].mdm_enabled = false;
        t.touch();
        t.devices[i].serial_number.to_string()
    };
    let trust_path = format!("/v1/connections/{conn}/device-trust?serial_number={serial}");
    for r in [&a, &b] {
        eventually(
            "both replicas see the change",
            Duration::from_secs(10),
            async || {
                let (status, body) = r.send(reqwest::Method::GET, &trust_path, None).await;
                assert_eq!(status, 200, "{body}");
                assert_eq!(body["source"], "inventory", "{body}");
                body["managed"] == false
            },
        )
        .await;
    }
    let live = sim
        .requests()
        .iter()
        .filter(|r| r.query_pairs().iter().any(|(k, _)| k == "serial_number"))
        .count();
    assert_eq!(live, 0, "lookups were answered from the inventory");

    // The syncing replica shuts down (releasing its lease): the other takes over within about
    // a quarter interval, far sooner than the lease's expiry (interval + 60 s).
    let syncing_is_a = inventory(&a, &conn).await["state"] != "following";
    let (mut leaving, staying) = if syncing_is_a { (a, b) } else { (b, a) };
    leaving.shut_down().await;
    sim.clear_requests();
    eventually(
        "the other replica syncs",
        Duration::from_secs(10),
        async || sweeps(&sim) >= 1 && inventory(&staying, &conn).await["state"] != "following",
    )
    .await;
    drop(leaving);
}

/// The sync turned off through the replica that follows: the syncing replica stops within its
/// reconcile period and nothing of the inventory is left in the database (no device, no sync
/// record, no lease), even though the syncing replica kept writing until it learnt of the change.
#[tokio::test]
async fn turning_the_sync_off_through_a_follower_clears_it_everywhere() {
    let Some(pg) = PgSchema::new("turning_the_sync_off_through_a_follower").await else {
        return;
    };
    let sim = sim(700).await;
    let (a, b) = two(&pg, |c| {
        c.trust.interval = Duration::from_millis(300);
    })
    .await;
    let conn = connect(&a, &sim).await;
    let patch = |on: bool| json!({"inventory_sync": on, "requests_per_hour": 3_600_000});
    let (status, body) = a
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/connections/{conn}"),
            Some(patch(true)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for r in [&a, &b] {
        eventually(
            "both replicas hold the inventory",
            Duration::from_secs(20),
            async || inventory(r, &conn).await["devices"] == 700,
        )
        .await;
    }
    let follower = if inventory(&a, &conn).await["state"] == "following" {
        &a
    } else {
        &b
    };
    let (status, body) = follower
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/connections/{conn}"),
            Some(patch(false)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for r in [&a, &b] {
        eventually(
            "both replicas drop the inventory",
            Duration::from_secs(10),
            async || inventory(r, &conn).await.is_null(),
        )
        .await;
    }
    // Give a sweep that was running its chance to write, then look at the tables.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let raw = pg.raw().await;
    for table in ["inventory_devices", "inventory_syncs", "inventory_leases"] {
        let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {table} WHERE connection_id = $1"
        )))
        .bind(&conn)
        .fetch_one(&raw)
        .await
        .unwrap();
        assert_eq!(
            n, 0,
            "{table} still holds rows of a connection whose sync is off"
        );
    }
    raw.close().await;
}
