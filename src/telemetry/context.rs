//! The request a log line belongs to: its id, method and route, and the card, connection and
//! stream it touched. Kept in a task-local for as long as the request is served, and read by the
//! log formats ([`super::json_log`], [`super::text_log`]) for every line written meanwhile.
//!
//! Not a tracing span: a span is entered and left at every poll of the request's future (a
//! registry lookup, a reference count and every layer's enter and exit each time), made in a
//! sharded slab and closed at the end; with a line per request that was about 6 % of an
//! invocation's time (bench/telemetry.sh). A task-local costs a swap of a thread-local per
//! poll. The lines look as they did: under `span` in JSON, as a `request{…}:` prefix in text.

use std::cell::RefCell;
use std::fmt::Write as _;

use axum::extract::MatchedPath;
use axum::http::HeaderValue;

tokio::task_local! {
    static REQUEST: Request;
}

/// The request being served.
pub struct Request {
    request_id: Option<HeaderValue>,
    method: &'static str,
    route: Option<MatchedPath>,
    ids: RefCell<Ids>,
}

#[derive(Default)]
struct Ids {
    card: Option<Box<str>>,
    connection: Option<Box<str>>,
    stream: Option<Box<str>>,
}

impl Request {
    pub fn new(
        request_id: Option<HeaderValue>,
        method: &'static str,
        route: Option<MatchedPath>,
    ) -> Self {
        Self {
            request_id,
            method,
            route,
            ids: RefCell::default(),
        }
    }

    /// Runs `fut` as this request: the lines it logs carry the request's fields.
    pub async fn scope<F: Future>(self, fut: F) -> F::Output {
        REQUEST.scope(self, fut).await
    }

    /// The request's fields in order, as (name, value); the ids only once known.
    fn fields(&self, mut each: impl FnMut(&'static str, &str)) {
        each(
            "request_id",
            self.request_id
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        );
        each("method", self.method);
        each("route", self.route.as_ref().map_or("", |r| r.as_str()));
        let ids = self.ids.borrow();
        for (name, value) in [
            ("card", &ids.card),
            ("connection", &ids.connection),
            ("stream", &ids.stream),
        ] {
            if let Some(v) = value {
                each(name, v);
            }
        }
    }
}

/// Records ids on the request being served (a no-op outside one).
pub fn record_ids(card: Option<&str>, connection: Option<&str>, stream: Option<&str>) {
    let _ = REQUEST.try_with(|r| {
        let mut ids = r.ids.borrow_mut();
        let ids = &mut *ids;
        for (slot, value) in [
            (&mut ids.card, card),
            (&mut ids.connection, connection),
            (&mut ids.stream, stream),
        ] {
            if let Some(v) = value {
                *slot = Some(v.into());
            }
        }
    });
}

/// Appends `,"span":{…,"name":"request"}` for the request being served; false outside one.
pub fn push_json(line: &mut String) -> bool {
    REQUEST
        .try_with(|r| {
            line.push_str(",\"span\":{");
            // The names are ours (nothing to escape), the values may come from a caller.
            r.fields(|name, value| {
                line.push('"');
                line.push_str(name);
                line.push_str("\":");
                super::json_log::push_json_str(line, value);
                line.push(',');
            });
            line.push_str("\"name\":\"request\"}");
        })
        .is_ok()
}

/// Appends `request{request_id="…" method="…" …}:` for the request being served (as
/// tracing-subscriber writes a span, the name in bold on a terminal); false outside one.
pub fn push_text(line: &mut String, ansi: bool) -> bool {
    REQUEST
        .try_with(|r| {
            line.push_str(if ansi {
                "\x1b[1mrequest\x1b[0m"
            } else {
                "request"
            });
            line.push_str(if ansi { "\x1b[1m{\x1b[0m" } else { "{" });
            let mut first = true;
            r.fields(|name, value| {
                if !first {
                    line.push(' ');
                }
                first = false;
                if ansi {
                    let _ = write!(line, "\x1b[3m{name}\x1b[0m\x1b[2m=\x1b[0m{value:?}");
                } else {
                    let _ = write!(line, "{name}={value:?}");
                }
            });
            line.push_str(if ansi { "\x1b[1m}\x1b[0m" } else { "}" });
            line.push(':');
        })
        .is_ok()
}
