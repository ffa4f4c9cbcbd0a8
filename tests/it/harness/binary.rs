//! The real `kandji-connector` binary, for what only a process shows: start-up from the
//! environment, SIGKILL and SIGTERM, what it logs.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::Api;

/// A `serve` process, killed when dropped. Its stdout and stderr are drained into `logs()`.
pub struct Binary {
    child: Child,
    pub api: Api,
    logs: Arc<Mutex<String>>,
    drains: Vec<JoinHandle<()>>,
}

impl std::ops::Deref for Binary {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Binary {
    /// The binary with an empty environment (but `NO_COLOR`), running `args`.
    pub fn command(args: &[&str]) -> Command {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kandji-connector"));
        cmd.args(args).env_clear().env("NO_COLOR", "1");
        cmd
    }

    /// Starts `serve` with this environment (listening on 127.0.0.1:0 and logging at `info`
    /// unless it says otherwise) and returns once it has logged the address it listens on.
    pub async fn serve(env: &[(&str, String)]) -> Binary {
        let mut cmd = Self::command(&["serve"]);
        cmd.env("KANDJI_CONNECTOR_LISTEN", "127.0.0.1:0")
            .env("KANDJI_CONNECTOR_LOG", "info")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("the binary starts");
        let logs = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let drains = vec![
            drain(child.stdout.take().unwrap(), logs.clone(), Some(addr_tx)),
            drain(child.stderr.take().unwrap(), logs.clone(), None),
        ];
        let addr = tokio::time::timeout(Duration::from_secs(20), addr_rx)
            .await
            .expect("the server logs its address within 20 s")
            .unwrap_or_else(|_| panic!("the server exited: {}", logs.lock().unwrap()));
        Binary {
            child,
            api: Api::new(format!("http://{addr}")),
            logs,
            drains,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// SIGKILL, then waits for the process to end.
    pub async fn kill(&mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.unwrap();
        self.drained().await;
    }

    /// SIGTERM, then waits (10 s at most) for the process to end by itself.
    pub async fn terminate(&mut self) -> ExitStatus {
        let pid = self.pid().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        let code = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("SIGTERM ends the process")
            .unwrap();
        self.drained().await;
        code
    }

    async fn drained(&mut self) {
        for d in self.drains.drain(..) {
            let _ = d.await;
        }
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }
}

/// The `address` of a log line, in the text format (`address=…`) or in JSON (`"address":"…"`).
pub fn address(line: &str) -> Option<String> {
    if let Some(rest) = line.split("address=").nth(1) {
        return rest.split_whitespace().next().map(str::to_string);
    }
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v["address"].as_str().map(str::to_string)
}

/// Reads lines into `logs`; the first `address=…` of the server's start-up line goes to `addr`.
fn drain(
    out: impl AsyncRead + Unpin + Send + 'static,
    logs: Arc<Mutex<String>>,
    mut addr: Option<tokio::sync::oneshot::Sender<String>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(out).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("serving")
                && let Some(a) = address(&line)
                && let Some(tx) = addr.take()
            {
                let _ = tx.send(a);
            }
            let mut logs = logs.lock().unwrap();
            logs.push_str(&line);
            logs.push('\n');
        }
    })
}
