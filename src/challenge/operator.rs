//! operator: what `mailotp ctl` asks of challenges and limits — a seam of
//! its own, so the answer path's `ChallengeStore` stays as it is.
//! Implemented for one instance ([`MemoryState`], over the in-process store
//! and limiter) and for a pool (`redis::control`). Plain values only;
//! nothing here logs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

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
}

/// The state of an instance on its own.
pub(crate) struct MemoryState {
    /// The challenges.
    pub store: Arc<MemoryStore>,
    /// Lockout and throttles.
    pub limits: Arc<MemoryLimiter>,
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
}
