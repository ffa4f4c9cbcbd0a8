//! Running a card for a caller: the one invocation path behind both surfaces, the HTTP API
//! (`POST /v1/cards/{id}/invoke`, `api::cards`) and the MCP tools (`/mcp`, [`crate::mcp`]).
//!
//! Everything that is not HTTP lives here, so that both surfaces apply the same rules: the
//! scopes a card needs, the connection lookup, validation and the request plan (the engine),
//! the connection's Kandji budget and retries (the Kandji client), stream start, idempotency
//! keys (one namespace per API key, whichever surface used the key), and what is logged and
//! counted. A surface only turns its request into an invocation body and the [`Answer`] into
//! its own reply.

use axum::http::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::api::auth::{Caller, Scope};
use crate::api::{App, InvokeBody, StreamStarted};
use crate::catalog::{Action, Card, ResultSetKind};
use crate::engine;
use crate::error::{FieldError, Problem, UnshownFailure};
use crate::kandji::{Tenant, TenantError};
use crate::store::IdempotencyClaim;
use crate::streams::StreamRequest;
use crate::telemetry;

/// Where an invocation came from (for the log and the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Http,
    Mcp,
}

impl Surface {
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Http => "http",
            Surface::Mcp => "mcp",
        }
    }
}

/// A key that makes an invocation safe to retry, and where the caller gave it (for the error
/// that names it).
pub struct IdempotencyKey<'a> {
    pub key: &'a str,
    pub loc: &'a [&'a str],
}

/// What an invocation answered.
pub struct Answer {
    /// 200 with `{"outputs"}`, 202 with `{"stream_id", "status_url"}` (a started stream), or
    /// the problem that refused or failed it.
    pub result: Result<(StatusCode, Value), Problem>,
    /// The first answer to this idempotency key, given again without running the card.
    pub replayed: bool,
    /// The card returns secrets (the answer must not be cached).
    pub secret: bool,
    /// A failure the answer does not show (logged by the surface's log line).
    pub unshown: Option<UnshownFailure>,
}

impl Answer {
    fn refused(p: Problem) -> Self {
        Self {
            result: Err(p),
            replayed: false,
            secret: false,
            unshown: None,
        }
    }

    /// Kandji's status in the outputs (`outputs.status_code`), when Kandji answered.
    pub fn kandji_status(&self) -> Option<u16> {
        let (_, body) = self.result.as_ref().ok()?;
        body.pointer("/outputs/status_code")
            .and_then(Value::as_u64)
            .map(|s| u16::try_from(s).unwrap_or(u16::MAX))
    }

    /// The HTTP status this answer has (a problem's, or 200/202).
    pub fn status(&self) -> StatusCode {
        match &self.result {
            Ok((s, _)) => *s,
            Err(p) => p.status,
        }
    }
}

/// Whether this caller may run this card: `cards:invoke`, plus `secrets:read` for a card that
/// returns secrets. A `trust:read` key may run only the device-trust question (a card every
/// request of which the `device_trust` resolver answers), which it may already ask at
/// `GET /v1/connections/{id}/device-trust`.
pub fn may_invoke(caller: &Caller, card: &Card) -> Result<(), Problem> {
    let trust_question = caller.has(Scope::TrustRead) && is_trust_question(card);
    if !trust_question {
        caller.require(Scope::CardsInvoke)?;
    }
    if card.returns_secrets {
        caller.require(Scope::SecretsRead)?;
    }
    Ok(())
}

/// The card only asks the device inventory (`device_trust` resolver), nothing else.
pub fn is_trust_question(card: &Card) -> bool {
    !card.plan.variants.is_empty()
        && card.plan.variants.iter().all(
            |v| matches!(&v.action, Action::Resolve { resolver, .. } if resolver == "device_trust"),
        )
}

/// Runs card `id` for `caller` with `raw` (an [`InvokeBody`] as JSON), under an idempotency key
/// if one was given; counts it for `surface`.
pub async fn invoke(
    app: &App,
    caller: &Caller,
    id: &str,
    raw: Value,
    key: Option<IdempotencyKey<'_>>,
    surface: Surface,
) -> Answer {
    if let Some(card) = app.catalog.get(id) {
        // The request's log lines name the card and connection (ids, never secrets).
        telemetry::record_ids(
            Some(&card.def.id),
            raw.get("connection").and_then(Value::as_str),
            None,
        );
    }
    let answer = invoke_keyed(app, caller, id, raw, key).await;
    if let Some(card) = app.catalog.get(id) {
        count(&card.def.id, &answer, surface);
    }
    answer
}

/// The metrics hook: one invocation of a catalog card (never an id a caller made up), with
/// its HTTP status, Kandji's status and its surface.
fn count(card: &str, answer: &Answer, surface: Surface) {
    let (status, kandji) = (answer.status().as_u16(), answer.kandji_status());
    telemetry::card_invocation(card, telemetry::Outcome::of(status, kandji), surface);
    tracing::debug!(
        card,
        status,
        kandji_status = kandji,
        surface = surface.as_str(),
        replayed = answer.replayed,
        "card invoked"
    );
}

async fn invoke_keyed(
    app: &App,
    caller: &Caller,
    id: &str,
    raw: Value,
    key: Option<IdempotencyKey<'_>>,
) -> Answer {
    let Some(card) = app.catalog.get(id) else {
        // A key that may not run cards learns nothing about the catalog.
        return Answer::refused(
            caller
                .require(Scope::CardsInvoke)
                .err()
                .unwrap_or_else(|| no_card(id)),
        );
    };
    if let Err(p) = may_invoke(caller, card) {
        return Answer::refused(p);
    }
    let secret = card.returns_secrets;
    let Some(IdempotencyKey { key, loc }) = key else {
        return Answer {
            result: run(app, card, caller, raw).await,
            replayed: false,
            secret,
            unshown: None,
        };
    };
    // The rule of an HTTP header value (visible ASCII, space and tab), whichever surface.
    let valid = !key.is_empty()
        && key.len() <= 255
        && key
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
    if !valid {
        return Answer::refused(Problem::invalid(vec![FieldError::new(
            loc,
            "must be 1 to 255 visible ASCII characters",
            "idempotency_key",
        )]));
    }
    // serde_json's maps are ordered, so the same body always hashes the same.
    let hash = hex(&Sha256::digest(format!("{id}\n{raw}").as_bytes()));
    let not_before = chrono::Utc::now()
        - chrono::Duration::from_std(crate::retention::IDEMPOTENCY_WINDOW).expect("24 hours");
    let claim = match app
        .store
        .idempotency_claim(&caller.key_id, key, &hash, not_before)
        .await
    {
        Ok(c) => c,
        Err(e) => return Answer::refused(e.into()),
    };
    match claim {
        IdempotencyClaim::Mismatch => Answer::refused(Problem::invalid(vec![FieldError::new(
            loc,
            "this key was already used with a different request",
            "idempotency_mismatch",
        )])),
        IdempotencyClaim::InFlight => Answer::refused(
            Problem::new(StatusCode::CONFLICT, "Request in progress")
                .detail("a request with this Idempotency-Key is still running; retry shortly"),
        ),
        IdempotencyClaim::Done { status, response } => Answer {
            result: Ok((
                StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                serde_json::from_str(&response).unwrap_or(Value::Null),
            )),
            replayed: true,
            secret,
            unshown: None,
        },
        IdempotencyClaim::Claimed => {
            let result = run(app, card, caller, raw).await;
            // Only an answer that reached Kandji is kept (a repeat must not act twice); any
            // other leaves the key free for a retry.
            let saved = match &result {
                Ok((status, body)) => Some((status.as_u16(), body.to_string())),
                Err(p)
                    if matches!(
                        p.status,
                        StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
                    ) =>
                {
                    Some((p.status.as_u16(), p.body_json().to_string()))
                }
                Err(_) => None,
            };
            let stored = match saved {
                Some((status, body)) => app
                    .store
                    .idempotency_complete(&caller.key_id, key, status, &body)
                    .await
                    .map_err(|e| ("the idempotency record could not be saved", e)),
                None => app
                    .store
                    .idempotency_release(&caller.key_id, key)
                    .await
                    .map_err(|e| ("the idempotency key could not be released", e)),
            };
            Answer {
                result,
                replayed: false,
                secret,
                unshown: stored.err().map(|(what, e)| UnshownFailure {
                    what,
                    cause: e.to_string(),
                }),
            }
        }
    }
}

fn no_card(id: &str) -> Problem {
    Problem::not_found(format!("no card {id:?}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A valid invocation of a card, ready to run: every check of the body done, nothing sent.
pub struct Checked<'c> {
    pub prepared: engine::Prepared<'c>,
    pub tenant: Tenant,
    /// The helper flow and record limit of a stream result set.
    pub stream: Option<StreamRequest>,
}

/// Every check of an invocation's body (an [`InvokeBody`] as JSON), with all field errors at
/// once: the connection, a stream's helper flow, the card's inputs and options. What invoke
/// runs and what preview shows.
pub async fn check<'c>(app: &App, card: &'c Card, raw: Value) -> Result<Checked<'c>, Problem> {
    let body: InvokeBody = crate::api::from_value(raw)?;
    let mut errors = Vec::new();
    let tenant = match app.tenants.get(&body.connection).await {
        Ok(t) => Some(t),
        Err(TenantError::Unknown) => {
            errors.push(FieldError::new(
                &["connection"],
                "no such connection",
                "unknown_connection",
            ));
            None
        }
        Err(TenantError::Store(e)) => return Err(e.into()),
    };
    // A stream result set's helper_flow and record_limit are the connector's options, not the
    // card's: take them out (checking the callback URL) before the card's options are validated.
    let mut options = body.options;
    let is_stream = options
        .get("result_set")
        .and_then(Value::as_str)
        .and_then(|rs| card.def.result_set(rs))
        .is_some_and(|rs| rs.kind == ResultSetKind::Stream);
    let stream = StreamRequest::take(&mut options, is_stream, &app.streams.config().allow)
        .await
        .map_err(|e| errors.extend(e))
        .ok()
        .flatten();
    let prepared = engine::prepare(card, &body.inputs, &options)
        .map_err(|e| errors.extend(e))
        .ok();
    match (prepared, tenant, errors.is_empty()) {
        (Some(prepared), Some(tenant), true) => Ok(Checked {
            prepared,
            tenant,
            stream,
        }),
        _ => Err(errors.into()),
    }
}

/// Runs a card: 200 with its outputs, or, for a stream result set, 202 with the started stream.
async fn run(
    app: &App,
    card: &Card,
    caller: &Caller,
    raw: Value,
) -> Result<(StatusCode, Value), Problem> {
    let Checked {
        prepared,
        tenant,
        stream,
    } = check(app, card, raw).await?;
    if let (Some(request), Some(rs)) = (stream, &prepared.result_set) {
        let started = app
            .streams
            .start(
                &caller.key_id,
                &tenant.connection_id,
                &card.def.id,
                &rs.id,
                Value::Object(prepared.inputs.clone()),
                Value::Object(prepared.options.clone()),
                request,
            )
            .await?;
        telemetry::record_ids(None, None, Some(&started.id));
        let body = StreamStarted {
            status_url: crate::api::status_url(&started.id),
            stream_id: started.id,
        };
        return Ok((StatusCode::ACCEPTED, json!(body)));
    }
    let outputs = engine::run_with(&app.kandji, &tenant, &prepared, &app.resolvers).await?;
    // The shape of `api::cards::InvokeResponse`, built by moving the outputs in (`json!` of the struct
    // would serialise every output into a copy).
    let mut body = serde_json::Map::with_capacity(1);
    body.insert("outputs".to_string(), Value::Object(outputs));
    Ok((StatusCode::OK, Value::Object(body)))
}
