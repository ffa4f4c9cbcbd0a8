//! The plain data types of stream jobs, as the store keeps them.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::Value;

/// Where a stream stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl StreamState {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamState::Running => "running",
            StreamState::Succeeded => "succeeded",
            StreamState::Failed => "failed",
            StreamState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => StreamState::Running,
            "succeeded" => StreamState::Succeeded,
            "failed" => StreamState::Failed,
            "cancelled" => StreamState::Cancelled,
            _ => return None,
        })
    }
}

/// A stream as reported: no callback URL, secret or helper state.
#[derive(Clone, Debug, PartialEq)]
pub struct Stream {
    /// `"str_"` followed by a simple (hyphenless) UUID v4.
    pub id: String,
    /// The id of the API key that started it.
    pub owner: String,
    pub connection_id: String,
    pub card_id: String,
    pub result_set: String,
    /// `scheme://host[:port]` of the callback.
    pub callback_origin: String,
    pub record_limit: Option<u64>,
    pub state: StreamState,
    pub error: Option<String>,
    /// Records delivered (answered 2xx).
    pub record_count: u64,
    pub failed_deliveries: u64,
    pub pages_fetched: u64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// Input to [`super::Store::create_stream`]. `Debug` redacts the helper flow.
#[derive(Debug)]
pub struct NewStream {
    pub owner: String,
    pub connection_id: String,
    pub card_id: String,
    pub result_set: String,
    pub inputs: Value,
    pub options: Value,
    /// The helper flow (`{"url","secret","state"}` as JSON): encrypted at rest with the
    /// stream id as associated data, and erased when the stream finishes.
    pub helper_flow: SecretString,
    pub callback_origin: String,
    pub record_limit: Option<u64>,
}

/// Everything a runner needs to (re)start a stream.
#[derive(Debug)]
pub struct StreamJob {
    pub stream: Stream,
    pub inputs: Value,
    pub options: Value,
    pub helper_flow: SecretString,
    pub checkpoint: StreamCheckpoint,
}

/// A stream's progress. Every record below `done_below` is finished (delivered or failed for
/// good); `done_above` lists the finished ones above it. The Kandji cursor fetches the page
/// whose first record has index `page_start`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamCheckpoint {
    pub done_below: u64,
    pub done_above: Vec<u64>,
    pub page_start: u64,
    pub cursor_offset: u64,
    pub cursor_page: u64,
    pub cursor_next: Option<String>,
    pub record_count: u64,
    pub failed_deliveries: u64,
    pub pages_fetched: u64,
}

/// A record the helper flow did not accept.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryFailure {
    pub index: u64,
    pub webhook_id: String,
    /// The callback's HTTP status, when it answered.
    pub status: Option<u16>,
    pub error: String,
    /// The start of the callback's answer.
    pub body: Option<String>,
    pub attempts: u32,
    pub failed_at: DateTime<Utc>,
}
