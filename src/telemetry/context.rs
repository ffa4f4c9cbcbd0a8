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
use std::ops::Range;

use axum::extract::MatchedPath;
use axum::http::HeaderValue;

tokio::task_local! {
    // Boxed: the task-local's value is moved in and out of its thread-local at every poll.
    static REQUEST: Box<Request>;
}

/// The request being served.
pub struct Request {
    method: &'static str,
    route: Option<MatchedPath>,
    texts: RefCell<Texts>,
}

/// The request's id and the ids it records, one after the other in one string (one allocation
/// a request): each field is a range of it.
struct Texts {
    all: String,
    request_id: Range<usize>,
    card: Option<Range<usize>>,
    connection: Option<Range<usize>>,
    stream: Option<Range<usize>>,
}

impl Texts {
    fn push(&mut self, s: &str) -> Range<usize> {
        let start = self.all.len();
        self.all.push_str(s);
        start..self.all.len()
    }
}

impl Request {
    pub fn new(
        request_id: Option<&HeaderValue>,
        method: &'static str,
        route: Option<MatchedPath>,
    ) -> Self {
        let request_id = request_id.and_then(|v| v.to_str().ok()).unwrap_or("");
        // Room for the request id and two of our ids (about 36 bytes each).
        let mut all = String::with_capacity(request_id.len() + 80);
        all.push_str(request_id);
        Self {
            method,
            route,
            texts: RefCell::new(Texts {
                request_id: 0..all.len(),
                all,
                card: None,
                connection: None,
                stream: None,
            }),
        }
    }

    /// Runs `fut` as this request: the lines it logs carry the request's fields.
    pub async fn scope<F: Future>(self, fut: F) -> F::Output {
        REQUEST.scope(Box::new(self), fut).await
    }

    /// The request's fields in order, as (name, value, whether the value is ours: the method
    /// and the route template, with nothing to escape); the ids only once known.
    fn fields(&self, mut each: impl FnMut(&'static str, &str, bool)) {
        let t = self.texts.borrow();
        let text = |r: &Range<usize>| t.all.get(r.clone()).unwrap_or("");
        each("request_id", text(&t.request_id), false);
        each("method", self.method, true);
        each(
            "route",
            self.route.as_ref().map_or("", |r| r.as_str()),
            true,
        );
        for (name, range) in [
            ("card", &t.card),
            ("connection", &t.connection),
            ("stream", &t.stream),
        ] {
            if let Some(r) = range {
                each(name, text(r), false);
            }
        }
    }
}

/// Records ids on the request being served (a no-op outside one).
pub fn record_ids(card: Option<&str>, connection: Option<&str>, stream: Option<&str>) {
    let _ = REQUEST.try_with(|r| {
        let mut t = r.texts.borrow_mut();
        if let Some(v) = card {
            t.card = Some(t.push(v));
        }
        if let Some(v) = connection {
            t.connection = Some(t.push(v));
        }
        if let Some(v) = stream {
            t.stream = Some(t.push(v));
        }
    });
}

/// Appends `,"span":{…,"name":"request"}` for the request being served; false outside one.
pub fn push_json(line: &mut String) -> bool {
    REQUEST
        .try_with(|r| {
            line.push_str(",\"span\":{");
            // The names, the method and the route template are ours (nothing to escape); the
            // request id and the ids may come from a caller.
            r.fields(|name, value, ours| {
                line.push('"');
                line.push_str(name);
                line.push_str("\":");
                if ours {
                    line.push('"');
                    line.push_str(value);
                    line.push('"');
                } else {
                    super::json_log::push_json_str(line, value);
                }
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
            r.fields(|name, value, _| {
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
