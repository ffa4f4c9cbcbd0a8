//! A helper-flow callback receiver on 127.0.0.1 whose answers can be scripted per record index
//! or switched for all at run time (succeed, fail with a status, 429 with Retry-After, redirect,
//! answer slowly). It records every POST as it arrives.

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
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// The helper flow's signing secret in the tests.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A helper flow at `url`, signed with `SECRET`, with a state to pass back.
pub fn helper_flow(url: &str) -> Value {
    json!({"url": url, "secret": SECRET, "state": {"flow": "offboarding", "run": 7}})
}

#[derive(Clone, Debug)]
pub enum Answer {
    Ok,
    Status(u16, &'static str),
    RetryAfter(u64),
    Redirect,
    /// 200 after this long (recorded on arrival: the connector may give up first).
    Slow(Duration),
}

/// One POST the receiver saw.
#[derive(Clone, Debug)]
pub struct Hit {
    pub at: Instant,
    /// `webhook-id`
    pub id: String,
    pub timestamp: String,
    pub signature: Option<String>,
    pub raw: Bytes,
    pub body: Value,
    pub answered: u16,
}

impl Hit {
    pub fn index(&self) -> u64 {
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
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<ReceiverState>,
}

impl Receiver {
    pub async fn start() -> Self {
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

    /// The hook's URL, carrying a token in its query as real helper flows do.
    pub fn url(&self) -> String {
        format!("http://{}/hook?token=flow-token-123", self.addr)
    }

    /// The next answers to give for record `index` (then the default).
    pub fn script(&self, index: u64, answers: Vec<Answer>) {
        self.state
            .script
            .lock()
            .unwrap()
            .insert(index, answers.into());
    }

    /// The answer to every POST not scripted (initially `Answer::Ok`).
    pub fn answer_all(&self, a: Answer) {
        *self.state.default.lock().unwrap() = Some(a);
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    pub fn hit_count(&self) -> usize {
        self.state.hits.lock().unwrap().len()
    }

    /// Waits until at least `n` callbacks have arrived; fails, naming `what`, after `within`.
    pub async fn wait_for(&self, what: &str, n: usize, within: Duration) {
        super::eventually(what, within, async || self.hit_count() >= n).await;
    }

    /// TCP connections accepted.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// POSTs that followed a redirect to `/elsewhere`.
    pub fn redirected(&self) -> usize {
        self.state.redirected.load(Ordering::SeqCst)
    }

    /// Hits by index, in arrival order.
    pub fn by_index(&self) -> BTreeMap<u64, Vec<Hit>> {
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
    if let Answer::Slow(d) = answer {
        tokio::time::sleep(d).await;
    }
    resp
}

async fn elsewhere(State(s): State<Arc<ReceiverState>>) -> StatusCode {
    s.redirected.fetch_add(1, Ordering::SeqCst);
    StatusCode::OK
}

/// Checks a hit's Standard Webhooks signature (with `SECRET`) independently of the connector's code.
#[track_caller]
pub fn assert_signed(h: &Hit) {
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
