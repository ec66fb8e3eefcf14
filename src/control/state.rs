//! state: the operator's questions to the shared state — a seam of its own,
//! so the answer path's `ChallengeStore` stays as it is. Implemented for one
//! instance ([`MemoryState`], over the in-process store and limiter) and for
//! a pool (`redis::control`). Plain values only; nothing here logs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::deliveries::{DeliveryLog, MemoryDeliveries};
use crate::backend::BackendUnavailable;
use crate::challenge::{MemoryStore, Transaction};
use crate::limits::MemoryLimiter;

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

/// A user's lock and counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct UserLimits {
    /// How long the lock still lasts; `None` when not locked.
    pub locked_for: Option<Duration>,
    /// Failed PINs or codes in a row.
    pub failures: u64,
    /// E-mails counted in the last five minutes.
    pub mails_5_min: u64,
    /// E-mails counted in the last hour.
    pub mails_hour: u64,
}

/// What `mailotp ctl` asks of the state (challenges, limits, the queue).
#[async_trait]
pub(crate) trait OperatorState: Send + Sync + 'static {
    /// The user's open challenges, oldest first.
    async fn open_challenges(&self, user: &str) -> Result<Vec<OpenChallenge>, BackendUnavailable>;

    /// The user's lock and counters.
    async fn limits(&self, user: &str) -> Result<UserLimits, BackendUnavailable>;

    /// Clears the lock and the failures (with `throttles` the e-mail counts
    /// too); `true` when the user was locked.
    async fn unlock(&self, user: &str, throttles: bool) -> Result<bool, BackendUnavailable>;

    /// Mails queued and not finished, and the age of the oldest in seconds.
    async fn queue(&self) -> Result<(u64, Option<u64>), BackendUnavailable>;

    /// Where deliveries are recorded.
    fn deliveries(&self) -> Arc<dyn DeliveryLog>;
}

/// The state of an instance on its own.
pub(crate) struct MemoryState {
    /// The challenges.
    pub store: Arc<MemoryStore>,
    /// Lockout and throttles.
    pub limits: Arc<MemoryLimiter>,
    /// What became of the mails.
    pub deliveries: Arc<MemoryDeliveries>,
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

    async fn queue(&self) -> Result<(u64, Option<u64>), BackendUnavailable> {
        self.deliveries.unfinished().await
    }

    fn deliveries(&self) -> Arc<dyn DeliveryLog> {
        Arc::clone(&self.deliveries) as Arc<dyn DeliveryLog>
    }
}
