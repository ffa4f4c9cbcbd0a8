//! Test harness: the real server on 127.0.0.1:0 in front of a simulated Kandji tenant.
#![allow(dead_code)]

use std::time::Duration;

use kandji_connector::config::Config;
use kandji_connector::kandji::ClientConfig;
use kandji_connector::simulator::{self, SimConfig, SimHandle};
use kandji_connector::store::TokenCipher;
use kandji_connector::streams::{CallbackPolicy, RetryPolicy, StreamConfig};
use secrecy::SecretString;
use serde_json::{Value, json};

pub const API_KEY: &str = "test-key-0123456789abcdef";

pub struct TestServer {
    pub url: String,
    pub sim: SimHandle,
    pub connection: String,
    pub http: reqwest::Client,
    pub state: kandji_connector::AppState,
    _dir: tempfile::TempDir,
}

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
}

pub fn test_config(db: &std::path::Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        api_keys: vec![kandji_connector::api::auth::ApiKey::all(
            &SecretString::from(API_KEY.to_string()),
        )],
        rate_limit_per_second: 500,
        rate_limit_burst: 1000,
        max_concurrent_requests: 1024,
        database_url: format!("sqlite://{}?mode=rwc", db.display()),
        cipher: TokenCipher::generate().0,
        cards_dir: None,
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
        trust: kandji_connector::trust::TrustConfig::default(),
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
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(SimConfig::default(), |_| {}).await
    }

    pub async fn start_with(sim_config: SimConfig, tweak: impl FnOnce(&mut Config)) -> Self {
        let sim = simulator::start(
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            sim_config,
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(&dir.path().join("test.db"));
        tweak(&mut config);
        let state = kandji_connector::build_state(config)
            .await
            .expect("server state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(kandji_connector::serve(
            state.clone(),
            listener,
            std::future::pending(),
        ));
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut server = TestServer {
            url,
            sim,
            connection: String::new(),
            http,
            state,
            _dir: dir,
        };
        let r = server
            .post(
                "/v1/connections",
                json!({"name": "sim", "api_url": server.sim.base_url(), "api_token": server.sim.token()}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        server.connection = r.body["id"].as_str().unwrap().to_string();
        server.sim.clear_requests();
        server
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
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
        let resp = req.send().await.expect("request");
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
        self.send(reqwest::Method::GET, path, None, Some(API_KEY))
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(reqwest::Method::POST, path, Some(body), Some(API_KEY))
            .await
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
}
