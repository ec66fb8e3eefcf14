//! control: the operator socket behind `mailotp ctl` (`[control] socket`).
//!
//! It owns the Unix socket (made mode 0660 in the server's group, peers
//! checked with `SO_PEERCRED`), the one-line JSON protocol, and the commands
//! `status`, `unlock`, `revoke`, `stats` and `reload`, which act on the
//! shared state through `OperatorState`, the challenge store and the
//! delivery log (`mail::status`), so with
//! Redis any instance's socket acts on the pool. Each connection carries one
//! request of at most [`protocol::MAX_REQUEST`] bytes, answered within
//! [`REQUEST_TIMEOUT`]; at most [`MAX_CONNECTIONS`] are served at once. Every
//! command and every refusal is logged with the peer's uid and pid and
//! counted in `mailotp_control_commands_total`. It never logs or returns a
//! code, a PIN or a link, and it decides no login.

mod commands;
mod protocol;
mod socket;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::challenge::OperatorState;
use crate::config::ControlConfig;
use crate::lifecycle::Lifecycle;
use crate::mail::status::DeliveryLog;
use crate::server::Context;

pub(crate) use protocol::{Answer, ChallengeStatus, Delivery, Outcome, Request, Stats, UserStatus};
pub(crate) use socket::SocketError;

/// How long one connection may take, request and answer.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more wait in the kernel's backlog.
pub(crate) const MAX_CONNECTIONS: usize = 8;

/// A reload asked for on the socket: the main loop does it (as for SIGHUP)
/// and answers `Ok` or the error's words.
pub(crate) type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// Commands by name and result, for `/metrics`.
static COUNTS: Mutex<BTreeMap<(&'static str, &'static str), u64>> = Mutex::new(BTreeMap::new());

/// Counts one command (or refusal) with its result.
fn count(command: &'static str, result: &'static str) {
    let mut counts = COUNTS.lock().expect("control counts lock poisoned");
    *counts.entry((command, result)).or_default() += 1;
}

/// Commands so far, as (command, result, count), for the exporter.
pub(crate) fn counts() -> Vec<(&'static str, &'static str, u64)> {
    let counts = COUNTS.lock().expect("control counts lock poisoned");
    counts.iter().map(|((c, r), n)| (*c, *r, *n)).collect()
}

/// What the commands act on.
pub(crate) struct Control {
    /// The server: its challenge store and answer counters.
    pub ctx: Arc<Context>,
    /// Challenges and limits as the operator sees them.
    pub state: Arc<dyn OperatorState>,
    /// What became of the mails (and the queue).
    pub deliveries: Arc<dyn DeliveryLog>,
    /// Asks the main loop to reload.
    pub reload: mpsc::Sender<ReloadRequest>,
}

/// Makes the socket `config` asks for and serves it on `life` until
/// shutdown. The default path that cannot be made is a warning (the server
/// runs without); a configured one is an error.
pub(crate) async fn start(config: &ControlConfig, control: Control, life: &Lifecycle) -> Result<(), SocketError> {
    let (path, required) = match config {
        ControlConfig::Off => return Ok(()),
        ControlConfig::Default(path) => (path, false),
        ControlConfig::Configured(path) => (path, true),
    };
    let bound = match socket::bind(path).await {
        Ok(bound) => bound,
        Err(e) if !required => {
            tracing::warn!(error = %e, "running without the control socket (mailotp ctl)");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    tracing::info!(path = %path.display(), "control socket on {}", path.display());
    life.spawn(serve(bound, Arc::new(control), life.clone()));
    Ok(())
}

async fn serve(bound: socket::Bound, control: Arc<Control>, life: Lifecycle) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = life.cancelled() => return,
            permit = Arc::clone(&slots).acquire_owned() => permit.expect("semaphore never closed"),
        };
        let accepted = tokio::select! {
            _ = life.cancelled() => return,
            accepted = bound.listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "control socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (control, path) = (Arc::clone(&control), bound.path.clone());
        life.spawn(async move {
            let _permit = permit;
            let served = tokio::time::timeout(REQUEST_TIMEOUT, connection(stream, &control, &path)).await;
            if served.is_err() {
                tracing::debug!(
                    "control connection not done within {} s: closed",
                    REQUEST_TIMEOUT.as_secs()
                );
            }
        });
    }
}

/// One connection: the peer check, one request line, one answer line.
async fn connection(stream: UnixStream, control: &Control, path: &std::path::Path) {
    let Ok(peer) = socket::peer(&stream) else {
        return;
    };
    let (read, mut write) = stream.into_split();
    let answer = if socket::admitted(&peer, path) {
        let mut line = Vec::new();
        let mut reader = BufReader::new(read.take(protocol::MAX_REQUEST as u64));
        match reader.read_until(b'\n', &mut line).await {
            Ok(_) if line.ends_with(b"\n") => commands::run(control, &peer, &line).await,
            _ => {
                count("unreadable", "error");
                tracing::warn!(
                    uid = peer.uid,
                    pid = peer.pid,
                    "control request refused: not one line of at most 4 KiB"
                );
                Answer::error("the request must be one JSON line of at most 4096 bytes")
            }
        }
    } else {
        count("refused", "refused");
        tracing::warn!(
            uid = peer.uid,
            pid = peer.pid,
            "control connection refused: not root, the server's user or a member of the socket's group"
        );
        Answer::error(format!(
            "refused: uid {} is not root, the server's user or in the control socket's group",
            peer.uid
        ))
    };
    let mut text = serde_json::to_string(&answer).unwrap_or_else(|_| r#"{"ok":false,"error":"internal"}"#.to_owned());
    text.push('\n');
    let _ = write.write_all(text.as_bytes()).await;
    let _ = write.shutdown().await;
}
