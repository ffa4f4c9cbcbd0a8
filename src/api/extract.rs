//! A JSON body extractor whose every rejection (size, malformed JSON, wrong shape) is problem+json,
//! and the check of a listing's `?limit=`.

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
    check_depth(&value, "body")?;
    from_value(value)
}

/// 422 when `value` is nested deeper than [`MAX_DEPTH`], naming where (under `root`).
pub fn check_depth(value: &serde_json::Value, root: &str) -> Result<(), Problem> {
    match too_deep(value, 0, &mut vec![root.to_string()]) {
        Some(path) => Err(Problem::invalid(vec![FieldError {
            loc: path,
            msg: format!("JSON is nested deeper than {MAX_DEPTH} levels"),
            kind: "too_deep".into(),
        }])),
        None => Ok(()),
    }
}

/// Deepest nesting accepted in a request body (serde_json itself stops at 128).
pub const MAX_DEPTH: usize = 32;

fn too_deep(v: &serde_json::Value, depth: usize, path: &mut Vec<String>) -> Option<Vec<String>> {
    if depth > MAX_DEPTH {
        return Some(path.clone());
    }
    let children: Box<dyn Iterator<Item = (String, &serde_json::Value)>> = match v {
        serde_json::Value::Object(m) => Box::new(m.iter().map(|(k, v)| (k.clone(), v))),
        serde_json::Value::Array(a) => {
            Box::new(a.iter().enumerate().map(|(i, v)| (i.to_string(), v)))
        }
        _ => return None,
    };
    for (k, child) in children {
        path.push(k);
        if let Some(p) = too_deep(child, depth + 1, path) {
            return Some(p);
        }
        path.pop();
    }
    None
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

/// Most records a listing answers at once (`?limit=`).
pub const MAX_LIMIT: u32 = 500;

/// A listing's `?limit=`: `default` when absent, 422 outside 1 to [`MAX_LIMIT`].
pub fn query_limit(limit: Option<u32>, default: u32) -> Result<u32, Problem> {
    match limit {
        None => Ok(default),
        Some(l) if (1..=MAX_LIMIT).contains(&l) => Ok(l),
        Some(_) => Err(Problem::invalid(vec![FieldError::new(
            &["query", "limit"],
            format!("must be between 1 and {MAX_LIMIT}"),
            "range",
        )])),
    }
}
