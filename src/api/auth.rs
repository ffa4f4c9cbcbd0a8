//! `Authorization: Bearer <key>` on every /v1 route: keys compared in constant time, scopes
//! checked per route, and a per-key rate limit.

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use crate::error::Problem;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Browse the catalog.
    CatalogRead,
    /// Run cards (and watch and cancel one's own streams).
    CardsInvoke,
    /// Run the cards that return FileVault keys, PINs and bypass codes.
    SecretsRead,
    /// Manage connections; see and cancel any stream.
    Admin,
    /// Ask whether a device is managed (`GET /v1/connections/{id}/device-trust`) and nothing
    /// else: the key to give a sign-in or device-trust product, which must not be able to run
    /// device actions.
    TrustRead,
    /// Read the Prometheus metrics (`GET /metrics`) and nothing else: the key to give a
    /// Prometheus server.
    MetricsRead,
    /// Create, read, replay and delete event subscriptions (`/v1/subscriptions`).
    EventsManage,
}

impl Scope {
    pub const ALL: [Scope; 7] = [
        Scope::CatalogRead,
        Scope::CardsInvoke,
        Scope::SecretsRead,
        Scope::Admin,
        Scope::TrustRead,
        Scope::MetricsRead,
        Scope::EventsManage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::CatalogRead => "catalog:read",
            Scope::CardsInvoke => "cards:invoke",
            Scope::SecretsRead => "secrets:read",
            Scope::Admin => "admin",
            Scope::TrustRead => "trust:read",
            Scope::MetricsRead => "metrics:read",
            Scope::EventsManage => "events:manage",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|sc| sc.as_str() == s)
    }
}

/// A configured API key: its secret (only its digest is compared), its scopes, and its own
/// inbound rate if it has one (else the configured default applies).
#[derive(Clone)]
pub struct ApiKey {
    digest: [u8; 32],
    pub scopes: Vec<Scope>,
    /// Requests per second (sustained; bursts of twice that), from `rate=N` in its entry.
    pub rate_per_second: Option<u32>,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("scopes", &self.scopes)
            .field("rate_per_second", &self.rate_per_second)
            .finish_non_exhaustive()
    }
}

impl ApiKey {
    /// A key with every scope.
    pub fn all(secret: &SecretString) -> Self {
        Self::with_scopes(secret, Scope::ALL.to_vec())
    }

    pub fn with_scopes(secret: &SecretString, scopes: Vec<Scope>) -> Self {
        Self {
            digest: Sha256::digest(secret.expose_secret().as_bytes()).into(),
            scopes,
            rate_per_second: None,
        }
    }

    /// Parses `KEY` (every scope) or `KEY scope scope…` (space-separated), optionally with
    /// `rate=N` (this key's own limit, N requests a second). Never echoes the key.
    pub fn parse_entry(entry: &str) -> Result<Self, String> {
        let mut parts = entry.split_whitespace();
        let secret = parts.next().ok_or("an empty entry")?;
        if secret.len() < 16 {
            return Err("every key must be at least 16 characters".into());
        }
        let mut scopes = Vec::new();
        let mut rate = None;
        for s in parts {
            if let Some(n) = s.strip_prefix("rate=") {
                if rate.is_some() {
                    return Err("rate= given twice".into());
                }
                rate = Some(n.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    format!("rate={n:?} must be a whole number of requests a second, at least 1")
                })?);
                continue;
            }
            scopes.push(Scope::parse(s).ok_or_else(|| {
                format!(
                    "unknown scope {s:?} (scopes: {})",
                    Scope::ALL.map(Scope::as_str).join(", ")
                )
            })?);
        }
        if scopes.is_empty() {
            scopes = Scope::ALL.to_vec();
        }
        let mut key = Self::with_scopes(&SecretString::from(secret.to_string()), scopes);
        key.rate_per_second = rate;
        Ok(key)
    }
}

/// Keys from `KANDJI_CONNECTOR_API_KEYS` (comma-separated entries) or a file (one entry a line, `#` comments).
pub fn parse_api_keys(text: &str, separator: char) -> Result<Vec<ApiKey>, String> {
    text.split(separator)
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| ApiKey::parse_entry(l).map_err(|e| format!("entry {}: {e}", i + 1)))
        .collect()
}

/// Who is calling: a short, non-reversible id of the API key, and what it may do.
#[derive(Clone, Debug)]
pub struct Caller {
    pub key_id: String,
    pub scopes: Vec<Scope>,
}

impl Caller {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// Whether the caller may see a record that the key `owner` created: its own, or any for
    /// an admin.
    pub fn may_see(&self, owner: &str) -> bool {
        owner == self.key_id || self.has(Scope::Admin)
    }

    /// Whose records a listing shows: the caller's own, or everyone's (`None`) for an admin.
    pub fn owner_filter(&self) -> Option<&str> {
        (!self.has(Scope::Admin)).then_some(self.key_id.as_str())
    }

    /// 403 naming the missing scope.
    pub fn require(&self, scope: Scope) -> Result<(), Problem> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(Problem::new(StatusCode::FORBIDDEN, "Missing scope")
                .detail(format!("this API key lacks the {:?} scope", scope.as_str())))
        }
    }
}

/// Per-key inbound rate limit: one governor GCRA limiter per configured key, checked after
/// authentication (the key is only known then), in the order of the configured keys.
pub struct InboundLimit(Vec<DefaultDirectRateLimiter>);

impl InboundLimit {
    /// One limiter per configured key (in the order of `keys`): the key's own `rate=N` (bursts
    /// of 2N), else `per_second` with `burst`.
    pub fn new(per_second: u32, burst: u32, keys: &[ApiKey]) -> Self {
        let quota = |per_second: u32, burst: u32| {
            Quota::per_second(NonZeroU32::new(per_second.max(1)).expect("non-zero"))
                .allow_burst(NonZeroU32::new(burst.max(1)).expect("non-zero"))
        };
        Self(
            keys.iter()
                .map(|k| {
                    let q = match k.rate_per_second {
                        Some(n) => quota(n, n.saturating_mul(2)),
                        None => quota(per_second, burst),
                    };
                    RateLimiter::direct(q)
                })
                .collect(),
        )
    }
}

pub async fn require_api_key(
    State(app): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let presented = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(presented) = presented else {
        return Problem::unauthorized("send `Authorization: Bearer <API key>`").into_response();
    };
    // Compare digests so the comparison takes the same time whatever the lengths.
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let mut found: Option<usize> = None;
    for (i, key) in app.api_keys.iter().enumerate() {
        if bool::from(key.digest.ct_eq(&digest)) {
            found = Some(i);
        }
    }
    let Some(index) = found else {
        return Problem::unauthorized("the API key is not valid").into_response();
    };
    let key = &app.api_keys[index];
    let key_id: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    if let Err(not_until) = app.inbound_limit.0[index].check() {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        return Problem::new(StatusCode::TOO_MANY_REQUESTS, "Too many requests")
            .detail("this API key is sending requests faster than its limit")
            .retry_after(wait.as_secs_f64().ceil().max(1.0) as u64)
            .into_response();
    }
    req.extensions_mut().insert(Caller {
        key_id,
        scopes: key.scopes.clone(),
    });
    next.run(req).await
}

/// A route layer: the caller must hold `scope`.
pub fn scope_layer(
    scope: Scope,
) -> impl Fn(Request, Next) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>
+ Clone {
    any_scope_layer(vec![scope])
}

/// A route layer: the caller must hold one of `scopes`; the 403 names the first.
pub fn any_scope_layer(
    scopes: Vec<Scope>,
) -> impl Fn(Request, Next) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>
+ Clone {
    let scopes: Arc<[Scope]> = scopes.into();
    move |req: Request, next: Next| {
        let scopes = scopes.clone();
        Box::pin(async move {
            let allowed = req
                .extensions()
                .get::<Caller>()
                .is_some_and(|c| scopes.iter().any(|s| c.has(*s)));
            if !allowed {
                let also: Vec<String> = scopes[1..]
                    .iter()
                    .map(|s| format!("{:?}", s.as_str()))
                    .collect();
                let detail = if also.is_empty() {
                    format!("this API key lacks the {:?} scope", scopes[0].as_str())
                } else {
                    format!(
                        "this API key lacks the {:?} scope (or {})",
                        scopes[0].as_str(),
                        also.join(", ")
                    )
                };
                return Problem::new(StatusCode::FORBIDDEN, "Missing scope")
                    .detail(detail)
                    .into_response();
            }
            next.run(req).await
        })
    }
}

pub type SharedKeys = Arc<Vec<ApiKey>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_take_scopes_and_an_optional_rate() {
        let k = ApiKey::parse_entry("0123456789abcdefXYZ").unwrap();
        assert_eq!(k.scopes, Scope::ALL.to_vec());
        assert_eq!(k.rate_per_second, None);
        let k = ApiKey::parse_entry("0123456789abcdefXYZ trust:read rate=5000").unwrap();
        assert_eq!(k.scopes, vec![Scope::TrustRead]);
        assert_eq!(k.rate_per_second, Some(5000));
        // rate= alone keeps every scope.
        let k = ApiKey::parse_entry("0123456789abcdefXYZ rate=20").unwrap();
        assert_eq!(k.scopes, Scope::ALL.to_vec());
        assert_eq!(k.rate_per_second, Some(20));
    }

    #[test]
    fn bad_entries_say_what_is_wrong_without_the_key() {
        for (entry, says) in [
            ("0123456789abcdefXYZ rate=0", "at least 1"),
            ("0123456789abcdefXYZ rate=fast", "whole number"),
            ("0123456789abcdefXYZ rate=-3", "whole number"),
            ("0123456789abcdefXYZ rate=5 rate=6", "twice"),
            ("0123456789abcdefXYZ cards:write", "unknown scope"),
            ("short rate=5", "at least 16"),
        ] {
            let e = ApiKey::parse_entry(entry).unwrap_err();
            assert!(e.contains(says), "{entry}: {e}");
            assert!(
                !e.contains("0123456789abcdefXYZ") && !e.contains("short"),
                "{e}"
            );
        }
    }
}
