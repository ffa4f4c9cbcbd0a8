//! The container's HEALTHCHECK runs `kandji-connector healthcheck`: it must report a serving
//! connector as healthy (exit 0) and a missing one as unhealthy (exit 1), never crash.

use crate::harness::TestApp;
use std::process::Command;

/// Runs `kandji-connector healthcheck` against `listen` and asserts its exit code.
async fn assert_healthcheck(listen: String, want: i32) {
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_kandji-connector"))
            .arg("healthcheck")
            .env("KANDJI_CONNECTOR_LISTEN", listen)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(want),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn healthcheck_reports_a_serving_connector_healthy_and_a_missing_one_unhealthy() {
    let server = TestApp::start().await;
    let addr = server.url.trim_start_matches("http://").to_string();
    assert_healthcheck(addr, 0).await;

    // Nothing listens on a port just released.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    assert_healthcheck(format!("0.0.0.0:{port}"), 1).await;
}
