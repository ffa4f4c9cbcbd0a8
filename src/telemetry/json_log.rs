//! The JSON log line (`KANDJI_CONNECTOR_LOG_FORMAT=json`), in the shape of tracing-subscriber's
//! own JSON format with `flatten_event(true)`, `with_current_span(true)`, `with_span_list(false)`
//! and no target: `{"timestamp", "level", the event's fields, "span": {its fields, "name"}}`.
//!
//! Written here because tracing-subscriber's format keeps a span's fields as JSON text and parses
//! and re-writes that text on every `Span::record` and again on every event: about 70,000
//! instructions a request (bench/invoke.sh, PROFILE=callgrind), a fifth of an invocation. Here a
//! span keeps its fields as the inside of a JSON object (`"k":v,"k2":v2`), a record appends to it
//! and an event copies it as it is.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// A span's and an event's fields, as `"name":value` pairs joined by commas.
pub struct JsonFields;

/// One JSON object per line.
pub struct JsonLine;

/// Writes fields as `"name":value` pairs, each after a comma unless it is the first.
struct Pairs<'a> {
    out: &'a mut String,
    first: bool,
}

impl Pairs<'_> {
    fn key(&mut self, field: &Field) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        push_json_str(self.out, field.name());
        self.out.push(':');
    }
}

impl Visit for Pairs<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_json_str(self.out, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.out.push_str(if value { "true" } else { "false" });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        if value < 0 {
            self.out.push('-');
        }
        push_u64(self.out, value.unsigned_abs());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        push_u64(self.out, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        // NaN and the infinities are null, as serde_json writes them; a finite number in its
        // shortest form that reads back the same (`0.088`, `3`), written in place.
        if value.is_finite() {
            push_f64(self.out, value);
        } else {
            self.out.push_str("null");
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.key(field);
        push_json_str(self.out, &value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        self.out.push('"');
        let _ = write!(Escaping(self.out), "{value:?}");
        self.out.push('"');
    }
}

/// The bytes a JSON string cannot hold as they are: quote, backslash and control characters.
static ESCAPED: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Whether one of the eight bytes of `word` is a control character, a quote or a backslash
/// (never false when one is; the bytes are then looked at one by one).
fn may_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte below 0x20, or a zero byte after xor with the quote or the backslash.
    let below = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    let quote = word ^ (ONES * b'"' as u64);
    let backslash = word ^ (ONES * b'\\' as u64);
    let zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    below | zero(quote) | zero(backslash) != 0
}

/// Appends `s` as a JSON string, escaped as serde_json escapes: quote, backslash and control
/// characters. The bytes are looked up in a table and copied in runs (most values, ids and route
/// templates, have nothing to escape): a byte-by-byte `match` cost a fifth of a request's log line.
pub(super) fn push_json_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    push_escaped(out, s);
    out.push('"');
}

/// Appends `s` escaped for the inside of a JSON string.
fn push_escaped(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    // Most values (ids, route templates, messages) have nothing to escape: eight bytes at a
    // time are checked for one that needs it, and copied whole when none does.
    let mut clean = 0;
    while let Some(chunk) = bytes.get(clean..clean + 8) {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        if may_escape(word) {
            break;
        }
        clean += 8;
    }
    if !bytes[clean..].iter().any(|&b| ESCAPED[b as usize]) {
        out.push_str(s);
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate().skip(clean) {
        if !ESCAPED[b as usize] {
            continue;
        }
        out.push_str(&s[start..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            _ => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

/// A `fmt::Write` that escapes what is written to it into a JSON string's inside: a `Debug`
/// value (the message of `info!("…")` is one) is written in place, not formatted to a `String`
/// first.
struct Escaping<'a>(&'a mut String);

impl Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        push_escaped(self.0, s);
        Ok(())
    }
}

/// Appends `value` in decimal (what `write!` does, without going through a formatter).
fn push_u64(out: &mut String, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    digits[at..].iter().for_each(|&d| out.push(char::from(d)));
}

/// Appends a finite `f64` as a JSON number that reads back as the same value: a value with at
/// most three decimals (a latency in milliseconds, rounded to microseconds) by integer
/// arithmetic, any other in Rust's shortest form.
fn push_f64(out: &mut String, value: f64) {
    let thousandths = (value * 1000.0).round();
    // `thousandths / 1000.0` is correctly rounded, so when it gives back `value` the decimal
    // written below is one whose nearest double is `value`.
    if thousandths.abs() < 1e15 && thousandths / 1000.0 == value {
        let n = thousandths as i64;
        if n < 0 {
            out.push('-');
        }
        let n = n.unsigned_abs();
        push_u64(out, n / 1000);
        let frac = n % 1000;
        if frac != 0 {
            let digits = [
                b'0' + (frac / 100) as u8,
                b'0' + (frac / 10 % 10) as u8,
                b'0' + (frac % 10) as u8,
            ];
            let len = if digits[2] != b'0' {
                3
            } else if digits[1] != b'0' {
                2
            } else {
                1
            };
            out.push('.');
            digits[..len].iter().for_each(|&d| out.push(char::from(d)));
        }
    } else {
        let _ = write!(out, "{value}");
    }
}

/// The time of a line, as tracing-subscriber's `SystemTime` writes it (RFC 3339, UTC,
/// microseconds: `2026-11-29T23:53:37.123456Z`). The part up to the seconds is formatted once a
/// second per thread and kept; each line formats only its microseconds.
pub(super) fn push_timestamp(out: &mut String) {
    use std::cell::RefCell;
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    SECOND.with_borrow_mut(|(at, prefix)| {
        if *at != secs {
            prefix.clear();
            let t =
                chrono::DateTime::<chrono::Utc>::from_timestamp(secs as i64, 0).unwrap_or_default();
            let _ = write!(prefix, "{}", t.format("%Y-%m-%dT%H:%M:%S."));
            *at = secs;
        }
        out.push_str(prefix);
    });
    let micros = now.subsec_micros();
    let mut digits = [b'0'; 6];
    let mut n = micros;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    digits.iter().for_each(|&d| out.push(char::from(d)));
    out.push('Z');
}

impl<'w> FormatFields<'w> for JsonFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: Writer<'w>,
        fields: R,
    ) -> fmt::Result {
        let mut out = String::new();
        fields.record(&mut Pairs {
            out: &mut out,
            first: true,
        });
        writer.write_str(&out)
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let first = current.fields.is_empty();
        fields.record(&mut Pairs {
            out: &mut current.fields,
            first,
        });
        Ok(())
    }
}

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        with_kept_line(|line| {
            self.write_line(ctx, line, event);
            writer.write_str(line)
        })
    }
}

/// Calls `f` with an empty line buffer kept by the thread (dropped when a line made it larger
/// than 64 KiB); a line built while another is (by a value's `Debug`) gets a buffer of its own.
pub(super) fn with_kept_line<R>(f: impl FnOnce(&mut String) -> R) -> R {
    use std::cell::RefCell;
    thread_local! {
        static LINE: RefCell<String> = const { RefCell::new(String::new()) };
    }
    LINE.with(|kept| match kept.try_borrow_mut() {
        Ok(mut line) => {
            line.clear();
            let r = f(&mut line);
            if line.capacity() > 64 * 1024 {
                *line = String::new();
            }
            r
        }
        Err(_) => f(&mut String::new()),
    })
}

impl JsonLine {
    fn write_line<S, N>(&self, ctx: &FmtContext<'_, S, N>, line: &mut String, event: &Event<'_>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
    {
        line.push_str("{\"timestamp\":\"");
        push_timestamp(line);
        line.push_str("\",\"level\":\"");
        line.push_str(event.metadata().level().as_str());
        line.push('"');
        event.record(&mut Pairs {
            out: line,
            first: false,
        });
        // The request being served, else a span (none is made at present, but a library's
        // would show).
        let span = if super::context::push_json(line) {
            None
        } else {
            event
                .parent()
                .and_then(|id| ctx.span(id))
                .or_else(|| ctx.lookup_current())
        };
        if let Some(span) = span {
            line.push_str(",\"span\":{");
            let ext = span.extensions();
            if let Some(f) = ext.get::<FormattedFields<N>>()
                && !f.fields.is_empty()
            {
                line.push_str(&f.fields);
                line.push(',');
            }
            line.push_str("\"name\":");
            push_json_str(line, span.name());
            line.push('}');
        }
        line.push_str("}\n");
    }
}

/// The line of `info!(status, latency_ms, "request")` with the request being served, as
/// [`JsonLine`] writes it (`super::request_line`).
pub(super) fn request_line(line: &mut String, status: u16, latency_ms: f64) {
    line.push_str("{\"timestamp\":\"");
    push_timestamp(line);
    line.push_str("\",\"level\":\"INFO\",\"message\":\"request\",\"status\":");
    push_u64(line, u64::from(status));
    line.push_str(",\"latency_ms\":");
    if latency_ms.is_finite() {
        push_f64(line, latency_ms);
    } else {
        line.push_str("null");
    }
    super::context::push_json(line);
    line.push_str("}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::LogBuf;

    /// The lines of a few events, in and out of a span whose fields are recorded later.
    /// A subscriber writing our JSON lines into `buf`.
    fn json_into(buf: &LogBuf) -> impl Subscriber + Send + Sync + use<> {
        tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .fmt_fields(JsonFields)
            .event_format(JsonLine)
            .finish()
    }

    /// Each line written to `buf`, parsed.
    fn parsed(buf: &LogBuf) -> Vec<serde_json::Value> {
        buf.text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    fn lines() -> Vec<serde_json::Value> {
        let buf = LogBuf::default();
        tracing::subscriber::with_default(json_into(&buf), || {
            tracing::info!(n = 3_u64, "outside \"quoted\"");
            let span = tracing::info_span!(
                "request",
                request_id = "r-1",
                card = tracing::field::Empty,
                connection = tracing::field::Empty
            );
            span.in_scope(|| {
                tracing::warn!(ok = true, ratio = 0.5, neg = -2_i64, "before");
                span.record("card", "lock_device");
                span.record("connection", "c\n1\u{1}\\");
                tracing::error!(debug = ?Some(1), "after");
            });
        });
        parsed(&buf)
    }

    #[test]
    fn the_time_is_rfc3339_utc_with_microseconds_as_tracing_subscriber_writes_it() {
        let mut ours = String::new();
        push_timestamp(&mut ours);
        let mut theirs = String::new();
        tracing_subscriber::fmt::time::FormatTime::format_time(
            &tracing_subscriber::fmt::time::SystemTime,
            &mut Writer::new(&mut theirs),
        )
        .unwrap();
        assert_eq!(ours.len(), "2026-11-29T23:53:37.123456Z".len(), "{ours}");
        assert_eq!(ours.len(), theirs.len(), "{ours} {theirs}");
        let t = chrono::DateTime::parse_from_rfc3339(&ours).unwrap();
        let u = chrono::DateTime::parse_from_rfc3339(&theirs).unwrap();
        assert!((u - t).num_milliseconds().abs() < 1000, "{ours} {theirs}");
        // The same second again: the kept part, new microseconds.
        let mut again = String::new();
        push_timestamp(&mut again);
        assert!(
            again.ends_with('Z') && again.as_bytes()[19] == b'.',
            "{again}"
        );
    }

    #[test]
    fn each_line_is_one_object_with_the_events_and_the_spans_fields() {
        let l = lines();
        assert_eq!(l.len(), 3);
        assert_eq!(l[0]["level"], "INFO");
        assert_eq!(l[0]["message"], "outside \"quoted\"");
        assert_eq!(l[0]["n"], 3);
        assert!(l[0].get("span").is_none(), "{}", l[0]);
        let ts = l[0]["timestamp"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");

        assert_eq!(l[1]["level"], "WARN");
        assert_eq!(l[1]["ok"], true);
        assert_eq!(l[1]["ratio"], 0.5);
        assert_eq!(l[1]["neg"], -2);
        assert_eq!(
            l[1]["span"],
            serde_json::json!({"request_id": "r-1", "name": "request"})
        );

        assert_eq!(l[2]["level"], "ERROR");
        assert_eq!(l[2]["debug"], "Some(1)");
        assert_eq!(
            l[2]["span"],
            serde_json::json!({"request_id": "r-1", "card": "lock_device",
                "connection": "c\n1\u{1}\\", "name": "request"})
        );
    }

    #[tokio::test]
    async fn lines_of_a_request_carry_its_fields_under_span() {
        use crate::telemetry::context::{Request, record_ids};
        let buf = LogBuf::default();
        let _guard = tracing::subscriber::set_default(json_into(&buf));
        Request::new(Some(&"r-\"9".parse().unwrap()), "GET", None)
            .scope(async {
                tracing::info!("before");
                record_ids(None, None, Some("str_1"));
                tracing::info!("after");
            })
            .await;
        tracing::info!("outside");
        let l = parsed(&buf);
        assert_eq!(
            l[0]["span"],
            serde_json::json!({"request_id": "r-\"9", "method": "GET", "route": "", "name": "request"})
        );
        assert_eq!(
            l[1]["span"],
            serde_json::json!({"request_id": "r-\"9", "method": "GET", "route": "",
                "stream": "str_1", "name": "request"})
        );
        assert!(l[2].get("span").is_none(), "{}", l[2]);
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut samples: Vec<String> = [
            "",
            "plain",
            "exactly8",
            "sixteen bytes ok",
            "a\"b",
            "12345678\"",
            "1234567\\x",
            "tab\there",
            "\u{1}\u{1f}\u{7f}",
            "é and 日本 and 🙂 in a long enough string",
            "/v1/cards/{id}/invoke",
            "0123456789abcdef0123456789abcdef\n",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Each special byte at each position of a 17-byte string.
        for special in ['"', '\\', '\n', '\u{0}', '\u{1f}'] {
            for at in 0..17 {
                let mut s: String = "x".repeat(17);
                s.replace_range(at..at + 1, &special.to_string());
                samples.push(s);
            }
        }
        for s in samples {
            let mut ours = String::new();
            push_json_str(&mut ours, &s);
            assert_eq!(ours, serde_json::to_string(&s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn numbers_read_back_as_the_same_value() {
        for v in [
            0.0,
            -0.0,
            1.0,
            3.0,
            0.088,
            3.127,
            1.5,
            -2.25,
            1234.567,
            0.001,
            0.1,
            0.3,
            1e-7,
            123456789.123,
            1e20,
            1.0000001,
            2.5e-3,
            f64::MAX,
            f64::MIN_POSITIVE,
            999999999999.999,
        ] {
            let mut out = String::new();
            push_f64(&mut out, v);
            let back: f64 = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out}: {e}"));
            assert_eq!(back, v, "{v} written as {out}");
        }
        let mut out = String::new();
        push_f64(&mut out, 0.088);
        out.push(' ');
        push_f64(&mut out, 3.0);
        out.push(' ');
        push_f64(&mut out, 12.5);
        assert_eq!(out, "0.088 3 12.5");
    }

    #[test]
    fn a_debug_value_is_escaped_as_a_string() {
        let mut out = String::new();
        let mut pairs = Pairs {
            out: &mut out,
            first: true,
        };
        let set = crate::telemetry::test_meta::fields(&["message"]);
        let field = set.field("message").unwrap();
        pairs.record_debug(&field, &format_args!("a \"quoted\" {}\n", "line"));
        assert_eq!(out, r#""message":"a \"quoted\" line\n""#);
    }

    #[test]
    fn integers_as_write_writes_them() {
        for v in [0_u64, 7, 10, 200, 404, 65_535, 1_000_000, u64::MAX] {
            let mut out = String::new();
            push_u64(&mut out, v);
            assert_eq!(out, v.to_string());
        }
        let mut out = String::new();
        Pairs {
            out: &mut out,
            first: true,
        }
        .record_i64(&field("n"), i64::MIN);
        assert_eq!(out, format!("\"n\":{}", i64::MIN));
    }

    fn field(name: &'static str) -> Field {
        let names: &'static [&'static str] = Box::leak(Box::new([name]));
        crate::telemetry::test_meta::fields(names)
            .field(name)
            .unwrap()
    }
}
