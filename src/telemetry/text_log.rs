//! The readable log line (the default format): tracing-subscriber's own full format (time, level,
//! spans, message and fields; no target), with the request being served ([`super::context`])
//! written where its span would be: `… INFO request{request_id="…" method="POST" …}: request status=200`.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// One readable line per event.
pub struct TextLine {
    /// What follows the time, the level and the request: spans (if any), message, fields.
    rest: Format<Full, ()>,
}

impl Default for TextLine {
    fn default() -> Self {
        Self {
            rest: Format::default()
                .without_time()
                .with_level(false)
                .with_target(false),
        }
    }
}

impl<S, N> FormatEvent<S, N> for TextLine
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
        let ansi = writer.has_ansi_escapes();
        let mut head = String::with_capacity(160);
        if ansi {
            head.push_str("\x1b[2m");
        }
        super::json_log::push_timestamp(&mut head);
        if ansi {
            head.push_str("\x1b[0m");
        }
        head.push(' ');
        let level = *event.metadata().level();
        let (name, colour) = match level {
            Level::TRACE => ("TRACE", "35"),
            Level::DEBUG => ("DEBUG", "34"),
            Level::INFO => (" INFO", "32"),
            Level::WARN => (" WARN", "33"),
            Level::ERROR => ("ERROR", "31"),
        };
        if ansi {
            head.push_str("\x1b[");
            head.push_str(colour);
            head.push('m');
            head.push_str(name);
            head.push_str("\x1b[0m");
        } else {
            head.push_str(name);
        }
        head.push(' ');
        if super::context::push_text(&mut head, ansi) {
            head.push(' ');
        }
        writer.write_str(&head)?;
        self.rest.format_event(ctx, writer, event)
    }
}

/// The line of `info!(status, latency_ms, "request")` with the request being served, as
/// [`TextLine`] writes it without colours (`super::request_line`).
pub(super) fn request_line(line: &mut String, status: u16, latency_ms: f64) {
    use fmt::Write as _;
    super::json_log::push_timestamp(line);
    line.push_str("  INFO ");
    if super::context::push_text(line, false) {
        line.push(' ');
    }
    let _ = writeln!(line, "request status={status} latency_ms={latency_ms:?}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::LogBuf;
    use crate::telemetry::context::{Request, record_ids};

    /// Lines in and out of a request, in tracing-subscriber's format and in ours.
    #[tokio::test]
    async fn lines_read_as_tracing_subscribers_own_with_the_request_as_a_span() {
        let buf = LogBuf::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .with_ansi(false)
            .event_format(TextLine::default())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        tracing::info!(n = 3_u64, "outside");
        let route = None;
        Request::new(Some(&"r-1".parse().unwrap()), "POST", route)
            .scope(async {
                tracing::warn!(ok = true, "before");
                record_ids(Some("lock_device"), Some("conn_1"), None);
                tracing::error!(text = "a \"b\"", "after");
            })
            .await;
        let text = buf.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        // The time as tracing-subscriber writes it: 2026-11-30T02:15:25.857978Z
        for l in &lines {
            let (time, _) = l.split_once(' ').unwrap();
            assert_eq!(time.len(), 27, "{l}");
            assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{l}");
        }
        let rest: Vec<&str> = lines.iter().map(|l| &l[28..]).collect();
        assert_eq!(
            rest,
            [
                " INFO outside n=3",
                " WARN request{request_id=\"r-1\" method=\"POST\" route=\"\"}: before ok=true",
                "ERROR request{request_id=\"r-1\" method=\"POST\" route=\"\" card=\"lock_device\" connection=\"conn_1\"}: after text=\"a \\\"b\\\"\"",
            ]
        );
    }
}
