//! mail: the delivery queue between `auth` and the mail provider.
//!
//! `auth` only calls [`MailQueue::enqueue`], which never waits: the RADIUS
//! answer goes out before the mail. A background task renders each job and
//! hands it to the provider, a few at a time, and retries transient failures
//! with backoff while the challenge is still valid, so an SMTP outage delays
//! mail but loses none. The queue is bounded: when it is full, `enqueue` says
//! so and the request is rejected instead of memory growing. Codes and links
//! are never logged; recipients are, and transaction ids (a link's shortened).

pub mod provider;
pub mod template;

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::Message;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::time::DelayQueue;

use crate::challenge::Transaction;
use crate::config::{ConfigError, EmailConfig};
use crate::otp::Otp;
use provider::MailProvider;
use template::{Templates, Values};

/// Messages handed to the provider at once.
const PARALLEL_SENDS: usize = 8;
/// First retry delay; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why a mail was not sent.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MailError {
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

/// A queue shared by the instances of a pool (Redis): [`MailQueue::enqueue`]
/// hands jobs to it, and it feeds them back to one instance's
/// [`MailQueue::deliver`].
#[async_trait]
pub trait SharedQueue: Send + Sync + fmt::Debug + 'static {
    /// Stores a job for whichever instance takes it first.
    async fn push(&self, job: MailJob) -> Result<(), MailError>;
}

/// One e-mail to send: a challenge's code for a user. Its Debug shows
/// neither the code nor the link, and the transaction as logs show it.
pub struct MailJob {
    /// Recipient.
    pub to: Mailbox,
    /// User name, for the body and the log.
    pub user: String,
    /// The code.
    pub otp: Otp,
    /// The confirmation link (link delivery).
    pub link: Option<zeroize::Zeroizing<String>>,
    /// The challenge it belongs to, for the log.
    pub tx: Transaction,
    /// When the challenge expires; a mail still undelivered then is dropped.
    pub expires: Instant,
}

impl MailJob {
    /// The transaction as log lines show it: in full for a code's challenge,
    /// only its first 8 hex digits for a link's, whose State logs the user in
    /// once the link is confirmed (a bearer credential).
    pub fn logged_tx(&self) -> String {
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
            .field("tx", &format_args!("{}", self.logged_tx()))
            .field("expires", &self.expires)
            .finish()
    }
}

/// Mail counters for metrics.
#[derive(Debug, Default)]
pub struct MailStats {
    /// Mails the provider accepted.
    pub sent: AtomicU64,
    /// Failed attempts (each retry counts).
    pub failed_attempts: AtomicU64,
    /// Mails given up: refused for good or expired undelivered.
    pub dropped: AtomicU64,
}

/// The request path's handle on the queue.
#[derive(Clone)]
pub struct MailQueue {
    shared: Option<Arc<dyn SharedQueue>>,
    sender: mpsc::UnboundedSender<MailJob>,
    pending: Arc<AtomicUsize>,
    limit: usize,
    stats: Arc<MailStats>,
    renderer: Arc<ArcSwap<Renderer>>,
}

impl MailQueue {
    /// Queues a mail without waiting for delivery: in this process, or in
    /// the pool's shared queue. Fails when the queue is full, the delivery
    /// task has stopped, or the shared queue is unreachable.
    pub async fn enqueue(&self, job: MailJob) -> Result<(), MailError> {
        match &self.shared {
            Some(shared) => shared.push(job).await,
            None => self.deliver(job),
        }
    }

    /// Hands a mail to this instance's delivery task (the shared queue's
    /// reader calls this with the jobs it took).
    pub fn deliver(&self, job: MailJob) -> Result<(), MailError> {
        let full = MailError::QueueFull { limit: self.limit };
        if self.pending.fetch_add(1, Ordering::AcqRel) >= self.limit {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(full);
        }
        self.sender.send(job).map_err(|_| {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            full
        })
    }

    /// Mails queued, being sent or waiting for a retry.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Counters of the delivery task.
    pub fn stats(&self) -> &MailStats {
        &self.stats
    }

    /// Takes sender, subject and templates from a reloaded configuration;
    /// mails already queued are rendered with the new ones.
    pub fn update_messages(&self, config: &EmailConfig) {
        self.renderer.store(Arc::new(Renderer::new(config)));
    }
}

impl std::fmt::Debug for MailQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailQueue")
            .field("pending", &self.pending())
            .field("limit", &self.limit)
            .finish()
    }
}

/// Renders jobs into messages.
struct Renderer {
    from: Mailbox,
    subject: String,
    templates: Templates,
    minutes: u64,
}

impl Renderer {
    fn new(config: &EmailConfig) -> Renderer {
        Renderer {
            from: config.from.clone(),
            subject: config.subject.clone(),
            templates: config.templates.clone(),
            minutes: config.challenge_validity.as_secs().div_ceil(60),
        }
    }

    fn render(&self, job: &MailJob) -> Result<Message, MailError> {
        let values = Values {
            otp: job.otp.expose(),
            user: &job.user,
            minutes: self.minutes,
            link: job.link.as_deref().map_or("", String::as_str),
        };
        let (text, html) = self.templates.render(&values);
        let builder = Message::builder()
            .from(self.from.clone())
            .to(job.to.clone())
            .subject(self.subject.clone())
            .message_id(None);
        let text_part = SinglePart::builder().header(ContentType::TEXT_PLAIN).body(text);
        let message = match html {
            None => builder.singlepart(text_part),
            Some(html) => builder.multipart(
                MultiPart::alternative()
                    .singlepart(text_part)
                    .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(html)),
            ),
        };
        message.map_err(|e| MailError::Build { reason: e.to_string() })
    }
}

/// Starts the delivery task on `tasks`; it stops on `shutdown` after giving
/// sends in progress `grace` to finish.
pub fn start(
    config: &EmailConfig,
    grace: Duration,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) -> Result<MailQueue, ConfigError> {
    start_delivery(config, grace, tasks, shutdown, None)
}

/// Like [`start`], for a pool: `enqueue` goes to `shared`, and the
/// transaction of every job this instance finished with (sent or given up)
/// comes out of the returned receiver, so the shared queue can drop it.
pub fn start_shared(
    config: &EmailConfig,
    grace: Duration,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
    shared: Arc<dyn SharedQueue>,
) -> Result<(MailQueue, mpsc::UnboundedReceiver<Transaction>), ConfigError> {
    let (finished, done) = mpsc::unbounded_channel();
    let mut queue = start_delivery(config, grace, tasks, shutdown, Some(finished))?;
    queue.shared = Some(shared);
    Ok((queue, done))
}

fn start_delivery(
    config: &EmailConfig,
    grace: Duration,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
    finished: Option<mpsc::UnboundedSender<Transaction>>,
) -> Result<MailQueue, ConfigError> {
    let provider: Arc<dyn MailProvider> = Arc::from(provider::build(&config.provider)?);
    let (sender, receiver) = mpsc::unbounded_channel();
    let queue = MailQueue {
        shared: None,
        sender,
        pending: Arc::new(AtomicUsize::new(0)),
        limit: config.queue_limit,
        stats: Arc::new(MailStats::default()),
        renderer: Arc::new(ArcSwap::from_pointee(Renderer::new(config))),
    };
    let worker = Delivery {
        provider,
        renderer: Arc::clone(&queue.renderer),
        pending: Arc::clone(&queue.pending),
        stats: Arc::clone(&queue.stats),
        finished,
    };
    tasks.spawn(worker.run(receiver, shutdown, grace));
    Ok(queue)
}

struct Delivery {
    provider: Arc<dyn MailProvider>,
    renderer: Arc<ArcSwap<Renderer>>,
    pending: Arc<AtomicUsize>,
    stats: Arc<MailStats>,
    finished: Option<mpsc::UnboundedSender<Transaction>>,
}

/// A job with how often it was tried and how long to wait before the next.
struct Attempt {
    job: MailJob,
    tries: u32,
    backoff: Duration,
}

impl Delivery {
    async fn run(self, mut receiver: mpsc::UnboundedReceiver<MailJob>, shutdown: CancellationToken, grace: Duration) {
        let mut retries: DelayQueue<Attempt> = DelayQueue::new();
        let mut sending: JoinSet<(Attempt, Result<(), MailError>)> = JoinSet::new();
        loop {
            let room = sending.len() < PARALLEL_SENDS;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(job) = receiver.recv(), if room => {
                    self.spawn_send(&mut sending, Attempt { job, tries: 0, backoff: FIRST_BACKOFF });
                }
                Some(expired) = std::future::poll_fn(|cx| retries.poll_expired(cx)), if room && !retries.is_empty() => {
                    self.spawn_send(&mut sending, expired.into_inner());
                }
                Some(done) = sending.join_next() => {
                    if let Ok((attempt, result)) = done {
                        self.finish(attempt, result, &mut retries);
                    }
                }
            }
        }
        // Stopping: the mails already queued get `grace` to go out too, a few
        // at a time as usual; retries that fall due later are not waited for.
        let drained = tokio::time::timeout(grace, async {
            loop {
                while sending.len() < PARALLEL_SENDS {
                    let Ok(job) = receiver.try_recv() else { break };
                    self.spawn_send(
                        &mut sending,
                        Attempt {
                            job,
                            tries: 0,
                            backoff: FIRST_BACKOFF,
                        },
                    );
                }
                match sending.join_next().await {
                    Some(Ok((attempt, result))) => self.finish(attempt, result, &mut retries),
                    Some(Err(_)) => {}
                    None => break,
                }
            }
        })
        .await;
        let left = self.pending.load(Ordering::Acquire);
        if drained.is_err() || left > 0 {
            tracing::warn!(undelivered = left, "mail delivery stopped with mails undelivered");
        }
    }

    fn spawn_send(&self, sending: &mut JoinSet<(Attempt, Result<(), MailError>)>, mut attempt: Attempt) {
        let provider = Arc::clone(&self.provider);
        let renderer = self.renderer.load_full();
        attempt.tries += 1;
        sending.spawn(async move {
            let result = match renderer.render(&attempt.job) {
                Ok(message) => provider.send(message).await,
                Err(e) => Err(e),
            };
            (attempt, result)
        });
    }

    fn finish(&self, mut attempt: Attempt, result: Result<(), MailError>, retries: &mut DelayQueue<Attempt>) {
        let job = &attempt.job;
        let tx = job.logged_tx();
        match result {
            Ok(()) => {
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
                tracing::info!(user = %job.user, to = %job.to.email, %tx, tries = attempt.tries, "mail sent");
            }
            Err(MailError::Transient { reason }) => {
                self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                let next = Instant::now() + attempt.backoff;
                if next < job.expires {
                    tracing::warn!(user = %job.user, to = %job.to.email, %tx, tries = attempt.tries,
                        retry_in_s = attempt.backoff.as_secs(), %reason, "mail delivery failed, will retry");
                    let wait = attempt.backoff;
                    attempt.backoff = (attempt.backoff * 2).min(MAX_BACKOFF);
                    retries.insert(attempt, wait);
                    return;
                }
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!(user = %job.user, to = %job.to.email, %tx, tries = attempt.tries, %reason,
                    "mail dropped: its challenge expires before the next try");
            }
            Err(e) => {
                self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!(user = %job.user, to = %job.to.email, %tx, error = %e, "mail dropped");
            }
        }
        if let Some(finished) = &self.finished {
            let _ = finished.send(job.tx);
        }
        self.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(link: Option<&str>) -> MailJob {
        MailJob {
            to: "alice@example.com".parse().unwrap(),
            user: "alice".to_owned(),
            otp: Otp::from_value(493_817, 6),
            link: link.map(|l| zeroize::Zeroizing::new(l.to_owned())),
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
