//! A JSON body extractor whose every rejection (size, malformed JSON, wrong shape) is problem+json.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::AppState;
use crate::error::{FieldError, Problem};

pub struct AppJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for AppJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.max_body_bytes;
        let body = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| {
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
                    .detail(format!("the body must be at most {limit} bytes"))
            })?;
        parse(&body).map(AppJson)
    }
}

pub fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, Problem> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        Problem::bad_request(format!("the body is not valid JSON: {e}")).errors(vec![
            FieldError::new(&["body"], format!("not valid JSON: {e}"), "json"),
        ])
    })?;
    from_value(value)
}

/// A JSON value into a typed body; a wrong shape names the field.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, Problem> {
    serde_json::from_value(value).map_err(|e| {
        let msg = e.to_string();
        let field = msg
            .split('`')
            .nth(1)
            .map(str::to_string)
            .unwrap_or_else(|| "body".to_string());
        Problem::invalid(vec![FieldError::new(&[&field], msg, "shape")])
    })
}
