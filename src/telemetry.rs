//! What operators see: Prometheus metrics (`GET /metrics`) and the log format.
//!
//! Metrics go through the `metrics` facade to one process-wide `metrics-exporter-prometheus`
//! recorder, rendered by an axum handler (the exporter's own HTTP listener is not used, so the
//! endpoint sits behind the API-key layer, or on `KANDJI_CONNECTOR_METRICS_LISTEN`). Every
//! metric name and label is written in this module, once, so that the README's table and the
//! code are read side by side. Counters and histograms are recorded where things happen; gauges
//! (budget left, running streams, backlog, inventories) are read from the live state at each
//! scrape ([`render`]).
//!
//! Labels stay bounded: a connection id (a handful), a card id (the catalog), an outcome or a
//! status class (fixed lists), a route template. Never a device id, a serial number, a stream
//! id, a token or a URL.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicI64};
use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{
    Counter, Histogram, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::invocation::Surface;

mod context;
mod handles;
mod json_log;
mod log_writer;
mod text_log;

pub use context::record_ids;

pub use log_writer::Flush as LogFlush;

use handles::Family;

/// The metrics settings (`KANDJI_CONNECTOR_METRICS`, `KANDJI_CONNECTOR_METRICS_LISTEN`).
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Off: nothing is recorded (no recorder is installed) and `/metrics` answers 404.
    pub enabled: bool,
    /// A second listener serving only `GET /metrics`, without a key.
    pub listen: Option<SocketAddr>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
        }
    }
}

/// How log lines are written (`KANDJI_CONNECTOR_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per event (the default).
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "" | "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "KANDJI_CONNECTOR_LOG_FORMAT={other:?} must be `text` or `json`"
            )),
        }
    }
}

/// Installs the process's log subscriber: the filter of `KANDJI_CONNECTOR_LOG` (default `info`)
/// and the format. In JSON, each line carries the fields of the request it belongs to under
/// `span` (`request_id`, `method`, `route`, and `card`, `connection`, `stream` where they apply).
///
/// Lines go to stdout through a writer thread that writes them in batches
/// ([`log_writer`]); the returned [`LogFlush`] writes what is still waiting when dropped, so the
/// caller keeps it until the process ends.
pub fn init_logging(format: LogFormat) -> LogFlush {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // Colours only on a terminal: escape codes in a log file or a container's log are noise,
    // and cost a tenth of a request's log line.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let (writer, flush) = log_writer::Batched::start(std::io::stdout());
    if !ansi {
        let _ = REQUEST_LINES.set(RequestLines {
            format,
            writer: writer.clone(),
        });
    }
    let layer = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(writer);
    let logs = tracing_subscriber::registry().with(log_filter(
        std::env::var("KANDJI_CONNECTOR_LOG").ok().as_deref(),
    ));
    match format {
        LogFormat::Text => logs
            .with(layer.event_format(text_log::TextLine::default()))
            .init(),
        LogFormat::Json => logs
            .with(
                layer
                    .fmt_fields(json_log::JsonFields)
                    .event_format(json_log::JsonLine),
            )
            .init(),
    }
    flush
}

/// Where [`observe`] writes the line of each request answered (set by [`init_logging`]), in the
/// process's format, without going through tracing's dispatch.
///
/// The line is the one `tracing::info!(status, latency_ms, "request")` makes (a unit test compares
/// them), written when that event would be: `KANDJI_CONNECTOR_LOG` still decides. Going straight
/// to the writer saves the event's dispatch (each layer's `enabled`, the fields' visitor) and one
/// copy of the line, about a third of what a request's line cost (bench/telemetry.sh). What is
/// given up: another layer added to the subscriber would not see request lines (none is). A
/// process whose log is a terminal (colours) and in-process tests' subscribers take the event.
struct RequestLines {
    format: LogFormat,
    writer: log_writer::Batched,
}

static REQUEST_LINES: OnceLock<RequestLines> = OnceLock::new();

/// Logs that a request was answered: `status` and `latency_ms`, with the request's fields.
fn log_request(status: u16, latency_ms: f64) {
    if !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    match REQUEST_LINES.get() {
        Some(lines) => request_line(lines.format, status, latency_ms, |line| {
            lines.writer.write_line(line.as_bytes())
        }),
        None => tracing::info!(status, latency_ms, "request"),
    }
}

/// Builds the line of a request answered, as the format would write the event, and hands it
/// to `write` (the line is built in a buffer kept by the thread).
fn request_line(format: LogFormat, status: u16, latency_ms: f64, write: impl FnOnce(&str)) {
    json_log::with_kept_line(|line| {
        match format {
            LogFormat::Json => json_log::request_line(line, status, latency_ms),
            LogFormat::Text => text_log::request_line(line, status, latency_ms),
        }
        write(line)
    })
}

type LogFilter = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// The filter of `KANDJI_CONNECTOR_LOG` (default, and when it cannot be read, `info`). Levels
/// and `target=level` lists (all that the README documents) are a [`Targets`] filter, which
/// decides when a span or an event is made; span and field directives (`[name]=debug`) need an
/// `EnvFilter`, which also takes a lock on every entry to and exit from every span (it cost a few
/// per cent of an invocation while each request had a span, entered at each of its polls).
///
/// [`Targets`]: tracing_subscriber::filter::Targets
fn log_filter(directives: Option<&str>) -> LogFilter {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::filter::Targets;
    // What EnvFilter refuses means `info`, as it always has.
    let directives = directives
        .map(str::trim)
        .filter(|d| !d.is_empty() && EnvFilter::try_new(d).is_ok())
        .unwrap_or("info");
    if !directives.contains(['[', '{'])
        && let Ok(targets) = directives.parse::<Targets>()
    {
        return Box::new(targets);
    }
    Box::new(EnvFilter::new(directives))
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Whether metrics are recorded: a recorder is installed ([`install`]). The hot paths' handles
/// ([`handles::Family`]) are kept only then, so none is a no-op handle kept from before.
fn recording() -> bool {
    HANDLE.get().is_some()
}

/// Histogram buckets (seconds) of every duration: from 1 ms to 1 minute.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Installs the process-wide recorder (once; later calls return the same handle) and describes
/// every metric. Records the build info and the start time.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .expect("non-empty buckets")
                .install_recorder()
                .unwrap_or_else(|_| {
                    // Another recorder is already installed (only an embedding program could
                    // have done that): render an empty one rather than fail to start.
                    PrometheusBuilder::new().build_recorder().handle()
                });
            describe();
            gauge!("kandji_connector_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            let start = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            gauge!("process_start_time_seconds").set(start.as_secs_f64());
            // Histograms keep their samples until rendered; a recorder nobody scrapes stays
            // bounded through the upkeep.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .expect("a thread starts");
            handle
        })
        .clone()
}

fn describe() {
    describe_histogram!(
        "http_server_request_duration_seconds",
        metrics::Unit::Seconds,
        "Duration of HTTP requests served, by method, route template and status code."
    );
    describe_gauge!(
        "http_server_active_requests",
        "HTTP requests being served, by method."
    );
    describe_counter!(
        "kandji_connector_card_invocations_total",
        "Card invocations (HTTP and MCP) by card, outcome and surface."
    );
    describe_counter!(
        "kandji_connector_kandji_requests_total",
        "Requests sent to Kandji (each attempt, retries included) by connection, card and status class (2xx..5xx, or error when no answer came)."
    );
    describe_histogram!(
        "kandji_connector_kandji_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time of one request to Kandji (one attempt), by connection."
    );
    describe_counter!(
        "kandji_connector_kandji_retries_total",
        "Requests to Kandji sent again (after a 429, or a transient failure of a safe request)."
    );
    describe_counter!(
        "kandji_connector_kandji_rate_limited_total",
        "429 answers received from Kandji."
    );
    describe_counter!(
        "kandji_connector_kandji_timeouts_total",
        "Requests to Kandji that timed out."
    );
    describe_counter!(
        "kandji_connector_kandji_connection_errors_total",
        "Requests to Kandji that failed without an answer (connection refused, reset, TLS...)."
    );
    describe_counter!(
        "kandji_connector_kandji_budget_waits_total",
        "Requests that had to wait for the connection's request budget."
    );
    describe_counter!(
        "kandji_connector_kandji_budget_refusals_total",
        "Card requests refused (429 to the caller) because the connection's budget was spent for longer than KANDJI_CONNECTOR_KANDJI_BUDGET_WAIT_MS."
    );
    describe_gauge!(
        "kandji_connector_kandji_budget_remaining",
        "Requests left in the connection's rolling hour (this replica's count)."
    );
    describe_gauge!(
        "kandji_connector_streams_running",
        "Streams this replica runs."
    );
    describe_counter!(
        "kandji_connector_stream_records_delivered_total",
        "Stream records delivered to their helper flow."
    );
    describe_counter!(
        "kandji_connector_stream_delivery_attempts_total",
        "Callback POSTs by outcome: delivered, retry (a transient failure, tried again), refused."
    );
    describe_counter!(
        "kandji_connector_stream_deliveries_failed_total",
        "Stream records given up on (refused, or still failing after the retry schedule)."
    );
    describe_histogram!(
        "kandji_connector_stream_delivery_duration_seconds",
        metrics::Unit::Seconds,
        "Time of one callback POST."
    );
    describe_gauge!(
        "kandji_connector_stream_backlog_records",
        "Records fetched from Kandji and not yet delivered, over the streams this replica runs."
    );
    describe_counter!(
        "kandji_connector_streams_finished_total",
        "Streams that ended on this replica, by final state (succeeded, failed, cancelled)."
    );
    describe_counter!(
        "kandji_connector_trust_lookups_total",
        "Device-trust lookups by source (inventory, live) and result (managed, unmanaged, not_found, error)."
    );
    describe_gauge!(
        "kandji_connector_inventory_devices",
        "Devices in the connection's device inventory."
    );
    describe_gauge!(
        "kandji_connector_inventory_sync_age_seconds",
        "Seconds since the connection's last completed inventory sync finished."
    );
    describe_gauge!(
        "kandji_connector_inventory_last_sync_duration_seconds",
        metrics::Unit::Seconds,
        "Duration of the connection's last completed inventory sync."
    );
    describe_gauge!(
        "kandji_connector_inventory_last_sync_kandji_calls",
        "Requests to Kandji made by the connection's last completed inventory sync."
    );
    describe_counter!(
        "kandji_connector_inventory_syncs_total",
        "Inventory syncs run by this replica, by result (ok, failed)."
    );
    describe_counter!(
        "kandji_connector_store_errors_total",
        "Failed store operations by kind: unavailable (the database could not be reached in time) or other."
    );
    describe_gauge!(
        "kandji_connector_build_info",
        "Always 1; the version label says which build runs."
    );
    describe_gauge!(
        "process_start_time_seconds",
        metrics::Unit::Seconds,
        "Start time of the process since the Unix epoch."
    );
}

/// The exposition text: the gauges read from `app` now, then everything recorded.
pub fn render(app: &crate::App, handle: &PrometheusHandle) -> String {
    for (connection, report) in app.kandji.budget_reports() {
        gauge!("kandji_connector_kandji_budget_remaining", "connection" => connection)
            .set(f64::from(report.remaining_this_hour));
    }
    Active::render();
    let (running, backlog) = app.streams.gauges();
    gauge!("kandji_connector_streams_running").set(running as f64);
    gauge!("kandji_connector_stream_backlog_records").set(backlog as f64);
    for (connection, status) in app.trust.statuses() {
        gauge!("kandji_connector_inventory_devices", "connection" => connection.clone())
            .set(status.devices as f64);
        if let Some(last) = &status.last_sync {
            let age = (chrono::Utc::now() - last.finished_at)
                .to_std()
                .unwrap_or_default();
            gauge!("kandji_connector_inventory_sync_age_seconds", "connection" => connection.clone())
                .set(age.as_secs_f64());
            gauge!("kandji_connector_inventory_last_sync_duration_seconds", "connection" => connection.clone())
                .set(last.duration_ms as f64 / 1000.0);
            gauge!("kandji_connector_inventory_last_sync_kandji_calls", "connection" => connection)
                .set(last.kandji_calls as f64);
        }
    }
    handle.render()
}

/// The `Content-Type` of the exposition text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What an invocation came to, for `kandji_connector_card_invocations_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Kandji answered 2xx (or the card was answered without Kandji), or a stream started.
    Ok,
    /// Kandji answered, with an error status (the caller got 200 with it in the outputs).
    KandjiError,
    /// The body was refused: a field is wrong (400, 422).
    InvalidInput,
    /// The caller may not, or not now: a scope, the budget, an idempotency conflict (401, 403,
    /// 404, 409, 429).
    Refused,
    /// The connector or Kandji failed: unreachable, timed out, the store (5xx).
    Failed,
}

impl Outcome {
    pub fn of(status: u16, kandji: Option<u16>) -> Self {
        match status {
            200..=299 if kandji.is_some_and(|k| k >= 400) => Outcome::KandjiError,
            200..=299 => Outcome::Ok,
            400 | 413 | 422 => Outcome::InvalidInput,
            401..=499 => Outcome::Refused,
            _ => Outcome::Failed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::KandjiError => "kandji_error",
            Outcome::InvalidInput => "invalid_input",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

/// One invocation of a catalog card.
pub fn card_invocation(card: &str, outcome: Outcome, surface: Surface) {
    static F: LazyLock<Family<Counter, 3>> = LazyLock::new(|| {
        Family::new(
            "kandji_connector_card_invocations_total",
            ["card", "outcome", "surface"],
        )
    });
    thread_local! {
        static LAST: handles::Last<Counter, 3> = const { handles::Last::new() };
    }
    if recording() {
        F.with_last(
            &LAST,
            [card, outcome.as_str(), surface.as_str()],
            handles::counter,
            |c| c.increment(1),
        );
    }
}

/// `2xx` … `5xx` for an answer's status.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// One attempt of a request to Kandji: its status class (`error`: no answer) and duration.
pub fn kandji_request(connection: &str, card: &str, class: &'static str, took: Duration) {
    static REQUESTS: LazyLock<Family<Counter, 3>> = LazyLock::new(|| {
        Family::new(
            "kandji_connector_kandji_requests_total",
            ["connection", "card", "status_class"],
        )
    });
    static DURATION: LazyLock<Family<Histogram, 1>> = LazyLock::new(|| {
        Family::new(
            "kandji_connector_kandji_request_duration_seconds",
            ["connection"],
        )
    });
    thread_local! {
        static LAST_REQUESTS: handles::Last<Counter, 3> = const { handles::Last::new() };
        static LAST_DURATION: handles::Last<Histogram, 1> = const { handles::Last::new() };
    }
    if recording() {
        REQUESTS.with_last(
            &LAST_REQUESTS,
            [connection, card, class],
            handles::counter,
            |c| c.increment(1),
        );
        DURATION.with_last(&LAST_DURATION, [connection], handles::histogram, |h| {
            h.record(took.as_secs_f64())
        });
    }
}

/// Kandji client events counted by connection (and card, where it tells which flow paid).
#[derive(Debug, Clone, Copy)]
pub enum KandjiEvent {
    Retry,
    RateLimited,
    Timeout,
    ConnectionError,
    BudgetWait,
    BudgetRefusal,
}

pub fn kandji_event(connection: &str, card: &str, event: KandjiEvent) {
    let name = match event {
        KandjiEvent::Retry => "kandji_connector_kandji_retries_total",
        KandjiEvent::RateLimited => "kandji_connector_kandji_rate_limited_total",
        KandjiEvent::Timeout => "kandji_connector_kandji_timeouts_total",
        KandjiEvent::ConnectionError => "kandji_connector_kandji_connection_errors_total",
        KandjiEvent::BudgetWait => "kandji_connector_kandji_budget_waits_total",
        KandjiEvent::BudgetRefusal => "kandji_connector_kandji_budget_refusals_total",
    };
    counter!(name, "connection" => connection.to_string(), "card" => card.to_string()).increment(1);
}

/// One callback POST of a stream record: `delivered`, `retry` or `refused`.
pub fn delivery_attempt(outcome: &'static str, took: Duration) {
    static F: LazyLock<Family<Counter, 1>> = LazyLock::new(|| {
        Family::new(
            "kandji_connector_stream_delivery_attempts_total",
            ["outcome"],
        )
    });
    if !recording() {
        return;
    }
    F.get([outcome], handles::counter).increment(1);
    histogram!("kandji_connector_stream_delivery_duration_seconds").record(took.as_secs_f64());
}

/// A stream record finished: delivered, or given up on.
pub fn record_finished(delivered: bool) {
    if delivered {
        counter!("kandji_connector_stream_records_delivered_total").increment(1);
    } else {
        counter!("kandji_connector_stream_deliveries_failed_total").increment(1);
    }
}

/// A stream ended on this replica (`succeeded`, `failed`, `cancelled`).
pub fn stream_finished(state: &'static str) {
    counter!("kandji_connector_streams_finished_total", "state" => state).increment(1);
}

/// A device-trust lookup's answer (or its failure).
pub fn trust_lookup(answer: Result<&crate::trust::TrustAnswer, ()>, asked_kandji: bool) {
    let (source, result) = match answer {
        Ok(a) => (
            match a.source {
                crate::trust::Source::Inventory => "inventory",
                crate::trust::Source::Live => "live",
            },
            if a.managed {
                "managed"
            } else if a.found {
                "unmanaged"
            } else {
                "not_found"
            },
        ),
        Err(()) => (if asked_kandji { "live" } else { "inventory" }, "error"),
    };
    static F: LazyLock<Family<Counter, 2>> =
        LazyLock::new(|| Family::new("kandji_connector_trust_lookups_total", ["source", "result"]));
    if recording() {
        F.get([source, result], handles::counter).increment(1);
    }
}

/// An inventory sync round ended (`ok`, `failed`).
pub fn inventory_sync(connection: &str, ok: bool) {
    counter!(
        "kandji_connector_inventory_syncs_total",
        "connection" => connection.to_string(),
        "result" => if ok { "ok" } else { "failed" },
    )
    .increment(1);
}

/// A store operation failed (`unavailable` or `other`).
pub fn store_error(unavailable: bool) {
    counter!(
        "kandji_connector_store_errors_total",
        "kind" => if unavailable { "unavailable" } else { "other" },
    )
    .increment(1);
}

/// The methods as OpenTelemetry names them (`_OTHER` for a method outside the standard set, so
/// a caller cannot add series).
const METHODS: [&str; 10] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "CONNECT", "_OTHER",
];

/// The index of a method's label in [`METHODS`].
fn method_index(m: &axum::http::Method) -> usize {
    use axum::http::Method;
    match *m {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::PATCH => 3,
        Method::DELETE => 4,
        Method::HEAD => 5,
        Method::OPTIONS => 6,
        Method::TRACE => 7,
        Method::CONNECT => 8,
        _ => 9,
    }
}

/// Around every route: the request's context for its log lines (its id, method and route
/// template, and the card, connection and stream the handler records: [`context`]), its duration
/// and status in the metrics, and one log line when it is answered. The route is axum's
/// [`MatchedPath`] (a template such as `/v1/cards/{id}/invoke`), never the path a caller sent; an
/// unmatched path has none.
pub async fn observe(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method_at = method_index(req.method());
    let method = METHODS[method_at];
    // Shared with the router and the request (reference counts), not copied.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let request_id = req.headers().get("x-request-id");
    let request = context::Request::new(request_id, method, route.clone());
    request
        .scope(async move {
            let resp = {
                // Decremented when dropped, also when the caller goes away mid-request.
                let _active = Active::new(method_at);
                next.run(req).await
            };
            let took = started.elapsed();
            let status = resp.status();
            if recording() {
                static F: LazyLock<Family<Histogram, 3>> = LazyLock::new(|| {
                    Family::new(
                        "http_server_request_duration_seconds",
                        [
                            "http_request_method",
                            "http_route",
                            "http_response_status_code",
                        ],
                    )
                });
                thread_local! {
                    static LAST: handles::Last<Histogram, 3> = const { handles::Last::new() };
                }
                let route = route.as_ref().map_or("", |r| r.as_str());
                F.with_last(
                    &LAST,
                    [method, route, status.as_str()],
                    handles::histogram,
                    |h| h.record(took.as_secs_f64()),
                );
            }
            log_request(
                status.as_u16(),
                (took.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
            );
            resp
        })
        .await
}

/// One more request being served, of the method at this index of [`METHODS`] (one fewer when
/// dropped). Counted in plain atomics, read into `http_server_active_requests` at each scrape
/// ([`render`]): a gauge of the recorder is a compare-and-swap loop on a float and a generation
/// count, twice a request.
struct Active(Option<usize>);

/// Requests being served, by the index of their method in [`METHODS`].
static ACTIVE: [AtomicI64; METHODS.len()] = [const { AtomicI64::new(0) }; METHODS.len()];

impl Active {
    fn new(method: usize) -> Self {
        let at = recording().then(|| method.min(METHODS.len() - 1));
        if let Some(at) = at {
            ACTIVE[at].fetch_add(1, Relaxed);
        }
        Self(at)
    }

    /// Sets the gauge of each method that has been served (a method never seen has no series).
    fn render() {
        static SEEN: [AtomicBool; METHODS.len()] =
            [const { AtomicBool::new(false) }; METHODS.len()];
        for (at, count) in ACTIVE.iter().enumerate() {
            let n = count.load(Relaxed);
            if n != 0 || SEEN[at].load(Relaxed) {
                SEEN[at].store(true, Relaxed);
                gauge!("http_server_active_requests", "http_request_method" => METHODS[at])
                    .set(n as f64);
            }
        }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        if let Some(at) = self.0 {
            ACTIVE[at].fetch_sub(1, Relaxed);
        }
    }
}

/// What a test's log subscriber writes, kept in memory (`.with_writer(buf.clone())`).
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct LogBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl LogBuf {
    /// Everything written so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[cfg(test)]
impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
    type Writer = LogBuf;
    fn make_writer(&'a self) -> LogBuf {
        self.clone()
    }
}

/// Metadata and fields made by hand, for tests of what a subscriber's parts do with them.
#[cfg(test)]
pub(crate) mod test_meta {
    struct Callsite;
    static CALLSITE: Callsite = Callsite;
    impl tracing::callsite::Callsite for Callsite {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &tracing::Metadata<'_> {
            unimplemented!("made by hand")
        }
    }

    /// A field set of these names.
    pub(crate) fn fields(names: &'static [&'static str]) -> tracing::field::FieldSet {
        tracing::field::FieldSet::new(names, tracing::callsite::Identifier(&CALLSITE))
    }

    /// An event's metadata at this level, with no fields.
    pub(crate) fn event(level: tracing::Level) -> tracing::Metadata<'static> {
        tracing::Metadata::new(
            "test",
            "test",
            level,
            None,
            None,
            None,
            fields(&[]),
            tracing::metadata::Kind::EVENT,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_of_statuses() {
        assert_eq!(Outcome::of(200, Some(200)), Outcome::Ok);
        assert_eq!(Outcome::of(200, None), Outcome::Ok);
        assert_eq!(Outcome::of(202, None), Outcome::Ok);
        assert_eq!(Outcome::of(200, Some(404)), Outcome::KandjiError);
        assert_eq!(Outcome::of(422, None), Outcome::InvalidInput);
        assert_eq!(Outcome::of(400, None), Outcome::InvalidInput);
        assert_eq!(Outcome::of(403, None), Outcome::Refused);
        assert_eq!(Outcome::of(429, None), Outcome::Refused);
        assert_eq!(Outcome::of(409, None), Outcome::Refused);
        assert_eq!(Outcome::of(502, None), Outcome::Failed);
        assert_eq!(Outcome::of(504, None), Outcome::Failed);
    }

    /// What each filter lets through: two events outside a span, two inside a `request` span.
    fn filtered(directives: Option<&str>) -> String {
        use tracing_subscriber::layer::SubscriberExt;
        let buf = LogBuf::default();
        let subscriber = tracing_subscriber::registry()
            .with(log_filter(directives))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(buf.clone())
                    .with_ansi(false)
                    .without_time(),
            );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside info");
            tracing::debug!("outside debug");
            tracing::info_span!("request").in_scope(|| {
                tracing::info!("inside info");
                tracing::debug!("inside debug");
            });
        });
        buf.text()
    }

    fn said(text: &str) -> Vec<&str> {
        [
            "outside info",
            "outside debug",
            "inside info",
            "inside debug",
        ]
        .into_iter()
        .filter(|m| text.contains(m))
        .collect()
    }

    #[test]
    fn log_filters_levels_targets_and_span_directives() {
        let info = ["outside info", "inside info"];
        assert_eq!(said(&filtered(None)), info);
        assert_eq!(said(&filtered(Some("  "))), info);
        assert_eq!(said(&filtered(Some("kandji_connector=verbose"))), info);
        assert_eq!(said(&filtered(Some("warn"))), Vec::<&str>::new());
        assert_eq!(said(&filtered(Some("debug"))).len(), 4);
        assert_eq!(
            said(&filtered(Some("warn,kandji_connector=debug"))).len(),
            4
        );
        assert_eq!(said(&filtered(Some("info,hyper=debug"))), info);
        // Levels and targets are a Targets filter, span directives an EnvFilter.
        let kind = |d| {
            use tracing_subscriber::layer::SubscriberExt;
            let d = tracing::Dispatch::new(tracing_subscriber::registry().with(log_filter(d)));
            (
                d.downcast_ref::<tracing_subscriber::filter::Targets>()
                    .is_some(),
                d.downcast_ref::<tracing_subscriber::EnvFilter>().is_some(),
            )
        };
        assert_eq!(kind(None), (true, false));
        assert_eq!(kind(Some("warn,kandji_connector=debug")), (true, false));
        assert_eq!(kind(Some("info,[request]=debug")), (false, true));
        // A span directive (EnvFilter's): debug only inside the request's span.
        assert_eq!(
            said(&filtered(Some("info,[request]=debug"))),
            ["outside info", "inside info", "inside debug"]
        );
    }

    /// The request line written straight to the writer reads exactly as the event through
    /// each format, in and out of a request, for latencies of every shape.
    #[tokio::test]
    async fn request_lines_read_as_the_event_would() {
        for format in [LogFormat::Json, LogFormat::Text] {
            let buf = LogBuf::default();
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(buf.clone())
                .with_ansi(false);
            let _guard = match format {
                LogFormat::Json => tracing::subscriber::set_default(
                    tracing_subscriber::layer::SubscriberExt::with(
                        tracing_subscriber::registry(),
                        layer
                            .fmt_fields(json_log::JsonFields)
                            .event_format(json_log::JsonLine),
                    ),
                ),
                LogFormat::Text => tracing::subscriber::set_default(
                    tracing_subscriber::layer::SubscriberExt::with(
                        tracing_subscriber::registry(),
                        layer.event_format(text_log::TextLine::default()),
                    ),
                ),
            };
            let mut direct = String::new();
            let cases = [
                (200_u16, 0.412),
                (404, 3.0),
                (503, 12.5),
                (200, 1234.567),
                (201, 0.001),
            ];
            let mut both = |status: u16, latency_ms: f64| {
                tracing::info!(status, latency_ms, "request");
                request_line(format, status, latency_ms, |l| direct.push_str(l));
            };
            for (status, latency_ms) in cases {
                both(status, latency_ms);
            }
            context::Request::new(Some(&"r-\"1\"".parse().unwrap()), "POST", None)
                .scope(async {
                    both(200, 0.088);
                    record_ids(Some("lock_device"), Some("conn_1"), Some("str_1"));
                    for (status, latency_ms) in cases {
                        both(status, latency_ms);
                    }
                })
                .await;
            // The lines without their time (written at two different instants).
            let untimed = |text: &str| -> Vec<String> {
                text.lines()
                    .map(|l| match format {
                        LogFormat::Json => {
                            let at = l.find("\",\"level\"").unwrap();
                            l[at..].to_string()
                        }
                        LogFormat::Text => l[27..].to_string(),
                    })
                    .collect()
            };
            let through_tracing = buf.text();
            assert_eq!(through_tracing.lines().count(), 11, "{through_tracing}");
            assert_eq!(untimed(&direct), untimed(&through_tracing), "{format:?}");
            assert!(direct.contains("lock_device") && direct.ends_with('\n'));
        }
    }

    #[test]
    fn log_formats() {
        assert_eq!(LogFormat::parse("json"), Ok(LogFormat::Json));
        assert_eq!(LogFormat::parse(""), Ok(LogFormat::Text));
        assert!(LogFormat::parse("xml").unwrap_err().contains("`json`"));
    }
}
