//! `kandji-connector demo`: where it listens. Like `serve`, it takes the address from
//! `KANDJI_CONNECTOR_LISTEN` or `--listen` (the flag wins).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::harness::{Binary, eventually};

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `demo` with these arguments and environment; returns the process and the console
/// address it printed.
async fn demo(args: &[&str], env: &[(&str, String)]) -> (tokio::process::Child, String) {
    let mut all = vec!["demo", "--devices", "5"];
    all.extend_from_slice(args);
    let mut child = Binary::command(&all)
        .env("KANDJI_CONNECTOR_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let console = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.split("paste the API key: ").nth(1) {
                return url.trim().to_string();
            }
        }
        panic!("the demo exited before printing its address");
    })
    .await
    .expect("the demo prints its address within 20 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, console)
}

async fn answers_healthz(port: u16) {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://127.0.0.1:{port}/healthz");
    eventually(
        &format!("{url} answers"),
        Duration::from_secs(10),
        async || {
            http.get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        },
    )
    .await;
}

#[tokio::test]
async fn demo_listens_where_kandji_connector_listen_says() {
    let port = free_port();
    let (_demo, console) = demo(
        &[],
        &[("KANDJI_CONNECTOR_LISTEN", format!("127.0.0.1:{port}"))],
    )
    .await;
    assert_eq!(console, format!("http://127.0.0.1:{port}/"));
    answers_healthz(port).await;
}

#[tokio::test]
async fn demo_listen_flag_wins_over_the_environment() {
    let (flag, env) = (free_port(), free_port());
    let (_demo, console) = demo(
        &["--listen", &format!("127.0.0.1:{flag}")],
        &[("KANDJI_CONNECTOR_LISTEN", format!("127.0.0.1:{env}"))],
    )
    .await;
    assert_eq!(console, format!("http://127.0.0.1:{flag}/"));
    answers_healthz(flag).await;
}
