//! Request handlers, grouped by resource. All are synchronous: the tenant lives in memory, so a
//! handler takes the lock, builds its answer and releases the lock without awaiting anything.

pub mod actions;
pub mod ade;
pub mod audit;
pub mod blueprints;
pub mod devices;
pub mod directory;
pub mod library;
pub mod threats;

use axum::response::Response;
use uuid::Uuid;

use crate::simulator::http::{Req, field_error};

/// A UUID path or query value; Kandji's routes and filters only take UUIDs.
pub fn parse_uuid(s: &str) -> Option<Uuid> {
    Uuid::parse_str(s.trim()).ok()
}

/// A query filter that takes a UUID: `None` when absent or empty, DRF's 400 when malformed.
pub fn uuid_filter(req: &Req, key: &str) -> Result<Option<Uuid>, Response> {
    req.filter(key)
        .map(|v| parse_uuid(v).ok_or_else(|| field_error(400, key, "Enter a valid UUID.")))
        .transpose()
}

/// DRF's 400 for a choice field sent `value`, which is not one of its choices.
pub fn invalid_choice(key: &str, value: &str) -> Response {
    field_error(
        400,
        key,
        &format!("Select a valid choice. {value} is not one of the available choices."),
    )
}

/// Case-insensitive "contains", as Django's `icontains`. `needle` is already lower case.
pub fn contains_ci(haystack: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    if haystack.is_ascii() && needle.is_ascii() {
        let (h, n) = (haystack.as_bytes(), needle.as_bytes());
        h.len() >= n.len() && h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
    } else {
        haystack.to_lowercase().contains(needle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_ci_matches_like_icontains() {
        assert!(contains_ci("MacBook Air (M1, 2020)", "book air"));
        assert!(contains_ci("Zoë’s iPhone", "zoë’s"));
        assert!(!contains_ci("iPad", "ipads"));
        assert!(contains_ci("anything", ""));
    }
}
