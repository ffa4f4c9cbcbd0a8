//! Streaming benchmark (not part of the test suite): a separate `simulate` process with
//! 100,000 devices, the connector (`serve`, a fresh process per run so its peak RSS is its
//! own), and a callback receiver in this process that answers 200 at once.
//!
//!     cargo bench --bench streams                  # 10,000 then 100,000 records
//!     cargo bench --bench streams -- 100000        # one run of that many records
//!
//! Prints records/second end to end (invoke to `succeeded`) and the connector's peak RSS
//! (VmHWM from /proc/<pid>/status). Environment: BENCH_CONCURRENCY (callbacks in flight per
//! stream, default 16), BENCH_REQUESTS_PER_HOUR (the connection's Kandji budget, default
//! 3,600,000; 10000 shows Kandji's real quota pacing the stream).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};

const API_KEY: &str = "bench-key-0123456789abcdef";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const DEVICES: usize = 100_000;

/// Sends a request to the connector with the bench's key and reads its JSON answer.
async fn json_of(req: reqwest::RequestBuilder) -> Value {
    req.bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary and returns it with the first stdout line containing `marker` and the
/// `more` lines after it.
fn spawn(args: &[&str], env: &[(&str, String)], marker: &str, more: usize) -> (Proc, Vec<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kandji-connector"));
    cmd.args(args)
        .env("NO_COLOR", "1")
        .env("KANDJI_CONNECTOR_LOG", "warn,kandji_connector=info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut found = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.contains(marker) || !found.is_empty() {
            found.push(line);
            if found.len() > more {
                break;
            }
        }
    }
    assert!(!found.is_empty(), "{args:?} did not print {marker:?}");
    std::thread::spawn(move || for _ in lines {});
    (Proc { child }, found)
}

/// The simulated tenant is not Kandji: by default its connection gets a budget far above
/// Kandji's 10,000 requests an hour, so the figures measure the connector, not the quota
/// (at 10,000/h a stream is paced to 2.8 pages, about 830 records, a second).
fn requests_per_hour() -> u32 {
    std::env::var("BENCH_REQUESTS_PER_HOUR")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_600_000)
}

fn vm(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[derive(Default)]
struct Received {
    count: AtomicU64,
    max_index: AtomicU64,
}

async fn receive(State(r): State<Arc<Received>>, body: Bytes) -> StatusCode {
    // Cheap: the index is near the start of the body.
    let head = &body[..body.len().min(80)];
    if let Some(pos) = head.windows(8).position(|w| w == b"\"index\":") {
        let n: u64 = head[pos + 8..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .fold(0, |a, c| a * 10 + u64::from(c - b'0'));
        r.max_index.fetch_max(n, Ordering::Relaxed);
    }
    r.count.fetch_add(1, Ordering::Relaxed);
    StatusCode::OK
}

async fn run(
    records: u64,
    sim_url: &str,
    sim_token: &str,
    receiver: &str,
    received: &Received,
    dir: &std::path::Path,
) -> Run {
    let (_, key) = kandji_connector::store::TokenCipher::generate();
    let concurrency = std::env::var("BENCH_CONCURRENCY").unwrap_or_else(|_| "16".into());
    let env = vec![
        ("KANDJI_CONNECTOR_LISTEN", "127.0.0.1:0".to_string()),
        ("KANDJI_CONNECTOR_API_KEYS", API_KEY.to_string()),
        (
            "KANDJI_CONNECTOR_DATABASE_URL",
            format!(
                "sqlite://{}?mode=rwc",
                dir.join(format!("bench-{records}.db")).display()
            ),
        ),
        ("KANDJI_CONNECTOR_SECRET_KEY", key),
        (
            "KANDJI_CONNECTOR_CALLBACK_ALLOW",
            "127.0.0.1/32".to_string(),
        ),
        ("KANDJI_CONNECTOR_STREAM_CONCURRENCY", concurrency),
    ];
    let (server, lines) = spawn(&["serve"], &env, "serving", 0);
    let addr = lines[0]
        .split("address=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let base = format!("http://{addr}");
    let pid = server.child.id();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let conn = json_of(
        http.post(format!("{base}/v1/connections"))
            .json(&json!({"name": "sim", "api_url": sim_url, "api_token": sim_token, "requests_per_hour": requests_per_hour()})),
    )
    .await;
    let idle_rss = vm(pid, "VmRSS:");
    received.count.store(0, Ordering::SeqCst);
    received.max_index.store(0, Ordering::SeqCst);
    let started = Instant::now();
    let resp = json_of(
        http.post(format!("{base}/v1/cards/list_devices/invoke"))
            .json(&json!({"connection": conn["id"], "options": {
                "result_set": "stream_matching_records",
                "record_limit": records,
                "helper_flow": {"url": receiver, "secret": SECRET, "state": {"bench": true}},
            }})),
    )
    .await;
    let status_url = format!(
        "{base}{}",
        resp["status_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{resp}"))
    );
    // Highest RSS seen while the first half of the records went out, and while the second did:
    // equal figures mean the connector's memory does not grow with the records streamed.
    let (mut first_half, mut second_half) = (0u64, 0u64);
    let status = loop {
        let s = json_of(http.get(&status_url)).await;
        let rss = vm(pid, "VmRSS:");
        if received.count.load(Ordering::Relaxed) < records / 2 {
            first_half = first_half.max(rss);
        } else {
            second_half = second_half.max(rss);
        }
        if s["state"] != "running" {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let elapsed = started.elapsed().as_secs_f64();
    let peak = vm(pid, "VmHWM:");
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(status["record_count"], records, "{status}");
    assert_eq!(
        received.count.load(Ordering::SeqCst),
        records,
        "one callback per record"
    );
    assert_eq!(received.max_index.load(Ordering::SeqCst), records - 1);
    drop(server);
    Run {
        rate: records as f64 / elapsed,
        peak,
        idle: idle_rss,
        first_half,
        second_half,
    }
}

struct Run {
    rate: f64,
    peak: u64,
    idle: u64,
    first_half: u64,
    second_half: u64,
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.replace(['_', ','], "").parse().ok())
        .collect();
    let runs = if args.is_empty() {
        vec![10_000, 100_000]
    } else {
        args
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let devices = DEVICES.max(*runs.iter().max().unwrap() as usize).to_string();
        let t = Instant::now();
        // `simulate` prints a banner, then its base URL and token on the next lines.
        let (_sim, banner) = spawn(&["simulate", "--listen", "127.0.0.1:0", "--devices", &devices], &[], "Kandji simulator", 2);
        let (sim_url, sim_token) = read_sim(&banner);
        eprintln!("simulator with {devices} devices ready in {:.1}s at {sim_url}", t.elapsed().as_secs_f64());
        let received = Arc::new(Received::default());
        let app = axum::Router::new().route("/hook", post(receive)).with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let dir = tempfile::tempdir().unwrap();
        println!("| records | seconds | records/second | connector peak RSS (VmHWM) | RSS before the stream | max RSS, first half | max RSS, second half |");
        println!("|---:|---:|---:|---:|---:|---:|---:|");
        for n in runs {
            let r = run(n, &sim_url, &sim_token, &receiver, &received, dir.path()).await;
            let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
            println!(
                "| {n} | {:.1} | {:.0} | {} | {} | {} | {} |",
                n as f64 / r.rate,
                r.rate,
                mib(r.peak),
                mib(r.idle),
                mib(r.first_half),
                mib(r.second_half)
            );
        }
    });
}

fn read_sim(lines: &[String]) -> (String, String) {
    let find = |key: &str| {
        lines
            .iter()
            .find_map(|l| l.split_once(key).map(|(_, v)| v.trim().to_string()))
            .unwrap_or_default()
    };
    (
        find("base URL:").trim_end_matches("/api/v1").to_string(),
        find("token:"),
    )
}
