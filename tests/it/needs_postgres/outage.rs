//! The database goes away under a running connector, then comes back. PostgreSQL is reached
//! through a TCP proxy the test can cut.
//!
//! What an operator and a workflow engine should see: readiness turns 503 quickly while liveness
//! stays 200; API calls that need the store answer 503 problem+json with `Retry-After` (not a 500,
//! not a hang); an invocation sends nothing to Kandji; everything works again once the database is
//! back, without a restart.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{PgSchema, TestApp, eventually};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// A TCP proxy to the database that can be cut: open connections are dropped, and new ones are
/// either closed at once (the database is down) or accepted and never answered (a partition).
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    hang: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let hang = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::<AbortHandle>::new()));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (up2, hang2, conns2, held2) = (up.clone(), hang.clone(), conns.clone(), held.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !up2.load(Ordering::SeqCst) {
                    if hang2.load(Ordering::SeqCst) {
                        held2.lock().unwrap().push(inbound);
                    }
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns2.lock().unwrap().push(task.abort_handle());
            }
        });
        Proxy {
            addr,
            up,
            hang,
            conns,
            held,
        }
    }

    /// Drops every open connection; new ones are closed at once, or held unanswered if `hang`.
    fn cut(&self, hang: bool) {
        self.hang.store(hang, Ordering::SeqCst);
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
        self.held.lock().unwrap().clear();
    }
}

/// A test server whose PostgreSQL store is reached through `Proxy`.
async fn start() -> (TestApp, Proxy, PgSchema) {
    let pg = PgSchema::new().await;
    let direct = url::Url::parse(&pg.url()).unwrap();
    let target = format!(
        "{}:{}",
        direct.host_str().unwrap(),
        direct.port().unwrap_or(5432)
    );
    let proxy = Proxy::start(target).await;
    let mut proxied = direct.clone();
    proxied.set_host(Some("127.0.0.1")).unwrap();
    proxied.set_port(Some(proxy.addr.port())).unwrap();
    let proxied = proxied.to_string();
    let s = TestApp::builder().database_url(proxied).start().await;
    assert_eq!(s.get("/readyz").await.status, 200);
    (s, proxy, pg)
}

/// Waits (bounded) until readiness is back, then checks the store answers the API again.
async fn recovers(s: &TestApp) {
    eventually("readyz recovers", Duration::from_secs(15), async || {
        s.get("/readyz").await.status == 200
    })
    .await;
    let r = s.get("/v1/connections").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["connections"][0]["id"], s.connection.as_str());
}

#[tokio::test]
async fn a_database_outage_is_a_clear_503_and_the_connector_recovers_by_itself() {
    let (s, proxy, pg) = start().await;
    let device = s.sim.tenant().first_device_of("Mac").unwrap().device_id;

    proxy.cut(false);

    // Readiness: 503 within its own short wait, while liveness still answers.
    let started = Instant::now();
    let r = s.get("/readyz").await;
    r.problem(503);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "readyz took {:?}",
        started.elapsed()
    );
    assert_eq!(r.headers["retry-after"], "5");
    assert_eq!(s.get("/healthz").await.status, 200);

    // Store-backed API calls: 503 problem+json with Retry-After, naming no database detail.
    let r = s.get("/v1/connections").await;
    r.problem(503);
    assert_eq!(r.body["title"], "Store unavailable");
    assert_eq!(r.headers["retry-after"], "5");
    let text = r.body.to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("postgres") && !text.contains(&pg.schema),
        "{text}"
    );

    // An invocation whose connection the store must read: 503, and nothing reaches Kandji.
    let r = s
        .invoke("restart_device", json!({"device_id": device}), json!({}))
        .await;
    r.problem(503);
    assert_eq!(s.sim.requests().len(), 0, "{:?}", s.sim.requests());

    proxy.restore();

    // Back without a restart.
    recovers(&s).await;
    let out = s
        .outputs("restart_device", json!({"device_id": device}), json!({}))
        .await;
    assert_eq!(out["status_code"], 200);
    let sent = s.sim.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].path,
        format!("/api/v1/devices/{device}/action/restart")
    );
}

#[tokio::test]
async fn a_database_that_stops_answering_is_a_bounded_503_not_a_hang() {
    let (s, proxy, _pg) = start().await;
    proxy.cut(true);

    let started = Instant::now();
    let r = s.get("/readyz").await;
    r.problem(503);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1_500) && waited < Duration::from_secs(8),
        "readyz waited {waited:?}: its own 2 s, plus slack for a loaded CI machine"
    );
    assert_eq!(s.get("/healthz").await.status, 200);

    // The pool gives up after its acquire timeout (5 s): a 503, well before the request timeout.
    let started = Instant::now();
    let r = s.get("/v1/connections").await;
    r.problem(503);
    assert_eq!(r.headers["retry-after"], "5");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );

    proxy.restore();
    recovers(&s).await;
}
