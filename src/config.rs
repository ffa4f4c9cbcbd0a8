//! One typed configuration, read from the environment (flags mirror it) and checked at start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use secrecy::{ExposeSecret, SecretString};

use crate::api::auth::{ApiKey, parse_api_keys};
use crate::events::EventsConfig;
use crate::kandji::ClientConfig;
use crate::mcp::{McpConfig, McpOrigin};
use crate::retention::RetentionConfig;
use crate::store::TokenCipher;
use crate::streams::{CallbackPolicy, StreamConfig};
use crate::telemetry::{LogFormat, MetricsConfig};
use crate::trust::TrustConfig;

/// Where the store is when `KANDJI_CONNECTOR_DATABASE_URL` is not set (`serve` and
/// `rotate-secret-key`; the README's table says the same, and a test holds it to that).
pub const DEFAULT_DATABASE_URL: &str = "sqlite://kandji-connector.db?mode=rwc";

/// Settings of `serve` (and `demo`), each from an environment variable or its flag. The API
/// keys, the secret key and the database URL (which may hold a password) are secrets: `Debug`
/// shows them as `[REDACTED]`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(
        long,
        env = "KANDJI_CONNECTOR_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: String,
    /// Comma-separated API keys that callers send as `Authorization: Bearer <key>`.
    #[arg(long, env = "KANDJI_CONNECTOR_API_KEYS", hide_env_values = true)]
    pub api_keys: Option<SecretString>,
    /// A file of API keys, one entry a line (same format; `#` starts a comment), e.g. a container secret.
    #[arg(long, env = "KANDJI_CONNECTOR_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// Database URL: `sqlite://file.db` (default) or `postgres://…`.
    #[arg(
        long,
        env = "KANDJI_CONNECTOR_DATABASE_URL",
        hide_env_values = true,
        default_value = DEFAULT_DATABASE_URL
    )]
    pub database_url: SecretString,
    /// Base64 of 32 random bytes; stored Kandji tokens are encrypted with it.
    #[arg(long, env = "KANDJI_CONNECTOR_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<SecretString>,
    /// A file holding the secret key (e.g. a container secret).
    #[arg(long, env = "KANDJI_CONNECTOR_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// Requests per second each API key may send (sustained), unless its entry sets `rate=N`.
    #[arg(
        long,
        env = "KANDJI_CONNECTOR_RATE_LIMIT_PER_SECOND",
        default_value_t = 500
    )]
    pub rate_limit_per_second: u32,
    /// Requests each API key may send at once above the sustained rate.
    #[arg(
        long,
        env = "KANDJI_CONNECTOR_RATE_LIMIT_BURST",
        default_value_t = 1000
    )]
    pub rate_limit_burst: u32,
    /// Requests served at once; more wait their turn.
    #[arg(
        long,
        env = "KANDJI_CONNECTOR_MAX_CONCURRENT_REQUESTS",
        default_value_t = 1024
    )]
    pub max_concurrent_requests: usize,
    /// A folder of extra or replacement card files.
    #[arg(long, env = "KANDJI_CONNECTOR_CARDS_DIR")]
    pub cards_dir: Option<PathBuf>,
    /// Connect timeout for requests to Kandji, in milliseconds.
    #[arg(
        long,
        env = "KANDJI_CONNECTOR_KANDJI_CONNECT_TIMEOUT_MS",
        default_value_t = 5_000
    )]
    pub kandji_connect_timeout_ms: u64,
    /// Total timeout for one request to Kandji, in milliseconds.
    #[arg(
        long,
        env = "KANDJI_CONNECTOR_KANDJI_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub kandji_timeout_ms: u64,
    /// Largest answer read from Kandji, in bytes.
    #[arg(long, env = "KANDJI_CONNECTOR_KANDJI_MAX_RESPONSE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub kandji_max_response_bytes: usize,
    /// How long a card invocation waits for the connection's Kandji budget before answering 429, in milliseconds.
    #[arg(
        long,
        env = "KANDJI_CONNECTOR_KANDJI_BUDGET_WAIT_MS",
        default_value_t = 10_000
    )]
    pub kandji_budget_wait_ms: u64,
    /// Retries of a Kandji request where retrying is safe.
    #[arg(long, env = "KANDJI_CONNECTOR_KANDJI_MAX_RETRIES", default_value_t = 4)]
    pub kandji_max_retries: usize,
    /// Largest request body accepted from callers, in bytes.
    #[arg(long, env = "KANDJI_CONNECTOR_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Time limit for one inbound request, in milliseconds.
    #[arg(
        long,
        env = "KANDJI_CONNECTOR_REQUEST_TIMEOUT_MS",
        default_value_t = 120_000
    )]
    pub request_timeout_ms: u64,
    /// Non-public callback targets streams may deliver to (and use plain http for):
    /// comma-separated CIDRs, addresses or host names, e.g. `127.0.0.1/32`.
    #[arg(long, env = "KANDJI_CONNECTOR_CALLBACK_ALLOW", default_value = "")]
    pub callback_allow: String,
    /// Callbacks in flight at once, per stream.
    #[arg(
        long,
        env = "KANDJI_CONNECTOR_STREAM_CONCURRENCY",
        default_value_t = 16
    )]
    pub stream_concurrency: usize,
    /// Time limit of one callback attempt, in milliseconds.
    #[arg(
        long,
        env = "KANDJI_CONNECTOR_CALLBACK_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub callback_timeout_ms: u64,
    /// Waits before each retry of a callback, in milliseconds (jittered; a longer Retry-After wins).
    #[arg(
        long,
        env = "KANDJI_CONNECTOR_CALLBACK_RETRY_SCHEDULE_MS",
        default_value = "500,1000,2000,4000,8000,16000,32000"
    )]
    pub callback_retry_schedule_ms: String,
    /// Longest Retry-After honoured, in milliseconds.
    #[arg(
        long,
        env = "KANDJI_CONNECTOR_CALLBACK_MAX_RETRY_AFTER_MS",
        default_value_t = 60_000
    )]
    pub callback_max_retry_after_ms: u64,
    /// Streams run at once by this process; more are refused with 429.
    #[arg(long, env = "KANDJI_CONNECTOR_MAX_STREAMS", default_value_t = 64)]
    pub max_streams: usize,
    /// How often a running stream's progress is saved at the latest, in milliseconds.
    #[arg(
        long,
        env = "KANDJI_CONNECTOR_STREAM_CHECKPOINT_MS",
        default_value_t = 250
    )]
    pub stream_checkpoint_ms: u64,
    /// The most finished deliveries of a stream left unsaved at once: progress is saved when
    /// half of them are, and deliveries wait while all of them are. A stream killed with SIGKILL
    /// re-sends at most KANDJI_CONNECTOR_STREAM_CONCURRENCY plus this many records.
    #[arg(
        long,
        env = "KANDJI_CONNECTOR_STREAM_CHECKPOINT_RECORDS",
        default_value_t = 64
    )]
    pub stream_checkpoint_records: usize,
    /// How often a connection with `inventory_sync` on re-reads Kandji's device list, in
    /// milliseconds (from the start of one sync to the start of the next).
    #[arg(
        long,
        env = "KANDJI_CONNECTOR_INVENTORY_INTERVAL_MS",
        default_value_t = 300_000
    )]
    pub inventory_interval_ms: u64,
    /// Percent of a connection's request rate an inventory sync may use (the rest stays free
    /// for cards and streams while it runs).
    #[arg(
        long,
        env = "KANDJI_CONNECTOR_INVENTORY_BUDGET_SHARE",
        default_value_t = 50.0
    )]
    pub inventory_budget_share: f64,
    /// Percent of a connection's hourly budget an inventory sync never touches: it pauses while
    /// less than this is left of the last hour's budget.
    #[arg(
        long,
        env = "KANDJI_CONNECTOR_INVENTORY_BUDGET_RESERVE",
        default_value_t = 20.0
    )]
    pub inventory_budget_reserve: f64,
    /// Percent of a connection's request rate device-trust live lookups may use (serial numbers
    /// the inventory lacks, or every lookup with the sync off), apart from the inventory sync's
    /// share; with PostgreSQL shared by every replica.
    #[arg(
        long,
        env = "KANDJI_CONNECTOR_TRUST_LIVE_SHARE",
        default_value_t = 10.0
    )]
    pub trust_live_share: f64,
    /// How long a device-trust live lookup waits for its share or the connection's budget, in
    /// milliseconds; then the inventory answers without it (`live_check: skipped`).
    #[arg(
        long,
        env = "KANDJI_CONNECTOR_TRUST_LIVE_WAIT_MS",
        default_value_t = 250
    )]
    pub trust_live_wait_ms: u64,
    /// With PostgreSQL: how long a replica's hold on a running stream lasts without a
    /// checkpoint renewing it; another replica resumes the stream once it has expired.
    #[arg(
        long,
        env = "KANDJI_CONNECTOR_STREAM_LEASE_MS",
        default_value_t = 15_000
    )]
    pub stream_lease_ms: u64,
    /// Time, in milliseconds, between two polls of a connection's audit log for event
    /// subscriptions (start to start): about 60 Kandji requests an hour at the default.
    #[arg(
        long,
        env = "KANDJI_CONNECTOR_EVENTS_INTERVAL_MS",
        default_value_t = 60_000
    )]
    pub events_interval_ms: u64,
    /// Days detected events are kept (for replay) before they are deleted.
    #[arg(
        long,
        env = "KANDJI_CONNECTOR_EVENTS_RETENTION_DAYS",
        default_value_t = 7
    )]
    pub events_retention_days: u32,
    /// Days a finished stream (with its delivery failures) is kept before it is deleted; 0
    /// keeps them for ever.
    #[arg(long, env = "KANDJI_CONNECTOR_RETENTION_DAYS", default_value_t = 30)]
    pub retention_days: u32,
    /// How old, in milliseconds, an answer Kandji has not confirmed may be before device-trust
    /// lookups mark it stale (default: twice the inventory interval).
    #[arg(long, env = "KANDJI_CONNECTOR_INVENTORY_STALE_AFTER_MS")]
    pub inventory_stale_after_ms: Option<u64>,
    /// `on` offers the destructive cards (erase, lock, restart, ...) as MCP tools too; `off`
    /// (the default) leaves them out of `/mcp` altogether (HTTP invocation is unaffected).
    #[arg(long, env = "KANDJI_CONNECTOR_MCP_DESTRUCTIVE", default_value = "off")]
    pub mcp_destructive: String,
    /// Browser origins allowed to call `/mcp` (comma-separated, e.g. `https://agent.example.com`);
    /// a request with any other `Origin` header is refused with 403. Requests without `Origin`
    /// (MCP clients that are not web pages) are not affected.
    #[arg(long, env = "KANDJI_CONNECTOR_MCP_ALLOWED_ORIGINS", default_value = "")]
    pub mcp_allowed_origins: String,
    /// `on` (the default) records Prometheus metrics and serves them at `GET /metrics` (a key
    /// with the `metrics:read` scope); `off` records nothing and `/metrics` answers 404.
    #[arg(long, env = "KANDJI_CONNECTOR_METRICS", default_value = "on")]
    pub metrics: String,
    /// A second address (e.g. `0.0.0.0:9090`) serving only `GET /metrics`, without a key: for
    /// a Prometheus inside the same private network. Not set: no second listener.
    #[arg(long, env = "KANDJI_CONNECTOR_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// `text` (the default): readable lines; `json`: one JSON object per line.
    #[arg(long, env = "KANDJI_CONNECTOR_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

/// The checked configuration the server runs with.
pub struct Config {
    pub listen: SocketAddr,
    pub api_keys: Vec<ApiKey>,
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    pub max_concurrent_requests: usize,
    pub database_url: String,
    pub cipher: TokenCipher,
    pub cards_dir: Option<PathBuf>,
    pub kandji: ClientConfig,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub streams: StreamConfig,
    pub trust: TrustConfig,
    pub retention: RetentionConfig,
    pub events: EventsConfig,
    pub mcp: McpConfig,
    pub metrics: MetricsConfig,
}

impl Config {
    /// A configuration with every tunable at its documented default (the values `serve` uses
    /// when no variable is set), for the demo and the tests: they name what they change with
    /// `Config { field, ..Config::defaults(…) }`, so a new setting is added here once.
    pub fn defaults(database_url: String, cipher: TokenCipher, api_keys: Vec<ApiKey>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            api_keys,
            rate_limit_per_second: 500,
            rate_limit_burst: 1000,
            max_concurrent_requests: 1024,
            database_url,
            cipher,
            cards_dir: None,
            kandji: ClientConfig::default(),
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(120),
            streams: StreamConfig::default(),
            trust: TrustConfig::default(),
            retention: RetentionConfig::default(),
            events: EventsConfig::default(),
            mcp: McpConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("api_keys", &format_args!("[{} keys]", self.api_keys.len()))
            .field("database_url", &redact_url(&self.database_url))
            .field("cards_dir", &self.cards_dir)
            .finish_non_exhaustive()
    }
}

/// A database URL without its password, for messages.
pub fn redact_url(u: &str) -> String {
    match url::Url::parse(u) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => u.to_string(),
    }
}

impl ServeArgs {
    /// Checks every setting and says how to fix each one that is missing or malformed.
    pub fn into_config(self) -> Result<Config, Vec<String>> {
        let mut problems = Vec::new();
        let listen = match self.listen.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                problems.push(format!(
                    "KANDJI_CONNECTOR_LISTEN={:?} is not an address:port; use e.g. 127.0.0.1:8080 or 0.0.0.0:8080",
                    self.listen
                ));
                None
            }
        };
        let mut api_keys = Vec::new();
        let keys = self.api_keys.as_ref().map(ExposeSecret::expose_secret);
        match parse_api_keys(keys.unwrap_or(""), ',') {
            Ok(k) => api_keys.extend(k),
            Err(e) => problems.push(format!("KANDJI_CONNECTOR_API_KEYS: {e}")),
        }
        if let Some(path) = &self.api_keys_file {
            match std::fs::read_to_string(path) {
                Ok(text) => match parse_api_keys(&text, '\n') {
                    Ok(k) => api_keys.extend(k),
                    Err(e) => problems.push(format!(
                        "KANDJI_CONNECTOR_API_KEYS_FILE ({}): {e}",
                        path.display()
                    )),
                },
                Err(e) => problems.push(format!(
                    "KANDJI_CONNECTOR_API_KEYS_FILE: cannot read {}: {e}",
                    path.display()
                )),
            }
        }
        if api_keys.is_empty() && problems.is_empty() {
            problems.push(
                "KANDJI_CONNECTOR_API_KEYS is not set: give one or more comma-separated keys callers will send as `Authorization: Bearer <key>` (e.g. `openssl rand -hex 32`), or KANDJI_CONNECTOR_API_KEYS_FILE".into(),
            );
        }
        let secret_key: Option<SecretString> = match (&self.secret_key, &self.secret_key_file) {
            (Some(k), _) if !k.expose_secret().is_empty() => Some(k.clone()),
            (_, Some(path)) => match std::fs::read_to_string(path) {
                Ok(k) => Some(k.trim().into()),
                Err(e) => {
                    problems.push(format!(
                        "KANDJI_CONNECTOR_SECRET_KEY_FILE: cannot read {}: {e}",
                        path.display()
                    ));
                    Some("".into())
                }
            },
            _ => None,
        };
        let cipher = match secret_key.as_ref().map(ExposeSecret::expose_secret) {
            None | Some("") => {
                problems.push(
                    "KANDJI_CONNECTOR_SECRET_KEY is not set: give the base64 of 32 random bytes (e.g. `openssl rand -base64 32`); it encrypts the stored Kandji tokens, so keep it and back it up".into(),
                );
                None
            }
            Some(k) => match TokenCipher::from_base64(k) {
                Ok(c) => Some(c),
                Err(e) => {
                    problems.push(format!("KANDJI_CONNECTOR_SECRET_KEY is malformed: {e}; it must be the base64 of exactly 32 bytes (e.g. `openssl rand -base64 32`)"));
                    None
                }
            },
        };
        let database_url = self.database_url.expose_secret();
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            problems.push(format!(
                "KANDJI_CONNECTOR_DATABASE_URL={:?} is not supported: use sqlite://path.db or postgres://…",
                redact_url(database_url)
            ));
        }
        if let Some(dir) = &self.cards_dir
            && !dir.is_dir()
        {
            problems.push(format!(
                "KANDJI_CONNECTOR_CARDS_DIR={} is not a folder",
                dir.display()
            ));
        }
        let allow = CallbackPolicy::parse(&self.callback_allow)
            .map_err(|e| problems.push(format!("KANDJI_CONNECTOR_CALLBACK_ALLOW: {e}; give comma-separated CIDRs (127.0.0.1/32), addresses or host names")))
            .ok();
        let schedule: Result<Vec<Duration>, _> = self
            .callback_retry_schedule_ms
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<u64>().map(Duration::from_millis))
            .collect();
        let schedule = schedule
            .map_err(|_| {
                problems.push(format!(
                    "KANDJI_CONNECTOR_CALLBACK_RETRY_SCHEDULE_MS={:?} is not a comma-separated list of milliseconds (e.g. 500,1000,2000)",
                    self.callback_retry_schedule_ms
                ))
            })
            .ok();
        if self.stream_concurrency == 0 || self.stream_concurrency > 1024 {
            problems.push("KANDJI_CONNECTOR_STREAM_CONCURRENCY must be between 1 and 1024".into());
        }
        if self.callback_timeout_ms == 0 {
            problems.push("KANDJI_CONNECTOR_CALLBACK_TIMEOUT_MS must be more than 0".into());
        }
        if self.stream_checkpoint_ms == 0 {
            problems.push("KANDJI_CONNECTOR_STREAM_CHECKPOINT_MS must be more than 0".into());
        }
        if self.stream_checkpoint_records == 0 {
            problems.push("KANDJI_CONNECTOR_STREAM_CHECKPOINT_RECORDS must be more than 0".into());
        }
        if self.inventory_interval_ms < 1_000 {
            problems.push(format!(
                "KANDJI_CONNECTOR_INVENTORY_INTERVAL_MS={} is too short: give at least 1000 (the default is 300000, five minutes)",
                self.inventory_interval_ms
            ));
        }
        if !(self.inventory_budget_share > 0.0 && self.inventory_budget_share <= 100.0) {
            problems.push(format!(
                "KANDJI_CONNECTOR_INVENTORY_BUDGET_SHARE={} must be a percentage above 0 and at most 100",
                self.inventory_budget_share
            ));
        }
        if !(self.inventory_budget_reserve >= 0.0 && self.inventory_budget_reserve < 100.0) {
            problems.push(format!(
                "KANDJI_CONNECTOR_INVENTORY_BUDGET_RESERVE={} must be a percentage from 0 to below 100",
                self.inventory_budget_reserve
            ));
        }
        if !(self.trust_live_share > 0.0 && self.trust_live_share <= 100.0) {
            problems.push(format!(
                "KANDJI_CONNECTOR_TRUST_LIVE_SHARE={} must be a percentage above 0 and at most 100",
                self.trust_live_share
            ));
        }
        if self.trust_live_wait_ms > 60_000 {
            problems.push(format!(
                "KANDJI_CONNECTOR_TRUST_LIVE_WAIT_MS={} is too long for a sign-in: give at most 60000 (the default is 250)",
                self.trust_live_wait_ms
            ));
        }
        if self.stream_lease_ms < 4 * self.stream_checkpoint_ms.max(1) {
            problems.push("KANDJI_CONNECTOR_STREAM_LEASE_MS must be at least 4 times KANDJI_CONNECTOR_STREAM_CHECKPOINT_MS (checkpoints renew the lease)".into());
        }
        let destructive = match self.mcp_destructive.trim() {
            "on" => true,
            "off" | "" => false,
            other => {
                problems.push(format!(
                    "KANDJI_CONNECTOR_MCP_DESTRUCTIVE={other:?} must be `on` or `off`"
                ));
                false
            }
        };
        let allowed_origins = McpOrigin::parse_list(&self.mcp_allowed_origins)
            .map_err(|e| problems.push(format!("KANDJI_CONNECTOR_MCP_ALLOWED_ORIGINS: {e}")))
            .unwrap_or_default();
        let metrics_enabled = match self.metrics.trim() {
            "on" | "" => true,
            "off" => false,
            other => {
                problems.push(format!(
                    "KANDJI_CONNECTOR_METRICS={other:?} must be `on` or `off`"
                ));
                true
            }
        };
        let metrics_listen = match self.metrics_listen.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(a) => match a.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    problems.push(format!(
                        "KANDJI_CONNECTOR_METRICS_LISTEN={a:?} is not an address:port; use e.g. 0.0.0.0:9090"
                    ));
                    None
                }
            },
        };
        if metrics_listen.is_some() && !metrics_enabled {
            problems.push(
                "KANDJI_CONNECTOR_METRICS_LISTEN is set but KANDJI_CONNECTOR_METRICS is off: unset one".into(),
            );
        }
        if let Err(e) = LogFormat::parse(&self.log_format) {
            problems.push(e);
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let streams = StreamConfig {
            concurrency: self.stream_concurrency,
            callback_timeout: Duration::from_millis(self.callback_timeout_ms),
            retry: crate::streams::RetryPolicy {
                schedule: schedule.expect("checked"),
                max_retry_after: Duration::from_millis(self.callback_max_retry_after_ms),
            },
            checkpoint_interval: Duration::from_millis(self.stream_checkpoint_ms),
            checkpoint_records: self.stream_checkpoint_records,
            allow: allow.expect("checked"),
            max_running: self.max_streams.max(1),
            lease: Duration::from_millis(self.stream_lease_ms),
            ..StreamConfig::default()
        };
        Ok(Config {
            listen: listen.expect("checked"),
            api_keys,
            rate_limit_per_second: self.rate_limit_per_second,
            rate_limit_burst: self.rate_limit_burst,
            max_concurrent_requests: self.max_concurrent_requests,
            database_url: database_url.to_string(),
            cipher: cipher.expect("checked"),
            cards_dir: self.cards_dir,
            kandji: ClientConfig {
                connect_timeout: Duration::from_millis(self.kandji_connect_timeout_ms),
                total_timeout: Duration::from_millis(self.kandji_timeout_ms),
                max_response_bytes: self.kandji_max_response_bytes,
                budget_wait: Duration::from_millis(self.kandji_budget_wait_ms),
                max_retries: self.kandji_max_retries,
                ..ClientConfig::default()
            },
            max_body_bytes: self.max_body_bytes,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            streams,
            trust: TrustConfig {
                interval: Duration::from_millis(self.inventory_interval_ms),
                budget_share: self.inventory_budget_share / 100.0,
                budget_reserve: self.inventory_budget_reserve / 100.0,
                stale_after: self.inventory_stale_after_ms.map(Duration::from_millis),
                live_share: self.trust_live_share / 100.0,
                live_wait: Duration::from_millis(self.trust_live_wait_ms),
                ..TrustConfig::default()
            },
            retention: RetentionConfig {
                max_age: (self.retention_days > 0)
                    .then(|| Duration::from_secs(u64::from(self.retention_days) * 24 * 3600)),
                events_max_age: Duration::from_secs(
                    u64::from(self.events_retention_days.max(1)) * 24 * 3600,
                ),
                ..RetentionConfig::default()
            },
            events: EventsConfig {
                interval: Duration::from_millis(self.events_interval_ms.max(100)),
                ..EventsConfig::default()
            },
            mcp: McpConfig {
                destructive,
                allowed_origins,
            },
            metrics: MetricsConfig {
                enabled: metrics_enabled,
                listen: metrics_listen,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn debug_shows_no_secret() {
        let key = "c2VjcmV0LWtleS1vZi0zMi1ieXRlcy1leGFjdGx5ISE=";
        let cli = Cli::try_parse_from([
            "kandji-connector",
            "--api-keys",
            "api-key-0123456789abcdef catalog:read",
            "--secret-key",
            key,
            "--database-url",
            "postgres://app:hunter2-pw@db.internal/connector",
        ])
        .unwrap();
        let shown = format!("{:?}", cli.serve);
        for secret in ["api-key-0123456789abcdef", key, "hunter2-pw", "db.internal"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        let config = cli.serve.into_config().unwrap();
        assert_eq!(config.api_keys.len(), 1);
        assert_eq!(
            config.database_url,
            "postgres://app:hunter2-pw@db.internal/connector"
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2-pw"), "{shown}");
    }

    #[test]
    fn the_default_database_url_is_the_documented_one() {
        let cli = Cli::try_parse_from(["kandji-connector"]).unwrap();
        assert_eq!(cli.serve.database_url.expose_secret(), DEFAULT_DATABASE_URL);
        let readme = include_str!("../README.md");
        assert!(
            readme.contains(&format!(
                "| `KANDJI_CONNECTOR_DATABASE_URL` | `{DEFAULT_DATABASE_URL}` |"
            )),
            "the README's table does not give {DEFAULT_DATABASE_URL} as the default"
        );
    }
}
