use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, redirect};
use secrecy::{ExposeSecret, SecretString};

use super::budget::{BudgetReport, Budgets, DEFAULT_REQUESTS_PER_HOUR};
use super::url::{ApiBaseUrl, ApiPath};
use crate::telemetry::{self, KandjiEvent};

/// A Kandji tenant as the client needs it.
#[derive(Clone)]
pub struct Tenant {
    pub connection_id: String,
    pub base: ApiBaseUrl,
    pub token: SecretString,
    /// The connection's share of the tenant's hourly quota.
    pub requests_per_hour: u32,
}

impl Tenant {
    pub fn new(
        connection_id: impl Into<String>,
        base: ApiBaseUrl,
        token: SecretString,
        requests_per_hour: Option<u32>,
    ) -> Self {
        Self {
            connection_id: connection_id.into(),
            base,
            token,
            requests_per_hour: requests_per_hour.unwrap_or(DEFAULT_REQUESTS_PER_HOUR),
        }
    }
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

impl RequestBody {
    /// The `Content-Type` it is sent with; none without a body.
    pub fn content_type(&self) -> Option<&'static str> {
        match self {
            RequestBody::None => None,
            RequestBody::Json(_) => Some("application/json"),
            RequestBody::Form(_) => Some("application/x-www-form-urlencoded"),
        }
    }
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

/// The `User-Agent` of every request to Kandji (a caller's own, on the Custom API Action, wins).
pub const USER_AGENT: &str = concat!("kandji-connector/", env!("CARGO_PKG_VERSION"));

impl KandjiRequest {
    /// The headers this request is sent with, but `Authorization` (the connection's token) and
    /// what the HTTP client adds for framing (`Host`, `Content-Length`): the defaults first,
    /// then the caller's headers (which replace defaults such as `Accept`), then the body's
    /// content type, which the connector owns. A dry run shows exactly these.
    pub fn headers_without_credentials(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            reqwest::header::USER_AGENT,
            HeaderValue::from_static(USER_AGENT),
        );
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        if let Some(ct) = self.body.content_type() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        headers
    }

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
    #[error("the connection's Kandji request budget is spent; retry in {0:?}")]
    Throttled(Duration),
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub connect_timeout: Duration,
    pub total_timeout: Duration,
    pub max_response_bytes: usize,
    /// How long a card invocation may wait for budget before answering 429.
    pub budget_wait: Duration,
    /// Retries after the first attempt (only where retrying is safe).
    pub max_retries: usize,
    pub retry_min_delay: Duration,
    pub retry_max_delay: Duration,
    /// Longest `Retry-After` honoured; longer ones are cut to this.
    pub max_retry_after: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(30),
            max_response_bytes: 16 * 1024 * 1024,
            budget_wait: Duration::from_secs(10),
            max_retries: 4,
            retry_min_delay: Duration::from_millis(250),
            retry_max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

/// How long a caller will wait for budget.
#[derive(Debug, Clone, Copy)]
pub enum Wait {
    /// Cards: up to the configured bound, then `Throttled`.
    Bounded,
    /// Up to this long (device-trust lookups at sign-in), then `Throttled`.
    Upto(Duration),
    /// Streams and background work: as long as it takes.
    Forever,
}

/// A part of a connection's request rate set aside for one kind of request (device-trust live
/// lookups): each such request takes one request's worth from the share and then from the
/// connection's budget, so the kind never uses more than `fraction` of the rate, and everything
/// else keeps the rest. With several replicas the share is one GCRA row in the store (named
/// `<connection>/<name>`), like the connection's budget.
#[derive(Debug, Clone, Copy)]
pub struct Share {
    /// Names the share's budget (and its row in the store).
    pub name: &'static str,
    /// Of the connection's rate, above 0 and at most 1.
    pub fraction: f64,
}

impl Share {
    /// The share's own hourly rate for a connection of `per_hour`: at least one request an hour.
    pub fn per_hour(&self, per_hour: u32) -> u32 {
        let n = (f64::from(per_hour.max(1)) * self.fraction.clamp(0.0, 1.0)).floor();
        (n as u32).max(1)
    }
}

/// Counts kept in one place, by connection and card, for the metrics endpoint.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub requests: u64,
    pub retries: u64,
    pub kandji_429: u64,
    pub budget_waits: u64,
    pub budget_refusals: u64,
    pub timeouts: u64,
    pub errors: u64,
}

#[derive(Default)]
pub struct Stats {
    by_key: Mutex<HashMap<String, HashMap<String, Counts>>>,
}

impl Stats {
    fn bump(&self, connection: &str, label: &str, f: impl FnOnce(&mut Counts)) {
        let mut m = self.by_key.lock().expect("stats lock");
        if !m.contains_key(connection) {
            m.insert(connection.to_string(), HashMap::new());
        }
        let per_card = m.get_mut(connection).expect("inserted");
        if !per_card.contains_key(label) {
            per_card.insert(label.to_string(), Counts::default());
        }
        f(per_card.get_mut(label).expect("inserted"));
    }
    /// (connection, card or "-", counts)
    pub fn snapshot(&self) -> Vec<(String, String, Counts)> {
        let m = self.by_key.lock().expect("stats lock");
        let mut v: Vec<_> = m
            .iter()
            .flat_map(|(c, per)| per.iter().map(move |(l, n)| (c.clone(), l.clone(), *n)))
            .collect();
        v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        v
    }
    pub fn total(&self) -> Counts {
        let m = self.by_key.lock().expect("stats lock");
        m.values()
            .flat_map(|per| per.values())
            .fold(Counts::default(), |mut a, n| {
                a.requests += n.requests;
                a.retries += n.retries;
                a.kandji_429 += n.kandji_429;
                a.budget_waits += n.budget_waits;
                a.budget_refusals += n.budget_refusals;
                a.timeouts += n.timeouts;
                a.errors += n.errors;
                a
            })
    }
}

enum Attempt {
    Answer(KandjiResponse),
    /// Failed before the request left (connect error): safe to retry whatever the method.
    NotSent(KandjiError),
    Failed(KandjiError),
}

#[derive(Clone)]
pub struct KandjiClient {
    http: reqwest::Client,
    config: ClientConfig,
    budgets: Arc<Budgets>,
    /// The budgets of shares ([`Share`]), keyed `<connection>/<share>`.
    shares: Arc<Budgets>,
    /// With several replicas: the store that holds every connection's budget (GCRA row).
    shared: Option<Arc<dyn crate::store::Store>>,
    stats: Arc<Stats>,
    epoch: Instant,
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
            .user_agent(USER_AGENT)
            .build()?;
        Ok(Self {
            http,
            config,
            budgets: Arc::new(Budgets::default()),
            shares: Arc::new(Budgets::default()),
            shared: None,
            stats: Arc::new(Stats::default()),
            epoch: Instant::now(),
        })
    }

    /// Takes every connection's request budget from `store` (one atomic `UPDATE` of the
    /// connection's GCRA row per request), so all replicas sharing the store together stay
    /// within the tenant's budget. Kandji's rate-limit headers are still honoured per replica.
    pub fn with_shared_budget(mut self, store: Arc<dyn crate::store::Store>) -> Self {
        self.shared = Some(store);
        self
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The budget of a connection, as operators see it.
    pub fn budget_report(
        &self,
        connection_id: &str,
        requests_per_hour: Option<u32>,
    ) -> BudgetReport {
        let per_hour = requests_per_hour.unwrap_or(DEFAULT_REQUESTS_PER_HOUR);
        match self.budgets.peek(connection_id) {
            Some(b) if b.per_hour == per_hour.max(1) => b.report(self.epoch),
            _ => BudgetReport {
                requests_per_hour: per_hour,
                used_last_hour: 0,
                remaining_this_hour: per_hour,
                next_refill_in_seconds: None,
            },
        }
    }

    /// Every connection this process has sent requests for, with its budget (for the metrics).
    pub fn budget_reports(&self) -> Vec<(String, BudgetReport)> {
        self.budgets
            .all()
            .into_iter()
            .map(|(id, b)| (id, b.report(self.epoch)))
            .collect()
    }

    /// A card's request: waits for budget up to the configured bound.
    pub async fn send(
        &self,
        tenant: &Tenant,
        req: &KandjiRequest,
    ) -> Result<KandjiResponse, KandjiError> {
        self.send_with(tenant, req, Wait::Bounded, "-").await
    }

    /// Sends one request within the connection's budget, retrying only what is safe to retry:
    /// GETs on connection errors, timeouts, 429, 502, 503, 504; any method on 429 or when the
    /// connection could not even be opened. POST/PATCH/PUT/DELETE are never re-sent after a 5xx
    /// or a timeout, because Kandji may already have queued the MDM command.
    pub async fn send_with(
        &self,
        tenant: &Tenant,
        req: &KandjiRequest,
        wait: Wait,
        label: &str,
    ) -> Result<KandjiResponse, KandjiError> {
        self.send_within(tenant, req, wait, label, None).await
    }

    /// [`Self::send_with`], each attempt (retries too) taking its budget from `share` first,
    /// then from the connection's budget; `wait` bounds the two waits together.
    pub async fn send_within(
        &self,
        tenant: &Tenant,
        req: &KandjiRequest,
        wait: Wait,
        label: &str,
        share: Option<Share>,
    ) -> Result<KandjiResponse, KandjiError> {
        let idempotent = req.method == Method::GET || req.method == Method::HEAD;
        let budget = self
            .budgets
            .get(&tenant.connection_id, tenant.requests_per_hour);
        let share = share.map(|s| {
            let key = format!("{}/{}", tenant.connection_id, s.name);
            let b = self.shares.get(&key, s.per_hour(tenant.requests_per_hour));
            (key, b)
        });
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(self.config.retry_min_delay)
            .with_max_delay(self.config.retry_max_delay)
            .with_factor(2.0)
            .with_max_times(self.config.max_retries)
            .with_jitter()
            .build();
        // Time spent waiting on Kandji's answers (not on budget or back-off) is bounded by the total timeout.
        let mut answer_time = Duration::ZERO;
        let id = &tenant.connection_id;
        loop {
            let deadline = match wait {
                Wait::Bounded => Some(Instant::now() + self.config.budget_wait),
                Wait::Upto(d) => Some(Instant::now() + d),
                Wait::Forever => None,
            };
            let mut waited = false;
            if let Some((key, share)) = &share {
                self.acquire(share, key, id, label, deadline, &mut waited)
                    .await?;
            }
            self.acquire(&budget, id, id, label, deadline, &mut waited)
                .await?;
            let left = self.config.total_timeout.saturating_sub(answer_time);
            if left.is_zero() {
                return Err(KandjiError::Timeout(self.config.total_timeout));
            }
            let started = Instant::now();
            let attempt = match tokio::time::timeout(left, self.attempt(tenant, req, left)).await {
                Ok(a) => a,
                Err(_) => Attempt::Failed(KandjiError::Timeout(self.config.total_timeout)),
            };
            let took = started.elapsed();
            answer_time += took;
            self.stats.bump(id, label, |c| c.requests += 1);
            let class = match &attempt {
                Attempt::Answer(resp) => telemetry::status_class(resp.status),
                _ => "error",
            };
            telemetry::kandji_request(id, label, class, took);
            let (retry, retry_after, outcome) = match attempt {
                Attempt::Answer(resp) => {
                    budget.observe(&resp.headers);
                    let retry =
                        resp.status == 429 || (idempotent && matches!(resp.status, 502..=504));
                    if resp.status == 429 {
                        self.stats.bump(id, label, |c| c.kandji_429 += 1);
                        telemetry::kandji_event(id, label, KandjiEvent::RateLimited);
                    }
                    (retry, retry_after(&resp.headers), Ok(resp))
                }
                Attempt::NotSent(e) => {
                    self.stats.bump(id, label, |c| c.errors += 1);
                    telemetry::kandji_event(id, label, KandjiEvent::ConnectionError);
                    (true, None, Err(e))
                }
                Attempt::Failed(e) => {
                    if matches!(e, KandjiError::Timeout(_)) {
                        self.stats.bump(id, label, |c| c.timeouts += 1);
                        telemetry::kandji_event(id, label, KandjiEvent::Timeout);
                    } else {
                        self.stats.bump(id, label, |c| c.errors += 1);
                        telemetry::kandji_event(id, label, KandjiEvent::ConnectionError);
                    }
                    let transient =
                        matches!(e, KandjiError::Timeout(_) | KandjiError::Unreachable(_));
                    (idempotent && transient, None, Err(e))
                }
            };
            if !retry {
                return outcome;
            }
            let Some(backoff) = delays.next() else {
                return outcome;
            };
            let delay = retry_after.map_or(backoff, |ra| {
                ra.min(self.config.max_retry_after).max(backoff / 4)
            });
            self.stats.bump(id, label, |c| c.retries += 1);
            telemetry::kandji_event(id, label, KandjiEvent::Retry);
            tracing::debug!(connection = %id, card = label, delay_ms = delay.as_millis() as u64, "retrying a Kandji request");
            tokio::time::sleep(delay).await;
        }
    }

    /// Takes one request's worth of `budget` (named `key` in a shared store; `id` is the
    /// connection, for counts), waiting until `deadline` at most (`None`: as long as it takes).
    /// `waited` notes (for the counts) that this attempt has waited already.
    async fn acquire(
        &self,
        budget: &super::budget::Budget,
        key: &str,
        id: &str,
        label: &str,
        deadline: Option<Instant>,
        waited: &mut bool,
    ) -> Result<(), KandjiError> {
        loop {
            let taken = match &self.shared {
                None => budget.try_acquire(self.epoch),
                Some(store) => match budget.paused_for() {
                    Some(p) => Err(p),
                    None => match store
                        .budget_take(key, budget.interval, budget.tolerance)
                        .await
                    {
                        Ok(crate::store::BudgetTake::Granted) => {
                            budget.count(self.epoch);
                            Ok(())
                        }
                        Ok(crate::store::BudgetTake::Wait(w)) => Err(w),
                        Err(e) => {
                            // The database is down: keep this replica within the budget alone
                            // rather than stop talking to Kandji.
                            tracing::warn!(connection = %id, error = %e, "shared budget unavailable; using this replica's own");
                            budget.try_acquire(self.epoch)
                        }
                    },
                },
            };
            match taken {
                Ok(()) => return Ok(()),
                Err(need) => {
                    // The deadline counts every wait, the store's answers included.
                    if let Some(deadline) = deadline
                        && Instant::now() + need > deadline
                    {
                        self.stats.bump(id, label, |c| c.budget_refusals += 1);
                        telemetry::kandji_event(id, label, KandjiEvent::BudgetRefusal);
                        return Err(KandjiError::Throttled(need));
                    }
                    if !*waited {
                        *waited = true;
                        self.stats.bump(id, label, |c| c.budget_waits += 1);
                        telemetry::kandji_event(id, label, KandjiEvent::BudgetWait);
                    }
                    tokio::time::sleep(need.max(Duration::from_millis(1))).await;
                }
            }
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// One attempt: sends the request and reads the answer (capped).
    async fn attempt(&self, tenant: &Tenant, req: &KandjiRequest, timeout: Duration) -> Attempt {
        match self.attempt_inner(tenant, req, timeout).await {
            Ok(r) => Attempt::Answer(r),
            Err(e) => e,
        }
    }

    async fn attempt_inner(
        &self,
        tenant: &Tenant,
        req: &KandjiRequest,
        timeout: Duration,
    ) -> Result<KandjiResponse, Attempt> {
        let url = tenant
            .base
            .endpoint(&req.path, req.raw_query.as_deref(), &req.query)
            .map_err(|m| Attempt::Failed(KandjiError::InvalidRequest(m)))?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", tenant.token.expose_secret()))
            .map_err(|_| {
            Attempt::Failed(KandjiError::InvalidRequest(
                "the stored token is not a valid header value".into(),
            ))
        })?;
        auth.set_sensitive(true);
        let mut headers = req.headers_without_credentials();
        headers.insert(AUTHORIZATION, auth);
        let body = match &req.body {
            RequestBody::None => None,
            RequestBody::Json(b) | RequestBody::Form(b) => Some(b.clone()),
        };
        let mut builder = self
            .http
            .request(req.method.clone(), url)
            .timeout(timeout)
            .headers(headers);
        if let Some(b) = body {
            builder = builder.body(b);
        }
        let resp = builder.send().await.map_err(|e| {
            if e.is_connect() {
                Attempt::NotSent(self.classify(e))
            } else {
                Attempt::Failed(self.classify(e))
            }
        })?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let limit = self.config.max_response_bytes;
        if resp.content_length().is_some_and(|n| n as usize > limit) {
            return Err(Attempt::Failed(KandjiError::TooLarge(limit)));
        }
        let mut resp = resp;
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| Attempt::Failed(self.classify(e)))?
        {
            if body.len() + chunk.len() > limit {
                return Err(Attempt::Failed(KandjiError::TooLarge(limit)));
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

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}
