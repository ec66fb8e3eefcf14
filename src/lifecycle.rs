//! lifecycle: how long the server's background work lives — one shutdown
//! token every loop selects on, one tracker every task is spawned on, and
//! the grace period the drain waits at most (`[server] shutdown_grace`).
//!
//! One value is handed to whatever starts tasks, instead of a token, a
//! tracker and a duration threaded through each signature. It starts no
//! task of its own and logs nothing.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;

/// The shutdown token, the task tracker and the grace period; clones share
/// them.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    shutdown: CancellationToken,
    tasks: TaskTracker,
    grace: Duration,
}

impl Lifecycle {
    /// A running lifecycle whose drain waits at most `grace`.
    pub fn new(grace: Duration) -> Lifecycle {
        Lifecycle {
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            grace,
        }
    }

    /// Runs `task` on the tracker, so the drain waits for it.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task)
    }

    /// Completes when shutdown has begun.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.shutdown.cancelled()
    }

    /// Whether shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// The shutdown token, for code that takes one (graceful HTTP shutdown).
    pub fn token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// How long work in progress may take to finish once shutdown began.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Begins shutdown: every loop selecting on [`Lifecycle::cancelled`] ends.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// Waits up to the grace period for every tracked task to end; `false`
    /// when some were still running then. No task may be spawned afterwards.
    pub async fn drain(&self) -> bool {
        self.tasks.close();
        tokio::time::timeout(self.grace, self.tasks.wait()).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_drain_waits_for_tracked_tasks_within_the_grace() {
        let life = Lifecycle::new(Duration::from_secs(5));
        let loop_life = life.clone();
        life.spawn(async move { loop_life.cancelled().await });
        life.stop();
        assert!(life.drain().await, "a task that ends on shutdown is drained");

        let stuck = Lifecycle::new(Duration::from_secs(5));
        stuck.spawn(std::future::pending::<()>());
        assert!(!stuck.drain().await, "the grace ends the wait");
    }
}
