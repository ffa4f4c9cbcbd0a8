//! Waiting for something that happens in the background, with a bound.

use std::time::{Duration, Instant};

/// Polls `check` (every 20 ms) until it holds; fails the test, naming `what`, after `within`.
/// For a plain condition: `eventually("…", d, async || receiver.hit_count() >= 20)`.
pub async fn eventually(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
