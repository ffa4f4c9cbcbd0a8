//! An in-process Kandji tenant for the demo, the tests and the benchmarks.
//!
//! It answers Kandji's API (`/api/v1/...`) as described in `kandji-api.md`: bare-array device
//! paging, DRF envelopes with absolute `next` links on the web-app host, page-numbered ADE device
//! lists, `"True"`/`"False"` strings in device details, and Kandji's assorted error shapes. Every
//! request is recorded, and faults (status codes, delays, hangs, dropped connections) can be
//! queued per path.
//!
//! ```no_run
//! # async fn demo() {
//! use kandji_connector::simulator::{self, SimConfig};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let sim = simulator::start(listener, SimConfig::default()).await;
//! let mac = sim.tenant().first_device_of("Mac").unwrap().device_id;
//! println!("{}/api/v1/devices/{mac} with Bearer {}", sim.base_url(), sim.token());
//! # }
//! ```

// Handlers return a finished error response in `Err`; boxing it would add noise to every
// validation helper for no gain on this cold path.
#![allow(clippy::result_large_err)]

mod catalog;
mod conn;
mod handlers;
mod http;
mod rng;
mod tenant;
mod views;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

pub use catalog::{Model, Platform};
pub use tenant::{
    ADMIN_EMAIL, AdeDevice, AdeIntegration, Blueprint, Command, CustomApp, Device, EnrollmentCode,
    LibraryActivity, LibraryItem, LostMode, Note, Tag, Tenant, User, UserIntegration,
    reference_now,
};

pub use conn::{ConnCtl, CuttableStream, SimListener};
pub use handlers::audit::{Actor, AuditChange};

/// How the simulated tenant is generated and reached.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of devices to generate.
    pub devices: usize,
    /// The API token clients must send as `Authorization: Bearer <token>`.
    pub token: String,
    /// Fixtures are a pure function of `(devices, seed)`.
    pub seed: u64,
    /// Scheme and host put into `next`/`previous` links. Kandji documents links on the web-app
    /// host (`https://accuhive.kandji.io`) rather than the API host, so clients must keep only
    /// the query. `None`: the host the request came to.
    pub next_link_host: Option<String>,
    /// Users per `/users` page. Kandji answers 300 (its documented maximum); tests lower it to
    /// walk several cursor pages of a small tenant.
    pub users_page_size: usize,
    /// Devices that check in between two `GET /devices` requests. Kandji does not guarantee its
    /// default order between requests (kandji-api.md: page with a stable `ordering`); with `n`
    /// above 0 each list request without an `ordering` first moves the `n` devices at the end
    /// of the default order to its front, as devices checking in while a client pages would.
    /// 0 (the default): the order never changes. See also [`SimHandle::set_checkins_per_request`].
    pub checkins_per_request: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            devices: 50,
            token: "00000000-0000-4000-8000-00000000cafe".to_string(),
            seed: 42,
            next_link_host: Some("https://accuhive.kandji.io".to_string()),
            users_page_size: 300,
            checkins_per_request: 0,
        }
    }
}

/// A request as it reached the simulator (including refused and faulted ones).
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// The path as sent, e.g. `/api/v1/devices`.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    /// Header names are lower case.
    pub headers: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub body: Bytes,
}

impl RecordedRequest {
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as `application/x-www-form-urlencoded` pairs.
    pub fn form(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(&self.body)
            .into_owned()
            .collect()
    }

    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.query
            .as_deref()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A misbehaviour to inject into one request.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status. `body` defaults to Kong's `{"message":"API rate limit exceeded"}`
    /// for 429 and to a DRF-style `{"detail": ...}` otherwise.
    Status {
        status: u16,
        retry_after: Option<String>,
        body: Option<String>,
    },
    /// Wait, then answer normally.
    Delay(Duration),
    /// Never answer.
    Hang,
    /// Close the connection without an HTTP answer.
    Drop,
}

impl Fault {
    /// A 429 with a `Retry-After` header, as Kong's rate limiter sends it.
    pub fn rate_limited(retry_after_secs: u64) -> Fault {
        Fault::Status {
            status: 429,
            retry_after: Some(retry_after_secs.to_string()),
            body: None,
        }
    }

    pub fn status(status: u16) -> Fault {
        Fault::Status {
            status,
            retry_after: None,
            body: None,
        }
    }
}

struct FaultRule {
    path_contains: Option<String>,
    faults: VecDeque<Fault>,
}

type OrderCache = HashMap<String, (u64, Arc<Vec<u32>>)>;

/// Shared state behind the simulator's router.
pub struct SimState {
    tenant: RwLock<Tenant>,
    token: String,
    next_link_host: Option<String>,
    users_page_size: usize,
    requests: Mutex<Vec<RecordedRequest>>,
    recording: AtomicBool,
    faults: Mutex<Vec<FaultRule>>,
    order_cache: Mutex<OrderCache>,
    /// Devices moved to the front of the default order by each list request without ordering.
    checkins_per_request: AtomicUsize,
    /// How far the default order has rotated so far (devices moved to the front).
    checked_in: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SimState {
    /// Generates the tenant for `config`.
    pub fn new(config: &SimConfig) -> Arc<SimState> {
        Arc::new(SimState {
            tenant: RwLock::new(Tenant::generate(config.devices, config.seed)),
            token: config.token.clone(),
            next_link_host: config
                .next_link_host
                .as_ref()
                .map(|h| h.trim_end_matches('/').to_string()),
            users_page_size: config.users_page_size.max(1),
            requests: Mutex::new(Vec::new()),
            recording: AtomicBool::new(true),
            faults: Mutex::new(Vec::new()),
            order_cache: Mutex::new(HashMap::new()),
            checkins_per_request: AtomicUsize::new(config.checkins_per_request),
            checked_in: AtomicUsize::new(0),
        })
    }

    /// Devices check in before this list request: how many devices of the end of the default
    /// order now come first (0 while the order is stable).
    pub(crate) fn check_in(&self) -> usize {
        let n = self.checkins_per_request.load(Ordering::Relaxed);
        if n == 0 {
            return self.checked_in.load(Ordering::Relaxed);
        }
        self.checked_in.fetch_add(n, Ordering::Relaxed) + n
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Tenant> {
        self.tenant.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Tenant> {
        self.tenant.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    pub(crate) fn next_link_host(&self) -> Option<&str> {
        self.next_link_host.as_deref()
    }

    pub(crate) fn users_page_size(&self) -> usize {
        self.users_page_size
    }

    pub(crate) fn order_cache(&self) -> MutexGuard<'_, OrderCache> {
        lock(&self.order_cache)
    }

    fn record(&self, r: RecordedRequest) {
        if self.recording.load(Ordering::Relaxed) {
            lock(&self.requests).push(r);
        }
    }

    fn take_fault(&self, path: &str) -> Option<Fault> {
        let mut rules = lock(&self.faults);
        let i = rules.iter().position(|r| {
            r.path_contains
                .as_deref()
                .is_none_or(|needle| path.contains(needle))
        })?;
        let fault = rules[i].faults.pop_front();
        if rules[i].faults.is_empty() {
            rules.remove(i);
        }
        fault
    }
}

/// The simulator's router: records the request, applies a queued fault, then answers as
/// Kandji would. Serve it with connect info [`ConnCtl`] (as [`start`] does) for `Fault::Drop`
/// to close the connection before any byte is written; otherwise the answer's body fails.
pub fn router(state: Arc<SimState>) -> Router {
    Router::new().fallback(entry).with_state(state)
}

async fn entry(State(state): State<Arc<SimState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, 32 << 20).await {
        Ok(b) => b,
        Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    state.record(RecordedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        content_type: content_type.clone(),
        body: body.clone(),
    });

    if let Some(fault) = state.take_fault(parts.uri.path()) {
        match fault {
            Fault::Status {
                status,
                retry_after,
                body,
            } => return fault_response(status, retry_after, body),
            Fault::Delay(d) => tokio::time::sleep(d).await,
            Fault::Hang => std::future::pending::<()>().await,
            Fault::Drop => {
                if let Some(ConnectInfo(conn)) = parts.extensions.get::<ConnectInfo<ConnCtl>>() {
                    conn.kill();
                }
                let failing = futures::stream::once(async {
                    Err::<Bytes, std::io::Error>(std::io::Error::other(
                        "simulated dropped connection",
                    ))
                });
                return Response::new(Body::from_stream(failing));
            }
        }
    }

    let req = http::Req::new(&parts, content_type.as_deref(), &body);
    http::dispatch(&state, &req)
}

fn fault_response(status: u16, retry_after: Option<String>, body: Option<String>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = body.unwrap_or_else(|| {
        if status == StatusCode::TOO_MANY_REQUESTS {
            r#"{"message":"API rate limit exceeded"}"#.to_string()
        } else {
            serde_json::json!({"detail": status.canonical_reason().unwrap_or("Error")}).to_string()
        }
    });
    let content_type = if serde_json::from_str::<serde_json::Value>(&body).is_ok() {
        "application/json"
    } else if body.trim_start().starts_with('<') {
        "text/html; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(v) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// A running simulator.
#[derive(Clone)]
pub struct SimHandle {
    state: Arc<SimState>,
    addr: SocketAddr,
    server: Arc<tokio::task::AbortHandle>,
}

/// Generates the tenant, serves it on `listener` in a spawned task and returns at once.
pub async fn start(listener: tokio::net::TcpListener, config: SimConfig) -> SimHandle {
    let mut addr = listener
        .local_addr()
        .expect("the simulator's listener has a local address");
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let state = SimState::new(&config);
    let app = router(state.clone()).into_make_service_with_connect_info::<ConnCtl>();
    let server = tokio::spawn(async move {
        let _ = axum::serve(SimListener::new(listener), app).await;
    });
    SimHandle {
        state,
        addr,
        server: Arc::new(server.abort_handle()),
    }
}

impl SimHandle {
    /// `http://127.0.0.1:PORT` (without `/api/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn token(&self) -> String {
        self.state.token.clone()
    }

    /// Every request that reached the simulator, in order, refused and faulted ones included.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.requests).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.state.requests).clear();
    }

    pub fn request_count(&self) -> usize {
        lock(&self.state.requests).len()
    }

    /// Stop (or resume) keeping requests, e.g. for long benchmarks.
    pub fn set_recording(&self, on: bool) {
        self.state.recording.store(on, Ordering::Relaxed);
    }

    /// The next requests whose path contains `path_contains` (any request for `None`) get these
    /// faults, one per request, in order; after that they are answered normally.
    pub fn push_faults(&self, path_contains: Option<&str>, faults: Vec<Fault>) {
        if faults.is_empty() {
            return;
        }
        lock(&self.state.faults).push(FaultRule {
            path_contains: path_contains.map(str::to_string),
            faults: faults.into(),
        });
    }

    pub fn clear_faults(&self) {
        lock(&self.state.faults).clear();
    }

    /// Devices that check in between two `GET /devices` requests without an `ordering` (see
    /// [`SimConfig::checkins_per_request`]); 0 stops the default order changing.
    pub fn set_checkins_per_request(&self, n: usize) {
        self.state.checkins_per_request.store(n, Ordering::Relaxed);
    }

    /// Read access to the tenant's data. Do not hold it across an `.await` on a request to the
    /// simulator: the request would wait for it.
    pub fn tenant(&self) -> RwLockReadGuard<'_, Tenant> {
        self.state.read()
    }

    /// Write access, for tests that set up a state (a device in Lost Mode, a locked Mac...).
    pub fn tenant_mut(&self) -> RwLockWriteGuard<'_, Tenant> {
        let mut t = self.state.write();
        t.touch();
        t
    }

    /// Stops accepting connections.
    pub fn shutdown(&self) {
        self.server.abort();
    }
}

/// Binds `listen`, serves a simulator, prints where and with which token, and runs until Ctrl-C.
pub async fn run_standalone(listen: SocketAddr, config: SimConfig) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let devices = config.devices;
    let sim = start(listener, config).await;
    println!("Kandji simulator with {devices} devices");
    println!("  base URL: {}/api/v1", sim.base_url());
    println!("  token:    {}", sim.token());
    tokio::signal::ctrl_c().await?;
    sim.shutdown();
    Ok(())
}
