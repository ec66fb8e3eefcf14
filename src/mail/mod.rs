//! mail: the one mail seam between `auth` and the mail provider.
//!
//! `auth` only calls [`MailQueue::enqueue`], which puts the job in an
//! [`Outbox`] and never waits: the RADIUS answer goes out before the mail.
//! Jobs wait in memory ([`MemoryOutbox`]) or, in a pool, in the Redis stream
//! (`redis::mail`). One delivery worker (`mail/delivery.rs`) takes them from the
//! outbox, renders each and hands it to the provider, a few at a time,
//! retries transient failures with backoff while the challenge is still
//! valid, so an SMTP outage delays mail but loses none, and reports each
//! outcome back to the outbox. The queue is bounded: when it is full,
//! `enqueue` says so and the request is rejected instead of memory growing.
//! Codes and links are never logged; recipients are, and transaction ids (a
//! link's shortened).

mod delivery;
pub(crate) mod outbox;
pub(crate) mod provider;
pub(crate) mod status;
pub(crate) mod template;

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use lettre::message::Mailbox;
use thiserror::Error;
use tokio::time::Instant;

use crate::challenge::Transaction;
use crate::config::{ConfigError, EmailConfig};
use crate::lifecycle::Lifecycle;
use crate::otp::Otp;
pub(crate) use delivery::MailStats;
use delivery::{Delivery, Renderer};
pub(crate) use outbox::{MemoryOutbox, Outbox};

/// Why a mail was not sent.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum MailError {
    /// The queue holds `limit` mails already.
    #[error("mail queue full ({limit} mails waiting)")]
    QueueFull {
        /// The configured `queue_limit`.
        limit: usize,
    },
    /// The next hop failed in a way that may pass (connection refused,
    /// timeout, 4xx); retried while the challenge is valid.
    #[error("delivery failed, will retry: {reason}")]
    Transient {
        /// The provider's words.
        reason: String,
    },
    /// The SMTP server refused for good (5xx, e.g. unknown recipient).
    #[error("delivery refused: {reason}")]
    Permanent {
        /// The provider's words.
        reason: String,
    },
    /// The message could not be built (bad address).
    #[error("cannot build message: {reason}")]
    Build {
        /// What was wrong.
        reason: String,
    },
    /// The shared queue (Redis) cannot be reached: the request gets no answer.
    #[error("shared mail queue: {0}")]
    Unavailable(#[from] crate::backend::BackendUnavailable),
}

/// Who asked for a mail, so the user can tell whether the login is theirs.
/// Request values are text as the NAS sent them; the templates clean them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AskedBy {
    /// Calling-Station-Id, if the request had one.
    pub client_ip: Option<String>,
    /// The configured name of the client (NAS).
    pub nas: String,
    /// When the request arrived, in seconds since the Unix epoch.
    pub at_unix: i64,
    /// When the challenge stops working, in seconds since the Unix epoch.
    pub until_unix: i64,
}

/// One e-mail to send: a challenge's code for a user. Its Debug shows
/// neither the code nor the links, and the transaction as logs show it.
pub(crate) struct MailJob {
    /// Recipient.
    pub to: Mailbox,
    /// User name, for the body and the log.
    pub user: String,
    /// The code.
    pub otp: Otp,
    /// The confirmation link (link delivery).
    pub link: Option<zeroize::Zeroizing<String>>,
    /// The "this wasn't me" link (with `[link]` configured).
    pub deny_link: Option<zeroize::Zeroizing<String>>,
    /// Who asked, and when.
    pub asked: AskedBy,
    /// The user's language directory (`None`: the default language).
    pub language: Option<String>,
    /// The challenge it belongs to, for the log.
    pub tx: Transaction,
    /// When the challenge expires; a mail still undelivered then is dropped.
    pub expires: Instant,
}

impl MailJob {
    /// The transaction as log lines show it: in full for a code's challenge,
    /// only its first 8 hex digits for a link's, whose State logs the user in
    /// once the link is confirmed (a bearer credential).
    pub(crate) fn logged_tx(&self) -> String {
        let mut tx = self.tx.to_string();
        if self.link.is_some() {
            tx.truncate(8);
            tx.push('…');
        }
        tx
    }
}

impl fmt::Debug for MailJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailJob")
            .field("to", &self.to.email)
            .field("user", &self.user)
            .field("otp", &format_args!("[redacted]"))
            .field(
                "link",
                &format_args!("{}", if self.link.is_some() { "[redacted]" } else { "None" }),
            )
            .field(
                "deny_link",
                &format_args!("{}", if self.deny_link.is_some() { "[redacted]" } else { "None" }),
            )
            .field("asked", &self.asked)
            .field("language", &self.language)
            .field("tx", &format_args!("{}", self.logged_tx()))
            .field("expires", &self.expires)
            .finish()
    }
}

/// The handle on the mail queue: the request path enqueues through it, the
/// exporter reads its counters, a reload swaps its messages.
#[derive(Clone)]
pub(crate) struct MailQueue {
    outbox: Arc<dyn Outbox>,
    stats: Arc<MailStats>,
    renderer: Arc<ArcSwap<Renderer>>,
    log: status::DeliveryLogSlot,
}

impl MailQueue {
    /// Queues a mail without waiting for delivery. Fails when the queue is
    /// full or the outbox (Redis) is unreachable.
    pub(crate) async fn enqueue(&self, job: MailJob) -> Result<(), MailError> {
        let (tx, opened_unix, expires) = (job.tx, job.asked.at_unix, job.expires);
        self.outbox.enqueue(job).await?;
        self.queued(tx, opened_unix, expires).await;
        Ok(())
    }

    /// Notes for `ctl status` that the mail of `tx` (asked at `opened_unix`)
    /// is queued, whoever queued it (this queue, or the challenge store with
    /// [`MailQueue::sealed_for_store`]). Returns at once: a log in Redis
    /// writes in the background.
    pub(crate) async fn queued(&self, tx: Transaction, opened_unix: i64, expires: Instant) {
        if let Some(log) = self.log.get() {
            let entry = status::DeliveryEntry {
                opened_unix,
                delivery: status::Delivery::Queued,
            };
            let keep = expires.saturating_duration_since(Instant::now());
            log.record(tx, entry, keep).await;
        }
    }

    /// Records what becomes of each mail in `log` from now on (`ctl status`).
    pub(crate) fn record_deliveries(&self, log: Arc<dyn status::DeliveryLog>) {
        let _ = self.log.set(log);
    }

    /// The job sealed for the challenge store to queue with its challenge
    /// (see [`Outbox::sealed_for_store`]); `None`: [`MailQueue::enqueue`] it.
    pub(crate) fn sealed_for_store(&self, job: &MailJob) -> Result<Option<Vec<u8>>, MailError> {
        self.outbox.sealed_for_store(job)
    }

    /// Mails this instance has queued or taken, being sent or waiting for a
    /// retry.
    pub(crate) fn pending(&self) -> usize {
        self.outbox.pending()
    }

    /// Counters of the delivery worker.
    pub(crate) fn stats(&self) -> &MailStats {
        &self.stats
    }

    /// Takes sender, subject and templates from a reloaded configuration;
    /// mails already queued are rendered with the new ones.
    pub(crate) fn update_messages(&self, config: &EmailConfig) {
        self.renderer.store(Arc::new(Renderer::new(config)));
    }
}

impl std::fmt::Debug for MailQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailQueue").field("outbox", &self.outbox).finish()
    }
}

/// Starts the delivery worker on `life` for an instance on its own (jobs
/// wait in memory, at most `queue_limit`); it stops on shutdown after giving
/// the mails it holds the grace period to go out.
pub(crate) fn start(config: &EmailConfig, life: &Lifecycle) -> Result<MailQueue, ConfigError> {
    start_with(Arc::new(MemoryOutbox::new(config.queue_limit)), config, life)
}

/// Like [`start`], with jobs waiting in `outbox` (the pool's Redis stream).
pub(crate) fn start_with(
    outbox: Arc<dyn Outbox>,
    config: &EmailConfig,
    life: &Lifecycle,
) -> Result<MailQueue, ConfigError> {
    let queue = MailQueue {
        outbox,
        stats: Arc::new(MailStats::default()),
        renderer: Arc::new(ArcSwap::from_pointee(Renderer::new(config))),
        log: Arc::default(),
    };
    let worker = Delivery {
        outbox: Arc::clone(&queue.outbox),
        provider: Arc::from(provider::build(&config.provider)?),
        renderer: Arc::clone(&queue.renderer),
        stats: Arc::clone(&queue.stats),
        log: Arc::clone(&queue.log),
    };
    life.spawn(worker.run(life.token(), life.grace()));
    Ok(queue)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A job for `alice`, expiring now; with a link when `link` is given.
    pub(crate) fn job(link: Option<&str>) -> MailJob {
        MailJob {
            to: "alice@example.com".parse().unwrap(),
            user: "alice".to_owned(),
            otp: Otp::from_value(493_817, 6),
            link: link.map(|l| zeroize::Zeroizing::new(l.to_owned())),
            deny_link: None,
            asked: AskedBy::default(),
            language: None,
            tx: Transaction::random(),
            expires: Instant::now(),
        }
    }

    #[test]
    fn debug_of_a_job_hides_code_and_link() {
        let token = "https://otp.example.com/l/0123456789abcdef0123456789abcdef";
        for job in [job(None), job(Some(token))] {
            let shown = format!("{job:?}");
            assert!(
                shown.contains("otp: [redacted]") && shown.contains("alice@example.com"),
                "{shown}"
            );
            assert!(
                !shown.contains("493817") && !shown.contains("0123456789abcdef"),
                "{shown}"
            );
        }
        assert!(format!("{:?}", job(Some(token))).contains("link: [redacted]"));
    }

    #[test]
    fn a_link_challenges_transaction_is_logged_shortened() {
        let code = job(None);
        assert_eq!(code.logged_tx(), code.tx.to_string());
        let link = job(Some("https://otp.example.com/l/x"));
        let full = link.tx.to_string();
        assert_eq!(link.logged_tx(), format!("{}…", &full[..8]));
        assert!(!format!("{link:?}").contains(&full));
    }
}
