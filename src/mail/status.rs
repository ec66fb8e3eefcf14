//! status: what became of each challenge's e-mail, for `mailotp ctl status`.
//!
//! The mail path reports here through [`DeliveryLog`] (queued when the
//! request path enqueued it, then each try of the delivery worker); the
//! control socket (`control`) reads it back by transaction. Entries live as long as
//! their challenge's validity. In memory for one instance
//! ([`MemoryDeliveries`]), in Redis for a pool (`redis::control`). The
//! entries hold the relay's words and times, never a code or a link.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::backend::BackendUnavailable;
use crate::challenge::Transaction;

/// What became of a challenge's e-mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub(crate) enum Delivery {
    /// Waiting for the delivery worker (or nothing recorded yet).
    Queued,
    /// A try failed; another follows.
    Retrying {
        /// The relay's or the connection's words.
        error: String,
        /// Tries so far.
        tries: u32,
        /// When the last try failed (Unix seconds).
        at_unix: i64,
    },
    /// The relay took it.
    Relayed {
        /// The relay's reply line, e.g. `250 2.0.0 Ok: queued as 4F2`.
        reply: String,
        /// When (Unix seconds).
        at_unix: i64,
    },
    /// Given up: refused for good, or the challenge expired first.
    Failed {
        /// Why.
        error: String,
        /// When (Unix seconds).
        at_unix: i64,
    },
}

/// Where the mail path records deliveries once `app` set the log.
pub(crate) type DeliveryLogSlot = Arc<OnceLock<Arc<dyn DeliveryLog>>>;

/// Records written between two sweeps of expired entries (memory).
const SWEEP_EVERY: u64 = 256;

/// One challenge's mail, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeliveryEntry {
    /// When the PIN request came (Unix seconds).
    pub opened_unix: i64,
    /// Where its mail stands.
    pub delivery: Delivery,
}

/// Where the mail path records, and the control socket reads, deliveries.
#[async_trait]
pub(crate) trait DeliveryLog: Send + Sync + 'static {
    /// Records `entry` for `tx`, kept for `keep` (the rest of the
    /// challenge's validity). A `Queued` entry never replaces another: the
    /// worker may have reported before the request path did. Never waits for
    /// a remote store: the request path calls it.
    async fn record(&self, tx: Transaction, entry: DeliveryEntry, keep: Duration);

    /// What was recorded for `tx`.
    async fn get(&self, tx: &Transaction) -> Result<Option<DeliveryEntry>, BackendUnavailable>;

    /// Mails not finished (queued or retrying) and the age of the oldest, in
    /// seconds, as far as this log knows them.
    async fn unfinished(&self) -> Result<(u64, Option<u64>), BackendUnavailable>;
}

/// Wall-clock seconds since the Unix epoch.
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Whether a delivery is still in progress.
pub(crate) fn unfinished(delivery: &Delivery) -> bool {
    matches!(delivery, Delivery::Queued | Delivery::Retrying { .. })
}

/// The deliveries of an instance on its own.
#[derive(Debug, Default)]
pub(crate) struct MemoryDeliveries {
    entries: DashMap<Transaction, (DeliveryEntry, Instant)>,
    written: AtomicU64,
}

impl MemoryDeliveries {
    fn sweep(&self, now: Instant) {
        self.entries.retain(|_, (_, until)| *until > now);
    }
}

#[async_trait]
impl DeliveryLog for MemoryDeliveries {
    async fn record(&self, tx: Transaction, entry: DeliveryEntry, keep: Duration) {
        let now = Instant::now();
        if self.written.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep(now);
        }
        let queued = entry.delivery == Delivery::Queued;
        let mut slot = self.entries.entry(tx).or_insert_with(|| (entry.clone(), now + keep));
        if !queued {
            *slot = (entry, now + keep);
        }
    }

    async fn get(&self, tx: &Transaction) -> Result<Option<DeliveryEntry>, BackendUnavailable> {
        let now = Instant::now();
        Ok(self.entries.get(tx).filter(|e| e.1 > now).map(|e| e.0.clone()))
    }

    async fn unfinished(&self) -> Result<(u64, Option<u64>), BackendUnavailable> {
        let (now, wall) = (Instant::now(), now_unix());
        let mut count = 0;
        let mut oldest: Option<i64> = None;
        for e in self.entries.iter() {
            let (entry, until) = e.value();
            if *until > now && unfinished(&entry.delivery) {
                count += 1;
                oldest = Some(oldest.map_or(entry.opened_unix, |o| o.min(entry.opened_unix)));
            }
        }
        Ok((count, oldest.map(|o| u64::try_from(wall - o).unwrap_or(0))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(delivery: Delivery) -> DeliveryEntry {
        DeliveryEntry {
            opened_unix: now_unix() - 30,
            delivery,
        }
    }

    #[tokio::test]
    async fn queued_never_replaces_what_the_worker_reported() {
        let log = MemoryDeliveries::default();
        let tx = Transaction::random();
        let relayed = Delivery::Relayed {
            reply: "250 OK".into(),
            at_unix: 1,
        };
        log.record(tx, entry(relayed.clone()), Duration::from_secs(60)).await;
        log.record(tx, entry(Delivery::Queued), Duration::from_secs(60)).await;
        assert_eq!(log.get(&tx).await.unwrap().unwrap().delivery, relayed);
        assert_eq!(log.unfinished().await.unwrap().0, 0);
    }

    #[tokio::test]
    async fn unfinished_counts_queued_and_retrying_with_the_oldest_age() {
        let log = MemoryDeliveries::default();
        log.record(Transaction::random(), entry(Delivery::Queued), Duration::from_secs(60))
            .await;
        let (count, oldest) = log.unfinished().await.unwrap();
        assert_eq!(count, 1);
        assert!(oldest.is_some_and(|s| (30..40).contains(&s)), "{oldest:?}");
    }
}
