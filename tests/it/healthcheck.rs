//! The container's HEALTHCHECK runs `kandji-connector healthcheck`: it must report a serving
//! connector as healthy (exit 0) and a missing one as unhealthy (exit 1), never crash.

use crate::harness::TestApp;
use std::process::Command;

fn healthcheck(listen: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kandji-connector"))
        .arg("healthcheck")
        .env("KANDJI_CONNECTOR_LISTEN", listen)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn healthcheck_reports_a_serving_connector_healthy_and_a_missing_one_unhealthy() {
    let server = TestApp::start().await;
    let addr = server.url.trim_start_matches("http://").to_string();
    let out = tokio::task::spawn_blocking(move || healthcheck(&addr))
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Nothing listens on a port just released.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let out = tokio::task::spawn_blocking(move || healthcheck(&format!("0.0.0.0:{port}")))
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
