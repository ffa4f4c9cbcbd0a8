//! Routing, authentication and the response shapes shared by the handlers.
//!
//! Routing is by hand over path segments because Kandji's behaviour around it is specific:
//! unknown paths get Django's HTML 404 before authentication, known paths authenticate before
//! the method is checked (DRF), and both `/devices` and `/devices/` are accepted.

use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;

use super::SimState;
use super::handlers;

pub struct Req<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Vec<(String, String)>,
    pub content_type: Option<&'a str>,
    pub body: &'a Bytes,
    host: Option<&'a str>,
    authorization: Option<&'a str>,
}

impl<'a> Req<'a> {
    pub fn new(parts: &'a Parts, content_type: Option<&'a str>, body: &'a Bytes) -> Self {
        let header = |name| parts.headers.get(name).and_then(|v| v.to_str().ok());
        Req {
            method: &parts.method,
            path: parts.uri.path(),
            query: parts
                .uri
                .query()
                .map(|q| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .into_owned()
                        .collect()
                })
                .unwrap_or_default(),
            content_type,
            body,
            host: header(header::HOST).or_else(|| parts.uri.authority().map(|a| a.as_str())),
            authorization: header(header::AUTHORIZATION),
        }
    }

    /// The last value of a query parameter (Django's `QueryDict.get`).
    pub fn q(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter, ignoring empty values as django-filter does.
    pub fn filter(&self, key: &str) -> Option<&str> {
        self.q(key).filter(|v| !v.is_empty())
    }

    /// Absolute URL of `canonical_path` with `query`, on the configured link host (Kandji's
    /// wrong-host quirk) or else on the host the request came to.
    pub fn absolute_url(
        &self,
        state: &SimState,
        canonical_path: &str,
        query: &[(String, String)],
    ) -> String {
        let host = match state.next_link_host() {
            Some(h) => h.to_string(),
            None => format!("http://{}", self.host.unwrap_or("127.0.0.1")),
        };
        if query.is_empty() {
            format!("{host}{canonical_path}")
        } else {
            let q = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(query)
                .finish();
            format!("{host}{canonical_path}?{q}")
        }
    }

    /// The request's query with `key` set to `value` (or removed for `None`), sorted by key as
    /// DRF's `replace_query_param` does.
    pub fn query_with(&self, changes: &[(&str, Option<String>)]) -> Vec<(String, String)> {
        let mut q: Vec<(String, String)> = self
            .query
            .iter()
            .filter(|(k, _)| !changes.iter().any(|(c, _)| c == k))
            .cloned()
            .collect();
        for (k, v) in changes {
            if let Some(v) = v {
                q.push((k.to_string(), v.clone()));
            }
        }
        q.sort_by(|a, b| a.0.cmp(&b.0));
        q
    }
}

// ---- responses ----

pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => json_bytes(status, bytes),
        Err(e) => json_bytes(500, format!("{{\"detail\":\"{e}\"}}").into_bytes()),
    }
}

pub fn json_bytes(status: u16, bytes: Vec<u8>) -> Response {
    let content_type = [(header::CONTENT_TYPE, "application/json")];
    (code(status), content_type, bytes).into_response()
}

fn code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A success without a body (most device actions).
pub fn empty(status: u16) -> Response {
    code(status).into_response()
}

/// DRF's `{"detail": "..."}`.
pub fn detail(status: u16, msg: &str) -> Response {
    json(status, &serde_json::json!({ "detail": msg }))
}

/// A bare JSON string body, as Kandji's device actions answer errors.
pub fn bare(status: u16, msg: &str) -> Response {
    json(status, msg)
}

/// A JSON list of strings body (`["Device is not in lost mode."]`).
pub fn str_list(status: u16, msg: &str) -> Response {
    json(status, &[msg])
}

/// DRF field errors: `{"field": ["message"]}`.
pub fn field_error(status: u16, field: &str, msg: &str) -> Response {
    json(status, &serde_json::json!({ field: [msg] }))
}

pub fn not_found() -> Response {
    detail(404, "Not found.")
}

const DJANGO_404: &str = "<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>Not Found</title>\n</head>\n<body>\n  <h1>Not Found</h1><p>The requested resource was not found on this server.</p>\n</body>\n</html>\n";

/// Django's page for an unknown URL.
pub fn html_404() -> Response {
    let content_type = [(header::CONTENT_TYPE, "text/html; charset=utf-8")];
    (StatusCode::NOT_FOUND, content_type, DJANGO_404).into_response()
}

fn method_not_allowed(method: &Method, allowed: &[Method]) -> Response {
    let mut resp = detail(405, &format!("Method \"{method}\" not allowed."));
    let allow = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if let Ok(v) = HeaderValue::from_str(&allow) {
        resp.headers_mut().insert(header::ALLOW, v);
    }
    resp
}

fn unauthorized() -> Response {
    let mut resp = detail(401, "Invalid token.");
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"api\""),
    );
    resp
}

fn authorized(state: &SimState, req: &Req) -> bool {
    let Some(value) = req.authorization else {
        return false;
    };
    let mut parts = value.split_whitespace();
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(scheme), Some(token), None)
            if scheme.eq_ignore_ascii_case("bearer") && token == state.token()
    )
}

// ---- request bodies ----

/// A parsed request body: JSON, or form pairs, or nothing.
pub enum BodyData {
    Empty,
    Json(serde_json::Value),
    Form(Vec<(String, String)>),
}

impl BodyData {
    /// A top-level field, as JSON (form values become strings).
    pub fn get(&self, key: &str) -> Option<serde_json::Value> {
        match self {
            BodyData::Empty => None,
            BodyData::Json(v) => v.get(key).cloned(),
            BodyData::Form(pairs) => pairs
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| serde_json::Value::String(v.clone())),
        }
    }
}

/// How a body error is written: DRF's `{"detail": ...}` or Kandji's bare string (actions).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ErrorStyle {
    Detail,
    Bare,
}

impl ErrorStyle {
    pub fn error(self, status: u16, msg: &str) -> Response {
        match self {
            ErrorStyle::Detail => detail(status, msg),
            ErrorStyle::Bare => bare(status, msg),
        }
    }
}

/// Parses the body the way DRF's parsers do: JSON and form bodies; an empty body is no data;
/// any other media type with a body is 415.
pub fn parse_body(req: &Req, style: ErrorStyle) -> Result<BodyData, Response> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(BodyData::Empty);
    }
    let media = req
        .content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/json" => serde_json::from_slice(req.body)
            .map(BodyData::Json)
            .map_err(|e| style.error(400, &python_json_error(&e, req.body))),
        "application/x-www-form-urlencoded" | "multipart/form-data" => Ok(BodyData::Form(
            url::form_urlencoded::parse(req.body).into_owned().collect(),
        )),
        _ => Err(detail(
            415,
            &format!(
                "Unsupported media type \"{}\" in request.",
                req.content_type.unwrap_or("")
            ),
        )),
    }
}

/// serde_json's error in the words of Python's `json` module, which Kandji's answers quote.
fn python_json_error(e: &serde_json::Error, body: &[u8]) -> String {
    let text = e.to_string();
    let what = if text.starts_with("expected `,` or `}`") || text.starts_with("expected `,` or `]`")
    {
        "Expecting ',' delimiter"
    } else if text.starts_with("key must be a string") {
        "Expecting property name enclosed in double quotes"
    } else if text.starts_with("trailing characters") {
        "Extra data"
    } else if text.starts_with("expected `:`") {
        "Expecting ':' delimiter"
    } else if text.starts_with("EOF while parsing a string") {
        "Unterminated string starting at"
    } else {
        "Expecting value"
    };
    let (line, column) = (e.line().max(1), e.column().max(1));
    let body = String::from_utf8_lossy(body);
    let line_start: usize = body
        .split_inclusive('\n')
        .take(line - 1)
        .map(|l| l.chars().count())
        .sum();
    let pos = line_start + column - 1;
    format!("JSON parse error - {what}: line {line} column {column} (char {pos})")
}

// ---- paging ----

/// DRF's positive-integer query parameter: missing, invalid or non-positive gives `default`.
pub fn positive_int(v: Option<&str>, default: usize, max: usize) -> usize {
    v.and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|n| *n > 0)
        .map(|n| (n as usize).min(max))
        .unwrap_or(default)
}

pub fn non_negative_int(v: Option<&str>) -> usize {
    v.and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .map(|n| n as usize)
        .unwrap_or(0)
}

/// DRF LimitOffsetPagination's `next` and `previous` links.
pub fn limit_offset_links(
    state: &SimState,
    req: &Req,
    canonical_path: &str,
    count: usize,
    limit: usize,
    offset: usize,
) -> (Option<String>, Option<String>) {
    let next = (offset + limit < count).then(|| {
        let q = req.query_with(&[
            ("limit", Some(limit.to_string())),
            ("offset", Some((offset + limit).to_string())),
        ]);
        req.absolute_url(state, canonical_path, &q)
    });
    let previous = (offset > 0).then(|| {
        let prev = offset.saturating_sub(limit);
        let q = req.query_with(&[
            ("limit", Some(limit.to_string())),
            ("offset", (prev > 0).then(|| prev.to_string())),
        ]);
        req.absolute_url(state, canonical_path, &q)
    });
    (next, previous)
}

/// Slices `items` by `limit` (at most `max`) and `offset` into a DRF envelope.
pub fn limit_offset_page<'a, T: Serialize>(
    state: &SimState,
    req: &Req,
    canonical_path: &str,
    items: &'a [T],
    max: usize,
) -> Envelope<'a, T> {
    let limit = positive_int(req.q("limit"), max, max);
    let offset = non_negative_int(req.q("offset"));
    let (next, previous) =
        limit_offset_links(state, req, canonical_path, items.len(), limit, offset);
    let start = offset.min(items.len());
    let end = (start + limit).min(items.len());
    Envelope {
        count: Some(items.len()),
        next,
        previous,
        results: &items[start..end],
    }
}

#[derive(Serialize)]
pub struct Envelope<'a, T: Serialize> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    pub next: Option<String>,
    pub previous: Option<String>,
    pub results: &'a [T],
}

impl<'a, T: Serialize> Envelope<'a, T> {
    /// Every item, counted, on one page: no links.
    pub fn all(results: &'a [T]) -> Self {
        Envelope {
            count: Some(results.len()),
            next: None,
            previous: None,
            results,
        }
    }
}

/// One page of a page-numbered list: which items, and the links around it.
pub struct Page {
    pub range: std::ops::Range<usize>,
    pub next: Option<String>,
    pub previous: Option<String>,
}

impl Page {
    /// The page's envelope: `results` (its items, as shown) of `count` items in all.
    pub fn envelope<T: Serialize>(self, count: usize, results: &[T]) -> Envelope<'_, T> {
        Envelope {
            count: Some(count),
            next: self.next,
            previous: self.previous,
            results,
        }
    }
}

/// DRF PageNumberPagination over `count` items, or 404 "Invalid page.".
pub fn page_number(
    state: &SimState,
    req: &Req,
    canonical_path: &str,
    count: usize,
    page_size: usize,
) -> Result<Page, Response> {
    let pages = count.div_ceil(page_size).max(1);
    let page = match req.q("page") {
        None | Some("") => 1,
        Some("last") => pages,
        Some(p) => match p.trim().parse::<usize>() {
            Ok(n) if n >= 1 && n <= pages => n,
            _ => return Err(detail(404, "Invalid page.")),
        },
    };
    let start = (page - 1) * page_size;
    let end = (start + page_size).min(count);
    let next = (page < pages).then(|| {
        let q = req.query_with(&[("page", Some((page + 1).to_string()))]);
        req.absolute_url(state, canonical_path, &q)
    });
    let previous = (page > 1).then(|| {
        let q = req.query_with(&[("page", (page > 2).then(|| (page - 1).to_string()))]);
        req.absolute_url(state, canonical_path, &q)
    });
    Ok(Page {
        range: start..end,
        next,
        previous,
    })
}

// ---- routing ----

enum Route<'a> {
    Devices,
    Device(&'a str),
    DeviceDetails(&'a str),
    DeviceLostMode(&'a str),
    DeviceApps(&'a str),
    DeviceLibraryItems(&'a str),
    DeviceActivity(&'a str),
    DeviceCommands(&'a str),
    DeviceNotes(&'a str),
    DeviceNote(&'a str, &'a str),
    DeviceSecret(&'a str, handlers::devices::Secret),
    DeviceAction(&'a str, handlers::actions::Action),
    Blueprints,
    Blueprint(&'a str),
    BlueprintLibraryItems(&'a str),
    BlueprintAssignment(&'a str, handlers::library::Assignment),
    CustomApps,
    LibraryItemActivity(&'a str),
    LibraryItemStatus(&'a str),
    ThreatDetails,
    AdeIntegrations,
    AdeIntegration(&'a str),
    AdeTokenDevices(&'a str),
    AdeDevices,
    AdeDevice(&'a str),
    Users,
    User(&'a str),
    Tags,
    Tag(&'a str),
    Licensing,
    AuditEvents,
}

fn route<'a>(segments: &[&'a str]) -> Option<Route<'a>> {
    use handlers::actions::Action;
    use handlers::devices::Secret;
    Some(match *segments {
        ["devices"] => Route::Devices,
        ["devices", id] => Route::Device(id),
        ["devices", id, "details"] => Route::DeviceDetails(id),
        ["devices", id, "details", "lostmode"] => Route::DeviceLostMode(id),
        ["devices", id, "apps"] => Route::DeviceApps(id),
        ["devices", id, "library-items"] => Route::DeviceLibraryItems(id),
        ["devices", id, "activity"] => Route::DeviceActivity(id),
        ["devices", id, "commands"] => Route::DeviceCommands(id),
        ["devices", id, "notes"] => Route::DeviceNotes(id),
        ["devices", id, "notes", note] => Route::DeviceNote(id, note),
        ["devices", id, "secrets", kind] => Route::DeviceSecret(id, Secret::parse(kind)?),
        ["devices", id, "action", action] => Route::DeviceAction(id, Action::parse(action)?),
        ["blueprints"] => Route::Blueprints,
        ["blueprints", id] => Route::Blueprint(id),
        ["blueprints", id, "list-library-items"] => Route::BlueprintLibraryItems(id),
        ["blueprints", id, "assign-library-item"] => {
            Route::BlueprintAssignment(id, handlers::library::Assignment::Assign)
        }
        ["blueprints", id, "remove-library-item"] => {
            Route::BlueprintAssignment(id, handlers::library::Assignment::Remove)
        }
        ["library", "custom-apps"] => Route::CustomApps,
        ["library", "library-items", id, "activity"] => Route::LibraryItemActivity(id),
        ["library", "library-items", id, "status"] => Route::LibraryItemStatus(id),
        ["threat-details"] => Route::ThreatDetails,
        ["integrations", "apple", "ade"] => Route::AdeIntegrations,
        ["integrations", "apple", "ade", "devices"] => Route::AdeDevices,
        ["integrations", "apple", "ade", "devices", id] => Route::AdeDevice(id),
        ["integrations", "apple", "ade", id] => Route::AdeIntegration(id),
        ["integrations", "apple", "ade", id, "devices"] => Route::AdeTokenDevices(id),
        ["users"] => Route::Users,
        ["users", id] => Route::User(id),
        ["tags"] => Route::Tags,
        ["tags", id] => Route::Tag(id),
        ["settings", "licensing"] => Route::Licensing,
        ["audit", "events"] => Route::AuditEvents,
        _ => return None,
    })
}

impl Route<'_> {
    fn allowed(&self) -> &'static [Method] {
        const GET: &[Method] = &[Method::GET];
        const GET_POST: &[Method] = &[Method::GET, Method::POST];
        const GET_DELETE: &[Method] = &[Method::GET, Method::DELETE];
        const GET_PATCH_DELETE: &[Method] = &[Method::GET, Method::PATCH, Method::DELETE];
        const PATCH_DELETE: &[Method] = &[Method::PATCH, Method::DELETE];
        const POST: &[Method] = &[Method::POST];
        match self {
            Route::Device(_) | Route::DeviceNote(..) | Route::Blueprint(_) => GET_PATCH_DELETE,
            Route::DeviceLostMode(_) | Route::User(_) => GET_DELETE,
            Route::DeviceNotes(_) | Route::Blueprints | Route::Tags => GET_POST,
            Route::Tag(_) => PATCH_DELETE,
            Route::DeviceAction(..) | Route::BlueprintAssignment(..) => POST,
            _ => GET,
        }
    }
}

pub fn dispatch(state: &SimState, req: &Req) -> Response {
    if let Some(rest) = req.path.strip_prefix("/_sim/") {
        if !authorized(state, req) {
            return unauthorized();
        }
        let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        return handlers::audit::admin(state, req, &segments);
    }
    let Some(rest) = req.path.strip_prefix("/api/v1/") else {
        return html_404();
    };
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let Some(route) = route(&segments) else {
        return html_404();
    };
    if !authorized(state, req) {
        return unauthorized();
    }
    let allowed = route.allowed();
    // HEAD is answered as GET; hyper leaves the body out.
    let m = if *req.method == Method::HEAD {
        &Method::GET
    } else {
        req.method
    };
    if !allowed.contains(m) {
        return method_not_allowed(req.method, allowed);
    }
    use handlers::{ade, blueprints, devices, directory, library, threats};
    match route {
        Route::Devices => devices::list(state, req),
        Route::Device(id) => match *m {
            Method::GET => devices::get(state, id),
            Method::PATCH => devices::update(state, req, id),
            _ => devices::delete(state, id),
        },
        Route::DeviceDetails(id) => devices::details(state, id),
        Route::DeviceLostMode(id) => match *m {
            Method::GET => devices::lost_mode(state, id),
            _ => devices::cancel_lost_mode(state, id),
        },
        Route::DeviceApps(id) => devices::apps(state, id),
        Route::DeviceLibraryItems(id) => devices::library_items(state, id),
        Route::DeviceActivity(id) => devices::activity(state, req, id),
        Route::DeviceCommands(id) => devices::commands(state, req, id),
        Route::DeviceNotes(id) => match *m {
            Method::GET => devices::notes(state, id),
            _ => devices::create_note(state, req, id),
        },
        Route::DeviceNote(id, note) => devices::note(state, req, id, note),
        Route::DeviceSecret(id, secret) => devices::secret(state, id, secret),
        Route::DeviceAction(id, action) => handlers::actions::run(state, req, id, action),
        Route::Blueprints => match *m {
            Method::GET => blueprints::list(state, req),
            _ => blueprints::create(state, req),
        },
        Route::Blueprint(id) => match *m {
            Method::GET => blueprints::get(state, id),
            Method::PATCH => blueprints::update(state, req, id),
            _ => blueprints::delete(state, id),
        },
        Route::BlueprintLibraryItems(id) => library::blueprint_library_items(state, req, id),
        Route::BlueprintAssignment(id, op) => library::assignment(state, req, id, op),
        Route::CustomApps => library::custom_apps(state, req),
        Route::LibraryItemActivity(id) => library::activity(state, req, id),
        Route::LibraryItemStatus(id) => library::status(state, req, id),
        Route::ThreatDetails => threats::threat_details(state, req),
        Route::AdeIntegrations => ade::list_integrations(state, req),
        Route::AdeIntegration(id) => ade::get_integration(state, id),
        Route::AdeTokenDevices(id) => ade::token_devices(state, req, id),
        Route::AdeDevices => ade::devices(state, req),
        Route::AdeDevice(id) => ade::device(state, id),
        Route::Users => directory::users(state, req),
        Route::User(id) => match *m {
            Method::GET => directory::user(state, id),
            _ => directory::delete_user(state, id),
        },
        Route::Tags => match *m {
            Method::GET => directory::tags(state, req),
            _ => directory::create_tag(state, req),
        },
        Route::Tag(id) => match *m {
            Method::PATCH => directory::update_tag(state, req, id),
            _ => directory::delete_tag(state, id),
        },
        Route::Licensing => directory::licensing(state),
        Route::AuditEvents => handlers::audit::list(state, req),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_read_like_python() {
        let body = br#"{"a": 1 "b": 2}"#;
        let e = serde_json::from_slice::<serde_json::Value>(body).unwrap_err();
        assert_eq!(
            python_json_error(&e, body),
            "JSON parse error - Expecting ',' delimiter: line 1 column 9 (char 8)"
        );
        let e = serde_json::from_slice::<serde_json::Value>(b"").unwrap_err();
        assert!(python_json_error(&e, b"").starts_with("JSON parse error - Expecting value"));
    }

    #[test]
    fn positive_int_clamps_and_defaults() {
        assert_eq!(positive_int(Some("1000"), 300, 300), 300);
        assert_eq!(positive_int(Some("0"), 300, 300), 300);
        assert_eq!(positive_int(Some("abc"), 300, 300), 300);
        assert_eq!(positive_int(Some("5"), 300, 300), 5);
        assert_eq!(non_negative_int(Some("-3")), 0);
    }
}
