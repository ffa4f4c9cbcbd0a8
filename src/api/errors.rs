//! How the lower layers' errors become problems, so that handlers use `?`. The caller sees a
//! status, a title and a detail; the operator's cause rides along in the problem and is logged
//! once by [`crate::error::log_problems`].

use axum::http::StatusCode;

use crate::engine::{RunError, error_message};
use crate::error::{FieldError, Problem};
use crate::kandji::KandjiError;
use crate::store::StoreError;
use crate::streams::StartError;
use crate::trust::LookupError;

/// 503 with `Retry-After` when the database is unreachable for now, 500 otherwise; the cause
/// is logged, never sent.
impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        let p = match e {
            StoreError::Unavailable(_) => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Store unavailable")
                    .detail("the connector's database cannot be reached right now; retry later")
                    .retry_after(5)
            }
            _ => Problem::internal("the connector's database failed; the cause is in its log"),
        };
        p.cause(e)
    }
}

impl From<KandjiError> for Problem {
    fn from(e: KandjiError) -> Self {
        match &e {
            KandjiError::Timeout(_) => {
                Problem::new(StatusCode::GATEWAY_TIMEOUT, "Kandji did not answer in time")
                    .detail(e.to_string())
            }
            KandjiError::Unreachable(_) | KandjiError::TooLarge(_) => {
                Problem::new(StatusCode::BAD_GATEWAY, "Kandji could not be reached")
                    .detail(e.to_string())
            }
            KandjiError::InvalidRequest(m) => Problem::bad_request(m.clone()),
            KandjiError::Throttled(wait) => {
                Problem::new(StatusCode::TOO_MANY_REQUESTS, "Kandji request budget spent")
                    .detail("this connection's share of the tenant's hourly Kandji quota is used up for now; retry later")
                    .retry_after(wait.as_secs_f64().ceil().max(1.0) as u64)
            }
        }
    }
}

/// Validation errors: 422 naming each offending field.
impl From<Vec<FieldError>> for Problem {
    fn from(errors: Vec<FieldError>) -> Self {
        Problem::invalid(errors)
    }
}

impl From<RunError> for Problem {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Unsupported(m) => Problem::not_implemented(m),
            RunError::Invalid(errors) => errors.into(),
            RunError::Kandji(k) => k.into(),
        }
    }
}

impl From<StartError> for Problem {
    fn from(e: StartError) -> Self {
        match e {
            StartError::ShuttingDown => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Shutting down")
                    .detail("the connector is shutting down; start the stream again")
                    .retry_after(5)
            }
            StartError::TooMany(n) => Problem::new(StatusCode::TOO_MANY_REQUESTS, "Too many streams")
                .detail(format!("{n} streams are running, the most this connector runs at once; wait for one to finish or cancel one"))
                .retry_after(30),
            StartError::Store(e) => e.into(),
        }
    }
}

/// A device-trust lookup that had no inventory to fall back on.
impl From<LookupError> for Problem {
    fn from(e: LookupError) -> Self {
        match e {
            LookupError::Kandji(e) => e.into(),
            LookupError::KandjiStatus { status, body } => {
                Problem::new(StatusCode::BAD_GATEWAY, format!("Kandji answered {status}"))
                    .detail(error_message(status, &body))
            }
        }
    }
}
