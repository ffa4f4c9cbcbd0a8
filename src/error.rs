//! One error type for the HTTP API, rendered as RFC 9457 `application/problem+json`, and the
//! one place errors are logged.
//!
//! Handlers return `Result<_, Problem>` and use `?`: the lower layers' errors (store, Kandji,
//! engine, streams, device trust) become problems through the `From` conversions in
//! `api::errors`. A problem may carry a `cause` for the operator (never shown to the caller,
//! never a secret); [`log_problems`], one middleware around every route, logs each problem once
//! from the response's extensions: 5xx as errors with their cause, 4xx at debug level.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Where a bad value sits and what is wrong with it: `{"loc": ["inputs", "device_id"], "msg",
/// "type"}`. The value itself is never echoed.
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
pub struct FieldError {
    /// Path to the field in the request, e.g. `["inputs", "device_id"]`, `["options",
    /// "result_set"]`, `["connection"]`, `["api_token"]`, `["query", "limit"]`.
    #[schema(examples(json!(["inputs", "device_id"])))]
    pub loc: Vec<String>,
    /// What is wrong, for a human.
    #[schema(examples("is required"))]
    pub msg: String,
    /// Machine-readable kind: a JSON Schema keyword (`required`, `type`, `enum`, `minLength`,
    /// `pattern`, ...) or one of the connector's own kinds (`unknown_field`,
    /// `unknown_connection`, `at_least_one`, `shape`, `json`, `relative_url`, `name`,
    /// `api_url`, `token`, `range`, `kandji_auth`, `kandji_status`, `unreachable`, ...).
    #[serde(rename = "type")]
    #[schema(examples("required"))]
    pub kind: String,
}

impl FieldError {
    pub fn new(loc: &[&str], msg: impl Into<String>, kind: &str) -> Self {
        Self {
            loc: loc.iter().map(|s| s.to_string()).collect(),
            msg: msg.into(),
            kind: kind.to_string(),
        }
    }
}

/// A refusal or failure of the connector itself (not an answer from Kandji).
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub title: String,
    pub detail: Option<String>,
    pub errors: Vec<FieldError>,
    pub retry_after: Option<u64>,
    /// What went wrong underneath, for the log only (never a secret, never sent).
    pub cause: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, title: impl Into<String>) -> Self {
        Self {
            status,
            title: title.into(),
            detail: None,
            errors: Vec::new(),
            retry_after: None,
            cause: None,
        }
    }
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
    pub fn errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
    /// The cause the log shows (the caller sees only title and detail).
    pub fn cause(mut self, cause: impl std::fmt::Display) -> Self {
        self.cause = Some(cause.to_string());
        self
    }

    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.loc.join("."), e.msg))
            .collect::<Vec<_>>()
            .join("; ");
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request")
            .detail(detail)
            .errors(errors)
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Bad request").detail(detail)
    }
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not found").detail(what)
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized").detail(detail)
    }
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal error").detail(detail)
    }
    pub fn not_implemented(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, "Not implemented").detail(detail)
    }
}

/// An RFC 9457 problem: a refusal or failure of the connector itself, never an answer from
/// Kandji.
#[derive(Serialize, ToSchema)]
#[schema(as = Problem)]
pub struct ProblemBody<'a> {
    /// Always `about:blank`: `title` and `status` say what happened.
    #[serde(rename = "type")]
    #[schema(pattern = "^about:blank$")]
    kind: &'static str,
    /// Short summary of the problem, the same for every occurrence of one kind (e.g.
    /// `Invalid request`).
    title: &'a str,
    /// The HTTP status of this response.
    #[schema(minimum = 400, maximum = 599)]
    status: u16,
    /// Human-readable explanation of this occurrence. For 422, every field error as
    /// `loc.joined.by.dots: msg`, separated by `; `.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    detail: Option<&'a str>,
    /// One entry per offending field; present (non-empty) on 422 and on a body that is not
    /// valid JSON, absent otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(min_items = 1)]
    errors: &'a Vec<FieldError>,
}

impl Problem {
    /// The problem+json body.
    pub fn body_json(&self) -> serde_json::Value {
        serde_json::to_value(ProblemBody {
            kind: "about:blank",
            title: &self.title,
            status: self.status.as_u16(),
            detail: self.detail.as_deref(),
            errors: &self.errors,
        })
        .unwrap_or_default()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let bytes = serde_json::to_vec(&self.body_json()).unwrap_or_default();
        let mut resp = (self.status, bytes).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp.extensions_mut().insert(ProblemLog {
            title: self.title,
            detail: self.detail,
            cause: self.cause,
        });
        resp
    }
}

/// What [`log_problems`] may print about a problem (no secrets are ever put in a Problem).
#[derive(Clone, Debug)]
pub struct ProblemLog {
    pub title: String,
    pub detail: Option<String>,
    pub cause: Option<String>,
}

/// A failure the caller's answer does not show (the answer stands), e.g. an idempotency record
/// that could not be saved: put in the response's extensions, logged as an error by
/// [`log_problems`].
#[derive(Clone, Debug)]
pub struct UnshownFailure {
    pub what: &'static str,
    pub cause: String,
}

/// The one place errors are logged: every problem answered (5xx as errors, with their cause;
/// 4xx at debug level), every [`UnshownFailure`], and a 5xx without a problem body (the
/// request timeout's 504).
pub async fn log_problems(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let resp = next.run(req).await;
    log_answer(
        method.as_str(),
        &path,
        &request_id,
        resp.status().as_u16(),
        resp.extensions().get::<ProblemLog>(),
        resp.extensions().get::<UnshownFailure>(),
    );
    resp
}

/// The log lines of one answer (an HTTP response, or an MCP tool call's answer, which travels
/// inside a 200): its problem, if any, and a failure it does not show.
pub fn log_answer(
    method: &str,
    path: &str,
    request_id: &str,
    status: u16,
    problem: Option<&ProblemLog>,
    unshown: Option<&UnshownFailure>,
) {
    if let Some(f) = unshown {
        tracing::error!(%method, path, request_id, status, cause = %f.cause, "{}", f.what);
    }
    match problem {
        Some(p) if status >= 500 => tracing::error!(
            %method, path, request_id, status, detail = p.detail.as_deref().unwrap_or(""),
            cause = p.cause.as_deref().unwrap_or(""), "{}", p.title
        ),
        Some(p) => tracing::debug!(
            %method, path, request_id, status, detail = p.detail.as_deref().unwrap_or(""),
            "{}", p.title
        ),
        None if status >= 500 => {
            tracing::error!(%method, path, request_id, status, "request failed without a problem body")
        }
        None => {}
    }
}

impl Problem {
    /// What the log may show of this problem.
    pub fn log(&self) -> ProblemLog {
        ProblemLog {
            title: self.title.clone(),
            detail: self.detail.clone(),
            cause: self.cause.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;
    use crate::store::StoreError;

    /// A route answering `answer()` behind the log middleware: its status, headers, body, and
    /// what the middleware logged.
    fn logged(answer: fn() -> Response) -> (Response, String, String) {
        let buf = crate::telemetry::LogBuf::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(buf.clone())
            .finish();
        let app = Router::new()
            .route("/x", get(move || async move { answer() }))
            .layer(axum::middleware::from_fn(log_problems));
        let (resp, body) = tracing::subscriber::with_default(subscriber, || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async {
                let req = Request::get("/x").body(Body::empty()).unwrap();
                let resp = app.oneshot(req).await.unwrap();
                let (parts, body) = resp.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
                (Response::from_parts(parts, Body::empty()), body)
            })
        });
        let log = buf.text();
        (resp, String::from_utf8(body.to_vec()).unwrap(), log)
    }

    fn line<'a>(log: &'a str, having: &str) -> &'a str {
        log.lines()
            .find(|l| l.contains(having))
            .unwrap_or_else(|| panic!("no log line with {having:?} in {log:?}"))
    }

    #[test]
    fn a_server_error_is_logged_once_with_its_cause_which_the_caller_never_sees() {
        let (resp, body, log) = logged(|| {
            Problem::from(StoreError::Db("disk I/O error on page 7".into())).into_response()
        });
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert!(!body.contains("disk I/O"), "{body}");
        assert_eq!(log.matches("disk I/O error on page 7").count(), 1, "{log}");
        let l = line(&log, "disk I/O");
        assert!(l.contains("ERROR") && l.contains("Internal error"), "{l}");
        assert!(l.contains("status=500") && l.contains("path=\"/x\""), "{l}");
    }

    #[test]
    fn an_unreachable_store_is_503_with_retry_after_and_logged_as_an_error() {
        let (resp, body, log) = logged(|| {
            Problem::from(StoreError::Unavailable("pool timed out".into())).into_response()
        });
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "5");
        assert!(body.contains("\"title\":\"Store unavailable\""), "{body}");
        assert!(line(&log, "pool timed out").contains("ERROR"), "{log}");
    }

    #[test]
    fn a_refusal_is_logged_below_error_level() {
        let (resp, _, log) = logged(|| {
            let e = FieldError::new(&["inputs", "device_id"], "is required", "required");
            Problem::invalid(vec![e]).into_response()
        });
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(!log.contains("ERROR"), "{log}");
        let l = line(&log, "Invalid request");
        assert!(l.contains("DEBUG") && l.contains("status=422"), "{l}");
    }

    #[test]
    fn a_failure_behind_a_good_answer_is_logged_and_the_answer_stands() {
        let (resp, body, log) = logged(|| {
            let mut resp = (StatusCode::OK, "fine").into_response();
            resp.extensions_mut().insert(UnshownFailure {
                what: "the idempotency record could not be saved",
                cause: "database is locked".into(),
            });
            resp
        });
        assert_eq!((resp.status(), body.as_str()), (StatusCode::OK, "fine"));
        let l = line(&log, "database is locked");
        assert!(
            l.contains("ERROR") && l.contains("idempotency record could not be saved"),
            "{l}"
        );
    }

    #[test]
    fn a_success_logs_nothing() {
        let (resp, _, log) = logged(|| "fine".into_response());
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(log.is_empty(), "{log}");
    }
}
