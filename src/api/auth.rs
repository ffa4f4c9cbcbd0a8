//! `Authorization: Bearer <key>` on every /v1 route; keys compared in constant time.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use crate::error::Problem;

/// Who is calling: a short, non-reversible id of the API key (scopes idempotency keys).
#[derive(Clone, Debug)]
pub struct Caller {
    pub key_id: String,
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
    // Hash both sides so the comparison takes the same time whatever the lengths.
    let digest = Sha256::digest(presented.as_bytes());
    let mut ok = subtle::Choice::from(0u8);
    for key in &app.api_keys {
        ok |= Sha256::digest(key.expose_secret().as_bytes()).ct_eq(&digest);
    }
    if !bool::from(ok) {
        return Problem::unauthorized("the API key is not valid").into_response();
    }
    let key_id: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    req.extensions_mut().insert(Caller { key_id });
    next.run(req).await
}
