//! One POST of one record to a helper flow, and what its answer means: delivered, worth
//! retrying (429, 5xx, 408, timeouts, connection errors), or refused for good (other 4xx,
//! any 3xx — redirects are never followed — and hosts that resolve only to refused addresses).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::redirect;
use url::Url;

use super::callback::{CallbackPolicy, GuardedResolver, RefusedAddress};
use super::signing::WebhookSecret;

/// How much of a callback's answer is kept with a failure.
pub const MAX_KEPT_BODY: usize = 1024;
/// How much of a 2xx answer is read (so the connection can be reused); more is dropped.
const MAX_DRAINED_BODY: usize = 64 * 1024;

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    Delivered,
    /// Transient: try again later (not before `retry_after` when the callback said so).
    Retry {
        status: Option<u16>,
        retry_after: Option<Duration>,
        error: String,
        body: Option<String>,
    },
    /// Permanent: the record is counted as failed.
    Refused {
        status: Option<u16>,
        error: String,
        body: Option<String>,
    },
}

/// The HTTP client for callbacks: no redirects, no proxy, every connection through
/// [`GuardedResolver`], bounded connect and total time.
#[derive(Clone)]
pub struct CallbackClient {
    http: reqwest::Client,
}

impl CallbackClient {
    pub fn new(
        policy: Arc<CallbackPolicy>,
        timeout: Duration,
        idle_per_host: usize,
    ) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver::new(policy)))
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(idle_per_host)
            .tcp_nodelay(true)
            .user_agent(concat!("kandji-connector/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http })
    }

    /// POSTs `body` with Standard Webhooks headers (signed when there is a secret).
    pub async fn post(
        &self,
        url: &Url,
        webhook_id: &str,
        body: Bytes,
        secret: Option<&WebhookSecret>,
    ) -> Attempt {
        let timestamp = chrono::Utc::now().timestamp();
        let mut req = self
            .http
            .post(url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", webhook_id)
            .header("webhook-timestamp", timestamp.to_string());
        if let Some(secret) = secret {
            let mut sig = HeaderValue::from_str(&secret.sign(webhook_id, timestamp, &body))
                .expect("base64 is a valid header value");
            sig.set_sensitive(true);
            req = req.header("webhook-signature", sig);
        }
        let mut resp = match req.body(body).send().await {
            Ok(r) => r,
            Err(e) => return classify_error(e),
        };
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            let mut read = 0;
            while let Ok(Some(chunk)) = resp.chunk().await {
                read += chunk.len();
                if read > MAX_DRAINED_BODY {
                    break;
                }
            }
            return Attempt::Delivered;
        }
        let retry_after = resp.headers().get(RETRY_AFTER).and_then(parse_retry_after);
        let body = read_start(&mut resp).await;
        let reason = resp
            .status()
            .canonical_reason()
            .map(|r| format!(" {r}"))
            .unwrap_or_default();
        let error = format!("the helper flow answered {status}{reason}");
        if status == 429 || status == 408 || status >= 500 {
            Attempt::Retry {
                status: Some(status),
                retry_after,
                error,
                body,
            }
        } else {
            let error = if (300..400).contains(&status) {
                format!("{error} (redirects are not followed)")
            } else {
                error
            };
            Attempt::Refused {
                status: Some(status),
                error,
                body,
            }
        }
    }
}

/// The first [`MAX_KEPT_BODY`] bytes of an answer, as text.
async fn read_start(resp: &mut reqwest::Response) -> Option<String> {
    let mut buf = Vec::new();
    while buf.len() < MAX_KEPT_BODY {
        match resp.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            _ => break,
        }
    }
    if buf.is_empty() {
        return None;
    }
    let truncated = buf.len() > MAX_KEPT_BODY;
    buf.truncate(MAX_KEPT_BODY);
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    if truncated {
        text.push('…');
    }
    Some(text)
}

fn classify_error(e: reqwest::Error) -> Attempt {
    let e = e.without_url();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if let Some(refused) = s.downcast_ref::<RefusedAddress>() {
            return Attempt::Refused {
                status: None,
                error: refused.to_string(),
                body: None,
            };
        }
        source = s.source();
    }
    if e.is_builder() {
        return Attempt::Refused {
            status: None,
            error: describe(&e),
            body: None,
        };
    }
    let error = if e.is_timeout() {
        "the helper flow did not answer in time".to_string()
    } else {
        describe(&e)
    };
    Attempt::Retry {
        status: None,
        retry_after: None,
        error,
        body: None,
    }
}

/// An error and its causes on one line (reqwest's messages never include headers; the URL,
/// which may carry a token, was removed).
fn describe(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}

/// `Retry-After` as delta-seconds or an HTTP date.
pub fn parse_retry_after(v: &HeaderValue) -> Option<Duration> {
    let s = v.to_str().ok()?.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(s).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// When to try again: the schedule (with jitter), never sooner than the callback's
/// `Retry-After` (capped), and not at all once the schedule is used up.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub schedule: Vec<Duration>,
    pub max_retry_after: Duration,
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based), or `None` when no retry is left.
    pub fn delay(&self, retry: usize, retry_after: Option<Duration>) -> Option<Duration> {
        let base = *self.schedule.get(retry)?;
        // "Equal jitter": half the step fixed, half random, so retries of many records spread out.
        let jittered = base.mul_f64(rand::random_range(0.5..=1.0));
        Some(jittered.max(retry_after.unwrap_or_default().min(self.max_retry_after)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(
            parse_retry_after(&HeaderValue::from_static("3")),
            Some(Duration::from_secs(3))
        );
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let d = parse_retry_after(&HeaderValue::from_str(&later).unwrap()).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after(&HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after(&HeaderValue::from_static("soon")), None);
    }

    #[test]
    fn schedule_with_jitter_and_retry_after() {
        let p = RetryPolicy {
            schedule: vec![Duration::from_millis(100), Duration::from_millis(400)],
            max_retry_after: Duration::from_secs(2),
        };
        for _ in 0..50 {
            let d = p.delay(0, None).unwrap();
            assert!(
                d >= Duration::from_millis(50) && d <= Duration::from_millis(100),
                "{d:?}"
            );
            let d = p.delay(1, None).unwrap();
            assert!(
                d >= Duration::from_millis(200) && d <= Duration::from_millis(400),
                "{d:?}"
            );
        }
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(1))),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(3600))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(p.delay(2, None), None);
    }

    /// The connect-time check: a URL that skipped the up-front check still cannot reach a
    /// refused address, because the resolver drops it; nothing connects.
    #[tokio::test]
    async fn resolver_refusal_is_permanent_and_nothing_connects() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while listener.accept().await.is_ok() {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        let client = CallbackClient::new(
            Arc::new(CallbackPolicy::default()),
            Duration::from_secs(2),
            4,
        )
        .unwrap();
        let url = Url::parse(&format!("http://localhost:{port}/hook")).unwrap();
        let got = client
            .post(&url, "msg_1", Bytes::from_static(b"{}"), None)
            .await;
        match got {
            Attempt::Refused {
                status: None,
                error,
                ..
            } => assert!(error.contains("refused addresses"), "{error}"),
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
}
