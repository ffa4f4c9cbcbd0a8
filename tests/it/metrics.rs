//! What operators see: `GET /metrics` (who may read it, on which listener), the exact counts a
//! real Prometheus scrapes after known traffic (`needs_prometheus`), label sets that do not grow
//! with devices, and the JSON log format.

use std::collections::BTreeMap;
use std::time::Duration;

use kandji_connector::simulator::{Fault, Platform};
use serde_json::{Value, json};

use crate::harness::kandji::first_device;
use crate::harness::repo_file;
use crate::harness::{
    API_KEY, Answer, Binary, Receiver, TestApp, devices, eventually, helper_flow, start_sim,
};

const FULL_KEY: &str = "metrics-test-full-key-0123456789";
const METRICS_KEY: &str = "metrics-test-prom-key-0123456789";
const TRUST_KEY: &str = "metrics-test-trust-key-012345678";
const SECRET_KEY: &str = "q8dXzK0m3nQ1r2s3t4u5v6w7x8y9z0A1B2C3D4E5F6s=";

/// The binary with three keys (every scope, `metrics:read` only, `trust:read` only), callbacks
/// to 127.0.0.1 allowed, and `extra` settings.
async fn serve(dir: &tempfile::TempDir, extra: &[(&str, String)]) -> Binary {
    let mut env = vec![
        (
            "KANDJI_CONNECTOR_API_KEYS",
            format!("{FULL_KEY},{METRICS_KEY} metrics:read,{TRUST_KEY} trust:read"),
        ),
        ("KANDJI_CONNECTOR_SECRET_KEY", SECRET_KEY.to_string()),
        (
            "KANDJI_CONNECTOR_DATABASE_URL",
            format!("sqlite://{}/t.db?mode=rwc", dir.path().display()),
        ),
        (
            "KANDJI_CONNECTOR_CALLBACK_ALLOW",
            "127.0.0.1/32".to_string(),
        ),
        (
            "KANDJI_CONNECTOR_CALLBACK_RETRY_SCHEDULE_MS",
            "50,50".to_string(),
        ),
        (
            "KANDJI_CONNECTOR_INVENTORY_INTERVAL_MS",
            "3600000".to_string(),
        ),
    ];
    env.extend(extra.iter().cloned());
    Binary::serve(&env).await
}

async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = http.request(method, url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("the connector answers");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

/// The series of an exposition text: `name{labels}` → value (comments left out).
fn series(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("name value");
            (k.to_string(), v.parse().expect("a number"))
        })
        .collect()
}

/// Every metric name in a text: `kandji_connector_…`, `http_server_…`, `process_…`.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for prefix in ["kandji_connector_", "http_server_", "process_"] {
        let mut rest = text;
        while let Some(i) = rest.find(prefix) {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(tail.len());
            out.insert(tail[..end].to_string());
            rest = &tail[end..];
        }
    }
    out
}

/// The dashboard's queries, with its variables given their "All" values.
fn dashboard_queries() -> Vec<String> {
    let dash: Value = serde_json::from_str(&repo_file(
        "deploy/grafana/dashboards/kandji-connector.json",
    ))
    .unwrap();
    let mut out = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(
                t["expr"]
                    .as_str()
                    .unwrap()
                    .replace("$instance", ".*")
                    .replace("$connection", ".*")
                    .replace("$__rate_interval", "1m"),
            );
        }
    }
    out
}

/// The metrics the code records (named in src/telemetry.rs), the README's table and the
/// dashboard's queries name the same set.
#[test]
fn the_readme_and_the_dashboard_name_the_metrics_the_code_records() {
    let code = metric_names(&repo_file("src/telemetry.rs"));
    assert!(code.len() > 25, "{code:?}");
    let readme = repo_file("README.md");
    let section = &readme[readme
        .find("\n## Metrics and logs")
        .expect("a Metrics section")..];
    let table: std::collections::BTreeSet<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect();
    assert_eq!(
        table, code,
        "README's metrics table against src/telemetry.rs"
    );
    let base = |n: &str| {
        ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| n.strip_suffix(s).filter(|b| code.contains(*b)))
            .unwrap_or(n)
            .to_string()
    };
    let queries = dashboard_queries();
    let used: std::collections::BTreeSet<String> = queries
        .iter()
        .flat_map(|q| metric_names(q))
        .map(|n| base(&n))
        .collect();
    let unknown: Vec<_> = used.difference(&code).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics nobody records: {unknown:?}"
    );
    let unshown: Vec<_> = code.difference(&used).collect();
    assert!(
        unshown.is_empty(),
        "metrics the dashboard does not show: {unshown:?}"
    );
}

#[tokio::test]
async fn metrics_need_the_metrics_read_scope_or_the_metrics_listener() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(
        &dir,
        &[("KANDJI_CONNECTOR_METRICS_LISTEN", "127.0.0.1:0".to_string())],
    )
    .await;
    let http = server.http.clone();
    let url = format!("{}/metrics", server.url);
    let get =
        |key: Option<&'static str>, url: String| send(&http, reqwest::Method::GET, url, key, None);

    let (status, headers, body) = get(None, url.clone()).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");
    let (status, _, body) = get(Some(TRUST_KEY), url.clone()).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("metrics:read"), "{body}");
    // A metrics:read key reads the metrics and nothing else.
    let (status, headers, body) = get(Some(METRICS_KEY), url.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let s = series(&body);
    assert_eq!(
        s.get(&format!(
            "kandji_connector_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        Some(&1.0),
        "{body}"
    );
    assert!(s.contains_key("process_start_time_seconds"), "{body}");
    let (status, _, body) = get(Some(METRICS_KEY), format!("{}/v1/cards", server.url)).await;
    assert_eq!(status, 403, "{body}");
    // The route template, never the raw path, labels the HTTP metrics.
    let (status, _, _) = get(
        Some(FULL_KEY),
        format!("{}/v1/cards/lock_device", server.url),
    )
    .await;
    assert_eq!(status, 200);
    let (_, _, body) = get(Some(METRICS_KEY), url.clone()).await;
    let key = "http_server_request_duration_seconds_count{http_request_method=\"GET\",http_route=\"/v1/cards/{id}\",http_response_status_code=\"200\"}";
    assert_eq!(series(&body).get(key), Some(&1.0), "{body}");
    assert!(!body.contains("lock_device"), "{body}");

    // The second listener serves the same without a key, and nothing else.
    let logs = server.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("metrics endpoint listening"))
        .unwrap_or_else(|| panic!("the metrics listener's address is logged: {logs}"));
    let addr = crate::harness::binary_address(line).unwrap();
    let (status, _, body) = get(None, format!("http://{addr}/metrics")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("kandji_connector_build_info"), "{body}");
    let (status, _, _) = get(None, format!("http://{addr}/v1/cards")).await;
    assert_eq!(status, 404);
    let (status, _, _) = get(Some(FULL_KEY), format!("http://{addr}/v1/cards")).await;
    assert_eq!(status, 404);
    server.kill().await;
}

#[tokio::test]
async fn metrics_off_records_nothing_and_answers_404() {
    let app = TestApp::with_config(|c| c.metrics.enabled = false).await;
    let r = app.get("/metrics").await;
    r.problem(404);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("KANDJI_CONNECTOR_METRICS=off"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn series_do_not_grow_with_device_ids_or_serial_numbers() {
    let app = TestApp::builder()
        .requests_per_hour(100_000_000)
        // 2,000 calls, 32 at a time: faster than the default 500 a second a key may send.
        .config(|c| {
            c.rate_limit_per_second = 1_000_000;
            c.rate_limit_burst = 1_000_000;
        })
        .start()
        .await;
    let text = async || {
        let r = app.get("/metrics").await;
        assert_eq!(r.status, 200);
        r.body.as_str().unwrap().to_string()
    };
    // Every kind of call n times, each with another device and serial number.
    let round = async |n: usize| {
        use futures::StreamExt;
        futures::stream::iter(0..n)
            .map(|_| async {
                let device = uuid::Uuid::new_v4().to_string();
                let serial = format!(
                    "C0{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..10].to_uppercase()
                );
                // Kandji answers 404 for a device it does not know: kandji_error.
                let r = app.get_device(&device).await;
                assert_eq!(r.status, 200, "{}", r.body);
                let r = app
                    .get(&format!(
                        "/v1/connections/{}/device-trust?serial_number={serial}",
                        app.connection
                    ))
                    .await;
                assert_eq!(r.status, 200, "{}", r.body);
                (device, serial)
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await
    };
    round(10).await;
    // The scrape itself is a request: its series exist from the second scrape on.
    text().await;
    let before = series(&text().await);
    let ids = round(1_000).await;
    let after_text = text().await;
    let after = series(&after_text);
    let added: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert!(
        added.is_empty(),
        "1,000 more devices added series: {added:?}"
    );
    assert_eq!(before.len(), after.len());
    let invoked = "kandji_connector_card_invocations_total{card=\"get_device\",outcome=\"kandji_error\",surface=\"http\"}";
    assert_eq!(after.get(invoked), Some(&1010.0), "{after_text}");
    for (device, serial) in &ids {
        assert!(
            !after_text.contains(device.as_str()),
            "a device id in a label"
        );
        assert!(
            !after_text.contains(serial.as_str()),
            "a serial number in a label"
        );
    }
    assert!(!after_text.contains(API_KEY));
}

/// One JSON object a line; a request's id on every line it caused, with its route, status,
/// latency, card and connection; no secret.
#[tokio::test]
async fn json_logs_carry_the_request_id_on_every_line() {
    let sim = start_sim(devices(5)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(
        &dir,
        &[
            ("KANDJI_CONNECTOR_LOG_FORMAT", "json".to_string()),
            ("KANDJI_CONNECTOR_LOG", "debug".to_string()),
        ],
    )
    .await;
    let http = server.http.clone();
    let conn = server.connect_with_key(&sim, FULL_KEY).await;
    let mac = first_device(&sim, Platform::Mac.as_str())
        .device_id
        .to_string();
    let request_id = "req-json-log-test-0001";
    let r = http
        .post(format!("{}/v1/cards/lock_device/invoke", server.url))
        .bearer_auth(FULL_KEY)
        .header("x-request-id", request_id)
        .json(&json!({"connection": conn, "inputs": {"device_id": mac}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], request_id);
    let pin = r.json::<Value>().await.unwrap()["outputs"]["pin"]
        .as_str()
        .unwrap()
        .to_string();
    // A refused one: its problem is logged on a line of its own, under its id.
    let bad_id = "req-json-log-test-0002";
    let r = http
        .post(format!("{}/v1/cards/lock_device/invoke", server.url))
        .bearer_auth(FULL_KEY)
        .header("x-request-id", bad_id)
        .json(&json!({"connection": conn, "inputs": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    server.terminate().await;

    let logs = server.logs();
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object ({e}): {l}"))
        })
        .collect();
    // (sqlx's query events carry their fields and no message.)
    for l in &lines {
        for field in ["timestamp", "level"] {
            assert!(l[field].is_string(), "{field} in {l}");
        }
    }
    let of = |id: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| l["span"]["request_id"] == id)
            .collect()
    };
    let mine = of(request_id);
    assert!(mine.len() >= 2, "the request's lines: {mine:?}");
    for l in &mine {
        assert_eq!(l["span"]["route"], "/v1/cards/{id}/invoke", "{l}");
        assert_eq!(l["span"]["method"], "POST", "{l}");
        assert_eq!(l["span"]["card"], "lock_device", "{l}");
        assert_eq!(l["span"]["connection"], conn.as_str(), "{l}");
    }
    let done = mine
        .iter()
        .find(|l| l["message"] == "request")
        .unwrap_or_else(|| panic!("no request line: {mine:?}"));
    assert_eq!(done["level"], "INFO");
    assert_eq!(done["status"], 200);
    assert!(done["latency_ms"].as_f64().unwrap() > 0.0, "{done}");
    assert!(
        mine.iter().any(|l| l["message"] == "card invoked"),
        "the invocation's own line carries the request id: {mine:?}"
    );
    let bad = of(bad_id);
    assert!(
        bad.iter()
            .any(|l| l["message"] == "Invalid request" && l["status"] == 422),
        "{bad:?}"
    );
    for secret in [FULL_KEY, METRICS_KEY, SECRET_KEY, &sim.token(), &pin] {
        assert!(
            !logs.contains(secret),
            "a secret ({}…) is in the logs",
            &secret[..3]
        );
    }
}

/// Starts a real Prometheus server scraping `target` every second with `key`.
struct Prometheus {
    child: tokio::process::Child,
    url: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(target: &str, key: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(dir.path().join("key"), key).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: connector\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    authorization:\n      type: Bearer\n      credentials_file: {}\n    static_configs:\n      - targets: [\"{target}\"]\n",
            dir.path().join("key").display()
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let child = tokio::process::Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("needs the `prometheus` program (Debian: apt-get install prometheus)");
        let p = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            _dir: dir,
        };
        eventually(
            "Prometheus to be ready",
            Duration::from_secs(30),
            async || {
                p.http
                    .get(format!("{}/-/ready", p.url))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            },
        )
        .await;
        p
    }

    /// The answer to a query, asserting Prometheus ran it (`"status": "success"`).
    async fn query(&self, query: &str) -> Value {
        let r: Value = self
            .http
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", query)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["status"], "success", "{query}: {r}");
        r
    }

    /// The value of a query that gives one number (None: no series).
    async fn value(&self, query: &str) -> Option<f64> {
        let r = self.query(query).await;
        let result = r["data"]["result"].as_array().unwrap();
        assert!(result.len() <= 1, "{query}: more than one series: {r}");
        result
            .first()
            .map(|s| s["value"][1].as_str().unwrap().parse().unwrap())
    }
}

mod needs_prometheus {
    use super::*;

    /// Known traffic, then the exact counts as a real Prometheus scraped them: 3 invocations of
    /// one card (one answered 429 once by Kandji), one invalid input, a stream of 5 records
    /// with one refused delivery, an inventory sync, device-trust lookups from the inventory.
    #[tokio::test]
    async fn a_real_prometheus_scrapes_the_exact_counts() {
        let sim = start_sim(devices(20)).await;
        let receiver = Receiver::start().await;
        let dir = tempfile::tempdir().unwrap();
        let mut server = serve(&dir, &[]).await;
        let target = server.url.trim_start_matches("http://").to_string();
        let prometheus = Prometheus::start(&target, METRICS_KEY).await;
        let http = server.http.clone();
        let post = async |path: &str, body: Value| {
            let (status, _, body) = send(
                &http,
                reqwest::Method::POST,
                format!("{}{path}", server.url),
                Some(FULL_KEY),
                Some(body),
            )
            .await;
            (
                status,
                serde_json::from_str::<Value>(&body).unwrap_or(Value::String(body)),
            )
        };
        // A JSON answer to a GET with the full key.
        let read = async |path: &str| -> Value {
            let url = format!("{}{path}", server.url);
            let (_, _, b) = send(&http, reqwest::Method::GET, url, Some(FULL_KEY), None).await;
            serde_json::from_str(&b).unwrap()
        };
        let (status, body) = post(
            "/v1/connections",
            json!({"name": "t", "api_url": sim.base_url(), "api_token": sim.token(), "requests_per_hour": 1000, "inventory_sync": true}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let conn = body["id"].as_str().unwrap().to_string();
        // The first sync.
        eventually("the inventory sync", Duration::from_secs(20), async || {
            read(&format!("/v1/connections/{conn}")).await["inventory"]["last_sync"].is_object()
        })
        .await;

        let (device, serial) = {
            let t = sim.tenant();
            let d = t.first_device_of(Platform::Mac.as_str()).unwrap();
            (d.device_id.to_string(), d.serial_number.to_string())
        };
        sim.push_faults(
            Some(&format!("/devices/{device}")),
            vec![Fault::rate_limited(1)],
        );
        for _ in 0..3 {
            let (status, body) = post(
                "/v1/cards/get_device/invoke",
                json!({"connection": conn, "inputs": {"device_id": device}, "options": {"details": "basic"}}),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["outputs"]["status_code"], 200, "{body}");
        }
        let (status, body) = post(
            "/v1/cards/get_device/invoke",
            json!({"connection": conn, "inputs": {"device_id": "not-a-uuid"}}),
        )
        .await;
        assert_eq!(status, 422, "{body}");
        for _ in 0..2 {
            let (status, _, body) = send(
                &http,
                reqwest::Method::GET,
                format!(
                    "{}/v1/connections/{conn}/device-trust?serial_number={serial}",
                    server.url
                ),
                Some(TRUST_KEY),
                None,
            )
            .await;
            assert_eq!(status, 200, "{body}");
        }
        receiver.script(2, vec![Answer::Status(410, "this helper flow was deleted")]);
        let (status, body) = post(
            "/v1/cards/list_devices/invoke",
            json!({"connection": conn, "inputs": {}, "options": {"result_set": "stream_matching_records", "helper_flow": helper_flow(&receiver.url()), "record_limit": 5}}),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        let stream = body["stream_id"].as_str().unwrap().to_string();
        eventually("the stream to end", Duration::from_secs(20), async || {
            read(&format!("/v1/streams/{stream}")).await["state"] == "succeeded"
        })
        .await;

        let c = format!("connection=\"{conn}\"");
        let expected: Vec<(String, f64)> = vec![
            ("sum(kandji_connector_card_invocations_total{card=\"get_device\",outcome=\"ok\",surface=\"http\"})".into(), 3.0),
            ("sum(kandji_connector_card_invocations_total{card=\"get_device\",outcome=\"invalid_input\"})".into(), 1.0),
            ("sum(kandji_connector_card_invocations_total{card=\"list_devices\",outcome=\"ok\"})".into(), 1.0),
            (format!("sum(kandji_connector_kandji_requests_total{{{c},card=\"get_device\",status_class=\"2xx\"}})"), 3.0),
            (format!("sum(kandji_connector_kandji_requests_total{{{c},card=\"get_device\",status_class=\"4xx\"}})"), 1.0),
            (format!("sum(kandji_connector_kandji_rate_limited_total{{{c},card=\"get_device\"}})"), 1.0),
            (format!("sum(kandji_connector_kandji_retries_total{{{c},card=\"get_device\"}})"), 1.0),
            (format!("sum(kandji_connector_kandji_requests_total{{{c},card=\"inventory_sync\"}})"), 1.0),
            (format!("sum(kandji_connector_kandji_requests_total{{{c},card=\"list_devices\"}})"), 1.0),
            // The budget left is the hour's 1,000 less every request sent on the connection.
            (format!("sum(kandji_connector_kandji_budget_remaining{{{c}}}) + sum(kandji_connector_kandji_requests_total{{{c}}})"), 1000.0),
            ("sum(kandji_connector_stream_records_delivered_total)".into(), 4.0),
            ("sum(kandji_connector_stream_deliveries_failed_total)".into(), 1.0),
            ("sum(kandji_connector_stream_delivery_attempts_total{outcome=\"delivered\"})".into(), 4.0),
            ("sum(kandji_connector_stream_delivery_attempts_total{outcome=\"refused\"})".into(), 1.0),
            ("sum(kandji_connector_stream_delivery_duration_seconds_count)".into(), 5.0),
            ("sum(kandji_connector_streams_finished_total{state=\"succeeded\"})".into(), 1.0),
            ("sum(kandji_connector_streams_running)".into(), 0.0),
            ("sum(kandji_connector_stream_backlog_records)".into(), 0.0),
            ("sum(kandji_connector_trust_lookups_total{source=\"inventory\"})".into(), 2.0),
            (format!("sum(kandji_connector_inventory_syncs_total{{{c},result=\"ok\"}})"), 1.0),
            (format!("sum(kandji_connector_inventory_devices{{{c}}})"), 20.0),
            (format!("sum(kandji_connector_inventory_last_sync_kandji_calls{{{c}}})"), 1.0),
            ("sum(http_server_request_duration_seconds_count{http_request_method=\"POST\",http_route=\"/v1/cards/{id}/invoke\",http_response_status_code=\"200\"})".into(), 3.0),
            ("sum(http_server_request_duration_seconds_count{http_request_method=\"POST\",http_route=\"/v1/cards/{id}/invoke\",http_response_status_code=\"422\"})".into(), 1.0),
            ("sum(http_server_request_duration_seconds_count{http_request_method=\"POST\",http_route=\"/v1/cards/{id}/invoke\",http_response_status_code=\"202\"})".into(), 1.0),
            ("sum(http_server_request_duration_seconds_count{http_route=\"/v1/connections/{id}/device-trust\",http_response_status_code=\"200\"})".into(), 2.0),
            ("sum(kandji_connector_store_errors_total)".into(), f64::NAN),
            ("up{job=\"connector\"}".into(), 1.0),
        ];
        let mut last = Vec::new();
        // Prometheus scrapes every second: wait for a scrape that saw all of it.
        let settled = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                last.clear();
                for (q, want) in &expected {
                    let got = prometheus.value(q).await;
                    // NaN: no such series (nothing of the kind happened).
                    let ok = if want.is_nan() {
                        got.is_none()
                    } else {
                        got == Some(*want)
                    };
                    if !ok {
                        last.push(format!("{q}: want {want}, got {got:?}"));
                    }
                }
                if last.is_empty() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
        .await;
        assert!(settled.is_ok(), "Prometheus's counts:\n{}", last.join("\n"));
        // Every query of the dashboard is valid PromQL and finds data here.
        for q in dashboard_queries() {
            prometheus.query(&q).await;
        }
        server.kill().await;
        let mut prometheus = prometheus;
        let _ = prometheus.child.kill().await;
    }
}
