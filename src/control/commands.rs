//! commands: what each control request does, and its log line and count.

use std::sync::atomic::Ordering::Relaxed;

use tokio::sync::oneshot;

use super::protocol::{Answers, ChallengeStatus, Delivery, Reloaded, Revoked, Stats, Unlocked, UserStatus};
use super::socket::Peer;
use super::{count, Answer, Control, Outcome, Request};
use crate::backend::BackendUnavailable;
use crate::challenge::Transaction;
use crate::mail::status::now_unix;

/// Longest user name a request may carry (as RADIUS User-Name).
const MAX_USER: usize = 253;

/// Reads one request line, runs it, logs and counts it.
pub(super) async fn run(control: &Control, peer: &Peer, line: &[u8]) -> Answer {
    let request: Request = match serde_json::from_slice(line) {
        Ok(request) => request,
        Err(e) => {
            count("unreadable", "error");
            tracing::warn!(uid = peer.uid, pid = peer.pid, error = %e, "control request refused: not a command");
            return Answer::error(format!("not a command: {e}"));
        }
    };
    let command = request.name();
    let user = request.user().unwrap_or("");
    if user.is_empty() && request.user().is_some() || user.len() > MAX_USER {
        count(command, "error");
        return Answer::error("the user name must be 1 to 253 bytes");
    }
    let answer = match execute(control, &request).await {
        Ok(outcome) => Answer::ok(outcome),
        Err(reason) => Answer::error(reason),
    };
    let result = if answer.ok { "ok" } else { "error" };
    count(command, result);
    match &answer.error {
        None => tracing::info!(command, user, uid = peer.uid, pid = peer.pid, result, "control command"),
        Some(error) => {
            tracing::warn!(command, user, uid = peer.uid, pid = peer.pid, result, %error, "control command failed");
        }
    }
    answer
}

async fn execute(control: &Control, request: &Request) -> Result<Outcome, String> {
    let unavailable = |e: BackendUnavailable| e.to_string();
    Ok(match request {
        Request::Status { user } => Outcome::Status(status(control, user).await.map_err(unavailable)?),
        Request::Unlock { user, throttles } => {
            let was_locked = control.state.unlock(user, *throttles).await.map_err(unavailable)?;
            Outcome::Unlocked(Unlocked {
                user: user.clone(),
                was_locked,
                throttles_cleared: *throttles,
            })
        }
        Request::Revoke { user } => {
            let open = control.state.open_challenges(user).await.map_err(unavailable)?;
            // A State that was never open: every challenge of the user closes.
            let store = &control.ctx.handler.auth.challenges;
            store
                .close_user(user, &Transaction::random())
                .await
                .map_err(unavailable)?;
            Outcome::Revoked(Revoked {
                user: user.clone(),
                closed: open.len() as u64,
            })
        }
        Request::Stats => Outcome::Stats(stats(control).await.map_err(unavailable)?),
        Request::Reload => {
            reload(control).await?;
            Outcome::Reloaded(Reloaded { reloaded: true })
        }
    })
}

async fn status(control: &Control, user: &str) -> Result<UserStatus, BackendUnavailable> {
    let now = now_unix();
    let state = &control.state;
    let limits = state.limits(user).await?;
    let deliveries = &control.deliveries;
    let mut challenges = Vec::new();
    for open in state.open_challenges(user).await? {
        let entry = deliveries.get(&open.tx).await?;
        challenges.push(ChallengeStatus {
            transaction: open.tx.to_string(),
            opened_unix: entry.as_ref().map(|e| e.opened_unix),
            expires_unix: now + secs(open.left),
            attempts_left: open.attempts_left,
            link: open
                .link_confirmed
                .map(|confirmed| if confirmed { "confirmed" } else { "pending" }.to_owned()),
            delivery: entry.map_or(Delivery::Queued, |e| e.delivery),
        });
    }
    Ok(UserStatus {
        user: user.to_owned(),
        now_unix: now,
        challenges,
        locked_until_unix: limits.locked_for.map(|left| now + secs(left)),
        failures: limits.failures,
        mails_last_5_min: limits.mails_5_min,
        mails_last_hour: limits.mails_hour,
        last: state.last_result(user).await?,
    })
}

/// Whole seconds, rounded up (a lock with 0.4 s left is still on).
fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs() + u64::from(d.subsec_nanos() > 0)).unwrap_or(i64::MAX)
}

async fn stats(control: &Control) -> Result<Stats, BackendUnavailable> {
    let (mails_queued, oldest_queued_s) = control.deliveries.unfinished().await?;
    let m = &control.ctx.metrics;
    Ok(Stats {
        open_challenges: control.ctx.handler.auth.challenges.open_count() as u64,
        mails_queued,
        oldest_queued_s,
        answers: Answers {
            accept: m.accepts.load(Relaxed),
            reject: m.rejects.load(Relaxed),
            challenge: m.challenges.load(Relaxed),
        },
    })
}

/// Hands the reload to the main loop, as SIGHUP does, and waits for its word.
async fn reload(control: &Control) -> Result<(), String> {
    let (tx, rx) = oneshot::channel();
    control
        .reload
        .send(tx)
        .await
        .map_err(|_| "the server is stopping".to_owned())?;
    rx.await.map_err(|_| "the server is stopping".to_owned())?
}
