use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, redirect};
use secrecy::{ExposeSecret, SecretString};

use super::url::{ApiBaseUrl, ApiPath};

/// A Kandji tenant as the client needs it.
#[derive(Clone)]
pub struct Tenant {
    pub connection_id: String,
    pub base: ApiBaseUrl,
    pub token: SecretString,
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant")
            .field("connection_id", &self.connection_id)
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub enum RequestBody {
    None,
    Json(Bytes),
    Form(Bytes),
}

#[derive(Debug, Clone)]
pub struct KandjiRequest {
    pub method: Method,
    pub path: ApiPath,
    /// A query string given verbatim (the Custom API Action's `?…`, or a `next` link's query).
    pub raw_query: Option<String>,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: RequestBody,
}

impl KandjiRequest {
    pub fn get(path: ApiPath) -> Self {
        Self {
            method: Method::GET,
            path,
            raw_query: None,
            query: Vec::new(),
            headers: Vec::new(),
            body: RequestBody::None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct KandjiResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl KandjiResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
    pub fn is_json(&self) -> bool {
        self.headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.contains("json"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KandjiError {
    #[error("Kandji could not be reached: {0}")]
    Unreachable(String),
    #[error("Kandji did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Kandji's answer exceeded the {0}-byte limit")]
    TooLarge(usize),
    #[error("{0}")]
    InvalidRequest(String),
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub connect_timeout: Duration,
    pub total_timeout: Duration,
    pub max_response_bytes: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(30),
            max_response_bytes: 16 * 1024 * 1024,
        }
    }
}

#[derive(Clone)]
pub struct KandjiClient {
    http: reqwest::Client,
    config: ClientConfig,
}

impl KandjiClient {
    pub fn new(config: ClientConfig) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(redirect::Policy::none())
            .no_proxy()
            .connect_timeout(config.connect_timeout)
            .timeout(config.total_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("kandji-connector/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http, config })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Sends one request to the tenant and reads the answer (capped).
    pub async fn send(&self, tenant: &Tenant, req: &KandjiRequest) -> Result<KandjiResponse, KandjiError> {
        let url = tenant
            .base
            .endpoint(&req.path, req.raw_query.as_deref(), &req.query)
            .map_err(KandjiError::InvalidRequest)?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", tenant.token.expose_secret()))
            .map_err(|_| KandjiError::InvalidRequest("the stored token is not a valid header value".into()))?;
        auth.set_sensitive(true);
        let mut builder = self.http.request(req.method.clone(), url);
        for (name, value) in &req.headers {
            builder = builder.header(name, value);
        }
        builder = builder.header(AUTHORIZATION, auth).header("accept", "application/json");
        builder = match &req.body {
            RequestBody::None => builder,
            RequestBody::Json(b) => builder.header(CONTENT_TYPE, "application/json").body(b.clone()),
            RequestBody::Form(b) => builder
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(b.clone()),
        };
        let resp = builder.send().await.map_err(|e| self.classify(e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let limit = self.config.max_response_bytes;
        if resp.content_length().is_some_and(|n| n as usize > limit) {
            return Err(KandjiError::TooLarge(limit));
        }
        let mut resp = resp;
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.classify(e))? {
            if body.len() + chunk.len() > limit {
                return Err(KandjiError::TooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(KandjiResponse {
            status,
            headers,
            body: Bytes::from(body),
        })
    }

    fn classify(&self, e: reqwest::Error) -> KandjiError {
        if e.is_timeout() {
            KandjiError::Timeout(self.config.total_timeout)
        } else {
            // reqwest's Display never includes headers; strip the URL's query just in case.
            let e = e.without_url();
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                source = s.source();
            }
            KandjiError::Unreachable(msg)
        }
    }
}
