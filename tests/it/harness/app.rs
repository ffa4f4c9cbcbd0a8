//! `TestApp`: the real server on 127.0.0.1:0 in front of a simulated Kandji tenant, and `Api`,
//! a caller of any running connector (in-process or the real binary).

use std::time::Duration;

use kandji_connector::api::auth::ApiKey;
use kandji_connector::config::Config;
use kandji_connector::kandji::ClientConfig;
use kandji_connector::simulator::{self, SimConfig, SimHandle};
use kandji_connector::store::TokenCipher;
use kandji_connector::streams::{CallbackPolicy, RetryPolicy, StreamConfig};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};

use super::TestDb;

/// The key every test app accepts with every scope.
pub const API_KEY: &str = "test-key-0123456789abcdef";

/// An answer of the connector, its body parsed as JSON (or kept as a JSON string when it is not).
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts a problem+json answer with this status and returns its `errors[].loc` joined by ".".
    #[track_caller]
    pub fn problem(&self, status: u16) -> Vec<String> {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(
            self.content_type(),
            "application/problem+json",
            "body: {}",
            self.body
        );
        self.body["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        e["loc"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|s| s.as_str().unwrap().to_string())
                            .collect::<Vec<_>>()
                            .join(".")
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asserts a 200 and returns the body.
    #[track_caller]
    pub fn ok(self) -> Value {
        assert_eq!(self.status, 200, "{}", self.body);
        self.body
    }
}

/// A caller of one running connector: its URL, an HTTP client, and the connection tests invoke
/// cards on (empty until one is made).
#[derive(Clone)]
pub struct Api {
    pub url: String,
    pub http: reqwest::Client,
    pub connection: String,
}

impl Api {
    pub fn new(url: String) -> Self {
        Api {
            url,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            connection: String::new(),
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> Resp {
        let mut req = self.http.request(method, format!("{}{}", self.url, path));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Self::answer(req).await
    }

    /// POSTs `text` as the body, labelled `application/json` but sent as it is: a malformed body.
    pub async fn post_raw(&self, path: &str, text: &str) -> Resp {
        let req = self
            .http
            .post(format!("{}{}", self.url, path))
            .bearer_auth(API_KEY)
            .header("content-type", "application/json")
            .body(text.to_string());
        Self::answer(req).await
    }

    /// POSTs `body` with an `Idempotency-Key`.
    pub async fn post_keyed(&self, path: &str, body: Value, idempotency_key: &str) -> Resp {
        let req = self
            .http
            .post(format!("{}{}", self.url, path))
            .bearer_auth(API_KEY)
            .header("idempotency-key", idempotency_key)
            .json(&body);
        Self::answer(req).await
    }

    /// Sends a request and reads the connector's answer.
    async fn answer(req: reqwest::RequestBuilder) -> Resp {
        let resp = req.send().await.expect("the connector answers");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, None, Some(API_KEY)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(Method::POST, path, Some(body), Some(API_KEY))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.send(Method::PATCH, path, Some(body), Some(API_KEY))
            .await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(Method::DELETE, path, None, Some(API_KEY)).await
    }

    /// Registers the simulated tenant as a connection and returns its id, asserting the 201.
    pub async fn connect(&self, sim: &SimHandle) -> String {
        self.connect_with_key(sim, API_KEY).await
    }

    /// `connect`, with another API key.
    pub async fn connect_with_key(&self, sim: &SimHandle, key: &str) -> String {
        let body = json!({"name": "sim", "api_url": sim.base_url(), "api_token": sim.token()});
        let r = self
            .send(Method::POST, "/v1/connections", Some(body), Some(key))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["id"].as_str().unwrap().to_string()
    }

    /// Sets a connection's Kandji budget (`requests_per_hour`), asserting the 200.
    pub async fn set_budget(&self, connection: &str, requests_per_hour: u64) {
        let path = format!("/v1/connections/{connection}");
        let r = self
            .patch(&path, json!({"requests_per_hour": requests_per_hour}))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }

    /// Invokes a card on the test connection.
    pub async fn invoke(&self, card: &str, inputs: Value, options: Value) -> Resp {
        self.post(
            &format!("/v1/cards/{card}/invoke"),
            json!({"connection": self.connection, "inputs": inputs, "options": options}),
        )
        .await
    }

    /// Invokes a card and returns its outputs, asserting a 200.
    pub async fn outputs(&self, card: &str, inputs: Value, options: Value) -> Value {
        let r = self.invoke(card, inputs, options).await;
        assert_eq!(r.status, 200, "{card}: {}", r.body);
        r.body["outputs"].clone()
    }

    /// Get Device, basic details, of `device_id`: the suite's plain one-request read.
    pub async fn get_device(&self, device_id: &str) -> Resp {
        let inputs = json!({"device_id": device_id});
        self.invoke("get_device", inputs, json!({"details": "basic"}))
            .await
    }

    /// Get Device's outputs, basic details, asserting a 200.
    pub async fn get_device_outputs(&self, device_id: &str) -> Value {
        let inputs = json!({"device_id": device_id});
        self.outputs("get_device", inputs, json!({"details": "basic"}))
            .await
    }

    /// Starts a stream and returns its id, asserting the 202 and where its status is.
    pub async fn start_stream(&self, card: &str, inputs: Value, options: Value) -> String {
        let r = self.invoke(card, inputs, options).await;
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

    /// Streams every device (`list_devices`, `stream_matching_records`) to the helper flow at
    /// `url` and returns the stream's id.
    pub async fn stream_devices(&self, url: &str) -> String {
        let options = json!({"result_set": "stream_matching_records", "helper_flow": {"url": url}});
        self.start_stream("list_devices", json!({}), options).await
    }

    /// Polls a stream until it is no longer running and returns its status.
    pub async fn finished(&self, id: &str, within: Duration) -> Value {
        let mut last = Value::Null;
        super::eventually(&format!("stream {id} to end"), within, async || {
            last = self.get(&format!("/v1/streams/{id}")).await.ok();
            last["state"] != "running"
        })
        .await;
        last
    }
}

/// A simulated Kandji tenant on 127.0.0.1, on a port of its own.
pub async fn start_sim(config: SimConfig) -> SimHandle {
    simulator::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        config,
    )
    .await
}

/// A simulated tenant of `n` devices.
pub fn devices(n: usize) -> SimConfig {
    SimConfig {
        devices: n,
        ..SimConfig::default()
    }
}

/// The configuration every test app starts from: quick timeouts and retries, callbacks to
/// 127.0.0.1 allowed, a SQLite file at `db`.
pub fn test_config(db: &std::path::Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        kandji: ClientConfig {
            connect_timeout: Duration::from_secs(2),
            total_timeout: Duration::from_secs(5),
            max_response_bytes: 16 * 1024 * 1024,
            retry_min_delay: Duration::from_millis(20),
            retry_max_delay: Duration::from_millis(200),
            ..ClientConfig::default()
        },
        max_body_bytes: 256 * 1024,
        request_timeout: Duration::from_secs(60),
        streams: StreamConfig {
            allow: CallbackPolicy::parse("127.0.0.1/32").unwrap(),
            callback_timeout: Duration::from_secs(2),
            retry: RetryPolicy {
                schedule: [20, 40, 80, 160, 320]
                    .into_iter()
                    .map(Duration::from_millis)
                    .collect(),
                max_retry_after: Duration::from_secs(2),
            },
            checkpoint_interval: Duration::from_millis(50),
            ..StreamConfig::default()
        },
        ..Config::defaults(
            format!("sqlite://{}?mode=rwc", db.display()),
            TokenCipher::generate().0,
            vec![ApiKey::all(&SecretString::from(API_KEY.to_string()))],
        )
    }
}

/// The server under test, its simulated tenant, and (unless built `without_connection`) a
/// connection to that tenant. Dereferences to its `Api`.
pub struct TestApp {
    pub api: Api,
    pub sim: SimHandle,
    pub state: kandji_connector::AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for TestApp {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

enum Sim {
    New(SimConfig),
    Shared(SimHandle),
}

/// A change to the configuration, applied when the app starts.
type Tweak<'a> = Box<dyn FnOnce(&mut Config) + Send + 'a>;

/// How a `TestApp` starts; `TestApp::builder()`.
pub struct TestAppBuilder<'a> {
    sim: Sim,
    database_url: Option<String>,
    cipher: Option<TokenCipher>,
    tweaks: Vec<Tweak<'a>>,
    connection: bool,
    requests_per_hour: Option<u64>,
}

impl<'a> TestAppBuilder<'a> {
    /// The simulated tenant's settings (default: `SimConfig::default()`).
    pub fn sim(mut self, config: SimConfig) -> Self {
        self.sim = Sim::New(config);
        self
    }

    /// A simulated tenant of `n` devices.
    pub fn devices(self, n: usize) -> Self {
        self.sim(devices(n))
    }

    /// A tenant already running (several replicas in front of one tenant).
    pub fn shared_sim(mut self, sim: &SimHandle) -> Self {
        self.sim = Sim::Shared(sim.clone());
        self
    }

    /// The store: SQLite or PostgreSQL, as `db` says (default: a SQLite file of the app's own).
    pub fn db(mut self, db: &TestDb) -> Self {
        self.database_url = Some(db.url());
        self
    }

    pub fn database_url(mut self, url: String) -> Self {
        self.database_url = Some(url);
        self
    }

    /// The secret key for stored tokens (default: a fresh one); replicas share one.
    pub fn cipher(mut self, cipher: &TokenCipher) -> Self {
        self.cipher = Some(cipher.clone());
        self
    }

    /// Any change to the configuration; applied after the builder's own settings.
    pub fn config(mut self, tweak: impl FnOnce(&mut Config) + Send + 'a) -> Self {
        self.tweaks.push(Box::new(tweak));
        self
    }

    /// Operator cards from this folder (`operator_cards`).
    pub fn cards_dir(self, dir: &std::path::Path) -> Self {
        let dir = dir.to_path_buf();
        self.config(move |c| c.cards_dir = Some(dir))
    }

    /// One more API key, as an operator writes its entry (`KEY scope… rate=N`).
    pub fn key(self, entry: &'a str) -> Self {
        self.config(move |c| c.api_keys.push(ApiKey::parse_entry(entry).unwrap()))
    }

    /// No connection is registered at start (replicas register through one of them).
    pub fn without_connection(mut self) -> Self {
        self.connection = false;
        self
    }

    /// The test connection's Kandji budget (default: Kandji's 10,000 an hour).
    pub fn requests_per_hour(mut self, n: u64) -> Self {
        self.requests_per_hour = Some(n);
        self
    }

    pub async fn start(self) -> TestApp {
        let sim = match self.sim {
            Sim::New(config) => start_sim(config).await,
            Sim::Shared(sim) => sim,
        };
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(&dir.path().join("test.db"));
        if let Some(url) = self.database_url {
            config.database_url = url;
        }
        if let Some(cipher) = self.cipher {
            config.cipher = cipher;
        }
        for tweak in self.tweaks {
            tweak(&mut config);
        }
        let state = kandji_connector::build_state(config)
            .await
            .expect("server state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(kandji_connector::serve(
            state.clone(),
            listener,
            async move {
                let _ = stopped.await;
            },
        ));
        let mut app = TestApp {
            api: Api::new(url),
            sim,
            state,
            stop: Some(stop),
            served: Some(served),
            _dir: dir,
        };
        if self.connection {
            app.api.connection = app.api.connect(&app.sim).await;
            if let Some(n) = self.requests_per_hour {
                app.set_budget(&app.connection, n).await;
            }
            app.sim.clear_requests();
        }
        app
    }
}

impl TestApp {
    pub fn builder<'a>() -> TestAppBuilder<'a> {
        TestAppBuilder {
            sim: Sim::New(SimConfig::default()),
            database_url: None,
            cipher: None,
            tweaks: Vec::new(),
            connection: true,
            requests_per_hour: None,
        }
    }

    /// The default app: 1,000 simulated devices, a SQLite store, one connection.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// The default app with one change to its configuration.
    pub async fn with_config(tweak: impl FnOnce(&mut Config) + Send) -> Self {
        Self::builder().config(tweak).start().await
    }

    /// A graceful shutdown, as on SIGTERM: returns when the server has stopped.
    pub async fn shut_down(&mut self) {
        let _ = self.stop.take().expect("running").send(());
        self.served.take().unwrap().await.unwrap().unwrap();
    }
}
