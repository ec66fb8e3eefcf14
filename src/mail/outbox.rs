//! outbox: where mail jobs wait between the request path and the delivery
//! worker — in this process ([`MemoryOutbox`]) or in the pool's Redis
//! stream (`redis::mail`).
//!
//! The request path only calls [`Outbox::enqueue`], which never waits for
//! delivery. The one delivery worker (`mail::delivery`) takes jobs with
//! [`Outbox::take`] and says what became of each through
//! [`Outbox::report`]: that report is the one place where a job's end is
//! recorded (the Redis outbox acknowledges it there). This module neither
//! renders nor sends mail.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use tokio::sync::{mpsc, Mutex};

use super::{MailError, MailJob};

/// What became of a job the worker took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum Outcome {
    /// The provider accepted it.
    Delivered,
    /// The provider failed in a way that may pass; the worker tries again
    /// later and the job stays this instance's.
    RetryLater,
    /// Refused for good (5xx) or not buildable: not tried again.
    FailedForGood,
    /// Its challenge expired before it could be delivered.
    Expired,
}

impl Outcome {
    /// Whether the job is finished with (nothing more will be tried).
    pub(crate) fn is_final(self) -> bool {
        self != Outcome::RetryLater
    }
}

/// Where mail jobs wait for the delivery worker.
#[async_trait]
pub(crate) trait Outbox: Send + Sync + fmt::Debug + 'static {
    /// Puts a job where the delivery worker takes it, without waiting for
    /// delivery. Fails when `queue_limit` jobs wait already, or when the
    /// outbox cannot be reached.
    async fn enqueue(&self, job: MailJob) -> Result<(), MailError>;

    /// The job as the challenge store queues it in the same step as it opens
    /// the challenge (the pool's Redis stream: one round trip for both);
    /// `None` for an outbox the store cannot reach: then [`Outbox::enqueue`].
    fn sealed_for_store(&self, _job: &MailJob) -> Result<Option<Vec<u8>>, MailError> {
        Ok(None)
    }

    /// Waits for the next job for this instance to deliver. Cancel-safe: a
    /// job is handed out only when the call completes.
    async fn take(&self) -> MailJob;

    /// The next job if one is ready now (draining at shutdown).
    fn take_ready(&self) -> Option<MailJob>;

    /// What became of a job from [`Outbox::take`]: after a final outcome it
    /// is forgotten (acknowledged); after [`Outcome::RetryLater`] it stays
    /// this instance's. Every outcome passes here once per attempt: the one
    /// place to record what became of a challenge's mail.
    async fn report(&self, job: &MailJob, outcome: Outcome);

    /// Jobs this instance has taken or holds and not finished with.
    fn pending(&self) -> usize;
}

/// Jobs handed from whoever finds them to the delivery worker, in order.
#[derive(Debug)]
pub(crate) struct Handoff {
    sender: mpsc::UnboundedSender<MailJob>,
    receiver: Mutex<mpsc::UnboundedReceiver<MailJob>>,
}

impl Default for Handoff {
    fn default() -> Handoff {
        let (sender, receiver) = mpsc::unbounded_channel();
        Handoff {
            sender,
            receiver: Mutex::new(receiver),
        }
    }
}

impl Handoff {
    /// Adds a job behind the others.
    pub(crate) fn push(&self, job: MailJob) {
        // The receiver lives as long as `self`: sending cannot fail.
        let _ = self.sender.send(job);
    }

    /// Waits for the next job (cancel-safe).
    pub(crate) async fn next(&self) -> MailJob {
        let mut receiver = self.receiver.lock().await;
        match receiver.recv().await {
            Some(job) => job,
            // Unreachable: `self` holds a sender.
            None => std::future::pending().await,
        }
    }

    /// The next job if one waits and no one else is waiting for it.
    pub(crate) fn ready(&self) -> Option<MailJob> {
        self.receiver.try_lock().ok()?.try_recv().ok()
    }
}

/// The outbox of an instance on its own: a bounded queue in memory.
#[derive(Debug)]
pub(crate) struct MemoryOutbox {
    jobs: Handoff,
    /// Jobs enqueued and not finished with (waiting, being sent, or
    /// waiting for a retry).
    pending: AtomicUsize,
    limit: usize,
}

impl MemoryOutbox {
    /// An outbox that holds at most `limit` unfinished jobs.
    pub(crate) fn new(limit: usize) -> MemoryOutbox {
        MemoryOutbox {
            jobs: Handoff::default(),
            pending: AtomicUsize::new(0),
            limit,
        }
    }
}

#[async_trait]
impl Outbox for MemoryOutbox {
    async fn enqueue(&self, job: MailJob) -> Result<(), MailError> {
        if self.pending.fetch_add(1, Ordering::AcqRel) >= self.limit {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(MailError::QueueFull { limit: self.limit });
        }
        self.jobs.push(job);
        Ok(())
    }

    async fn take(&self) -> MailJob {
        self.jobs.next().await
    }

    fn take_ready(&self) -> Option<MailJob> {
        self.jobs.ready()
    }

    async fn report(&self, _job: &MailJob, outcome: Outcome) {
        if outcome.is_final() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::tests::job;

    #[tokio::test]
    async fn the_memory_outbox_holds_queue_limit_jobs_until_they_are_finished() {
        let outbox = MemoryOutbox::new(2);
        outbox.enqueue(job(None)).await.unwrap();
        outbox.enqueue(job(None)).await.unwrap();
        assert_eq!(outbox.enqueue(job(None)).await, Err(MailError::QueueFull { limit: 2 }));
        let first = outbox.take().await;
        outbox.report(&first, Outcome::RetryLater).await;
        assert_eq!(outbox.pending(), 2, "a job waiting to retry still counts");
        outbox.report(&first, Outcome::Delivered).await;
        assert_eq!(outbox.pending(), 1);
        outbox.enqueue(job(None)).await.expect("room again");
        assert!(outbox.take_ready().is_some() && outbox.take_ready().is_some());
        assert!(outbox.take_ready().is_none());
    }

    #[tokio::test]
    async fn jobs_come_out_in_the_order_they_went_in() {
        let outbox = MemoryOutbox::new(10);
        let (a, b) = (job(None), job(None));
        let (ta, tb) = (a.tx, b.tx);
        outbox.enqueue(a).await.unwrap();
        outbox.enqueue(b).await.unwrap();
        assert_eq!(outbox.take().await.tx, ta);
        assert_eq!(outbox.take().await.tx, tb);
    }
}
