//! operator: what `mailotp ctl` asks of challenges and limits — a seam of
//! its own, so the answer path's `ChallengeStore` stays as it is.
//! Implemented for one instance ([`MemoryState`], over the in-process store
//! and limiter) and for a pool (`redis::control`). Plain values only;
//! nothing here logs.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use super::{MemoryStore, Transaction};
use crate::backend::BackendUnavailable;
use crate::limits::{MemoryLimiter, UserLimits};

/// One open challenge, as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OpenChallenge {
    /// Its State.
    pub tx: Transaction,
    /// How long it stays valid.
    pub left: Duration,
    /// Wrong answers it still takes.
    pub attempts_left: u64,
    /// Link delivery: `Some(true)` once the link was confirmed.
    pub link_confirmed: Option<bool>,
}

/// How long a user's last result is kept.
pub(crate) const LAST_RESULT_KEPT: Duration = Duration::from_secs(24 * 3600);
/// Results recorded between two sweeps of old ones (memory).
const SWEEP_EVERY: u64 = 1024;

/// The last answer a user's Access-Request got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LastResult {
    /// Access-Accept, Access-Reject or Access-Challenge (borrowed when
    /// recorded, so that the answer path allocates no copy).
    pub answer: Cow<'static, str>,
    /// Why, as the log says it (`wrong-pin`, `otp-accepted`, …).
    pub reason: Cow<'static, str>,
    /// The RADIUS client (NAS) it came through, by its configured name.
    pub client: String,
    /// When (Unix seconds).
    pub at_unix: i64,
}

/// What `mailotp ctl` asks of challenges and limits.
#[async_trait]
pub(crate) trait OperatorState: Send + Sync + 'static {
    /// The user's open challenges, oldest first.
    async fn open_challenges(&self, user: &str) -> Result<Vec<OpenChallenge>, BackendUnavailable>;

    /// The user's lock and counters.
    async fn limits(&self, user: &str) -> Result<UserLimits, BackendUnavailable>;

    /// Clears the lock and the failures (with `throttles` the e-mail counts
    /// too); `true` when the user was locked.
    async fn unlock(&self, user: &str, throttles: bool) -> Result<bool, BackendUnavailable>;

    /// Remembers the answer an existing user's request got, without making
    /// the answer wait (kept [`LAST_RESULT_KEPT`]).
    fn record_result(&self, user: &str, result: LastResult);

    /// The last answer the user's requests got.
    async fn last_result(&self, user: &str) -> Result<Option<LastResult>, BackendUnavailable>;
}

/// The state of an instance on its own.
pub(crate) struct MemoryState {
    store: Arc<MemoryStore>,
    limits: Arc<MemoryLimiter>,
    /// Existing users only (the server records no stranger's name), so it
    /// is bounded by the user directory.
    last: DashMap<String, LastResult>,
    recorded: AtomicU64,
}

impl MemoryState {
    /// The operator's view of `store` and `limits`.
    pub(crate) fn new(store: Arc<MemoryStore>, limits: Arc<MemoryLimiter>) -> MemoryState {
        MemoryState {
            store,
            limits,
            last: DashMap::new(),
            recorded: AtomicU64::new(0),
        }
    }
}

#[async_trait]
impl OperatorState for MemoryState {
    async fn open_challenges(&self, user: &str) -> Result<Vec<OpenChallenge>, BackendUnavailable> {
        Ok(self.store.open_of(user))
    }

    async fn limits(&self, user: &str) -> Result<UserLimits, BackendUnavailable> {
        Ok(self.limits.view(user))
    }

    async fn unlock(&self, user: &str, throttles: bool) -> Result<bool, BackendUnavailable> {
        Ok(self.limits.unlock(user, throttles))
    }

    fn record_result(&self, user: &str, result: LastResult) {
        let oldest = result.at_unix - LAST_RESULT_KEPT.as_secs() as i64;
        if self.recorded.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.last.retain(|_, r| r.at_unix > oldest);
        }
        // A user seen before keeps the key already allocated.
        match self.last.get_mut(user) {
            Some(mut last) => *last = result,
            None => {
                self.last.insert(user.to_owned(), result);
            }
        }
    }

    async fn last_result(&self, user: &str) -> Result<Option<LastResult>, BackendUnavailable> {
        Ok(self.last.get(user).map(|r| r.clone()))
    }
}
