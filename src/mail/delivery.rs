//! delivery: the one worker that takes jobs from an [`Outbox`], renders
//! them, hands them to the [`MailProvider`] a few at a time, retries
//! transient failures with backoff while the challenge is valid, and reports
//! each outcome back to the outbox. It keeps the mail counters. It never
//! logs a code or a link, and it is never awaited by the request path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::Message;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::time::DelayQueue;

use super::outbox::{Outbox, Outcome};
use super::provider::MailProvider;
use super::status::{now_unix, Delivery as Recorded, DeliveryEntry, DeliveryLogSlot};
use super::template::{rfc3339, Values};
use super::{MailError, MailJob};
use crate::config::{EmailConfig, Wording};

/// Messages handed to the provider at once.
const PARALLEL_SENDS: usize = 8;
/// First retry delay; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Mail counters for metrics.
#[derive(Debug, Default)]
pub(crate) struct MailStats {
    /// Mails the provider accepted.
    pub sent: AtomicU64,
    /// Failed attempts (each retry counts).
    pub failed_attempts: AtomicU64,
    /// Mails given up: refused for good or expired undelivered.
    pub dropped: AtomicU64,
}

/// Renders jobs into messages.
pub(super) struct Renderer {
    from: Mailbox,
    wording: Arc<Wording>,
    timezone: jiff::tz::TimeZone,
    minutes: u64,
}

impl Renderer {
    pub(super) fn new(config: &EmailConfig) -> Renderer {
        Renderer {
            from: config.from.clone(),
            wording: Arc::clone(&config.wording),
            timezone: config.timezone.clone(),
            minutes: config.challenge_validity.as_secs().div_ceil(60),
        }
    }

    fn render(&self, job: &MailJob) -> Result<Message, MailError> {
        let (time, expires) = (
            rfc3339(job.asked.at_unix, &self.timezone),
            rfc3339(job.asked.until_unix, &self.timezone),
        );
        let values = Values {
            otp: job.otp.expose(),
            user: &job.user,
            minutes: self.minutes,
            link: job.link.as_deref().map_or("", String::as_str),
            client_ip: job.asked.client_ip.as_deref().unwrap_or("unknown"),
            nas: &job.asked.nas,
            time: &time,
            expires: &expires,
            deny_link: job.deny_link.as_deref().map_or("", String::as_str),
        };
        let templates = self.wording.templates(job.language.as_deref());
        let (subject, text, html) = templates.render(&values);
        let builder = Message::builder()
            .from(self.from.clone())
            .to(job.to.clone())
            .subject(subject)
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

/// The delivery worker of one instance.
pub(super) struct Delivery {
    pub(super) outbox: Arc<dyn Outbox>,
    pub(super) provider: Arc<dyn MailProvider>,
    pub(super) renderer: Arc<ArcSwap<Renderer>>,
    pub(super) stats: Arc<MailStats>,
    /// Where each try's outcome is recorded for `ctl status`, once set.
    pub(super) log: DeliveryLogSlot,
}

/// A job with how often it was tried and how long to wait before the next.
struct Attempt {
    job: MailJob,
    tries: u32,
    backoff: Duration,
}

impl Attempt {
    fn first(job: MailJob) -> Attempt {
        Attempt {
            job,
            tries: 0,
            backoff: FIRST_BACKOFF,
        }
    }
}

/// One attempt done: its outcome (already reported) and the provider's error.
type Tried = (Attempt, Outcome, Option<MailError>);

impl Delivery {
    /// Delivers until `shutdown`, then gives the jobs already taken `grace`
    /// to go out, a few at a time as usual; retries that fall due later are
    /// not waited for.
    pub(super) async fn run(self, shutdown: CancellationToken, grace: Duration) {
        let mut retries: DelayQueue<Attempt> = DelayQueue::new();
        let mut sending: JoinSet<Tried> = JoinSet::new();
        loop {
            let room = sending.len() < PARALLEL_SENDS;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                job = self.outbox.take(), if room => self.deliver(&mut sending, Attempt::first(job)),
                Some(due) = std::future::poll_fn(|cx| retries.poll_expired(cx)), if room && !retries.is_empty() => {
                    self.deliver(&mut sending, due.into_inner());
                }
                Some(done) = sending.join_next() => {
                    if let Ok(tried) = done {
                        self.finish(tried, &mut retries);
                    }
                }
            }
        }
        let drained = tokio::time::timeout(grace, async {
            loop {
                while sending.len() < PARALLEL_SENDS {
                    let Some(job) = self.outbox.take_ready() else { break };
                    self.deliver(&mut sending, Attempt::first(job));
                }
                match sending.join_next().await {
                    Some(Ok(tried)) => self.finish(tried, &mut retries),
                    Some(Err(_)) => {}
                    None => break,
                }
            }
        })
        .await;
        let left = self.outbox.pending();
        if drained.is_err() || left > 0 {
            tracing::warn!(undelivered = left, "mail delivery stopped with mails undelivered");
        }
    }

    /// Renders and sends one attempt in the background, then reports its
    /// outcome to the outbox; a job whose challenge expired is not sent.
    fn deliver(&self, sending: &mut JoinSet<Tried>, mut attempt: Attempt) {
        let (outbox, provider) = (Arc::clone(&self.outbox), Arc::clone(&self.provider));
        let renderer = self.renderer.load_full();
        let log = Arc::clone(&self.log);
        sending.spawn(async move {
            let (outcome, error, reply) = if attempt.job.expires <= Instant::now() {
                (Outcome::Expired, None, None)
            } else {
                attempt.tries += 1;
                let sent = match renderer.render(&attempt.job) {
                    Ok(message) => provider.send(message).await,
                    Err(e) => Err(e),
                };
                let reply = sent.as_ref().ok().cloned();
                let (outcome, error) = judge(&attempt, sent.map(|_| ()));
                (outcome, error, reply)
            };
            outbox.report(&attempt.job, outcome).await;
            if let Some(log) = log.get() {
                let recorded = recorded(outcome, error.as_ref(), reply, attempt.tries);
                let keep = attempt.job.expires.saturating_duration_since(Instant::now());
                let entry = DeliveryEntry {
                    opened_unix: attempt.job.asked.at_unix,
                    delivery: recorded,
                };
                log.record(attempt.job.tx, entry, keep).await;
            }
            (attempt, outcome, error)
        });
    }

    /// Counts and logs an attempt's outcome, and schedules its retry.
    fn finish(&self, (mut attempt, outcome, error): Tried, retries: &mut DelayQueue<Attempt>) {
        let job = &attempt.job;
        let (tx, tries) = (job.logged_tx(), attempt.tries);
        if error.is_some() {
            self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
        }
        if matches!(outcome, Outcome::FailedForGood | Outcome::Expired) {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        match (outcome, error) {
            (Outcome::Delivered, _) => {
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
                tracing::info!(user = %job.user, to = %job.to.email, %tx, tries, "mail sent");
            }
            (Outcome::RetryLater, error) => {
                let reason = error.as_ref().map(provider_words).unwrap_or_default();
                tracing::warn!(user = %job.user, to = %job.to.email, %tx, tries,
                    retry_in_s = attempt.backoff.as_secs(), %reason, "mail delivery failed, will retry");
                let wait = attempt.backoff;
                attempt.backoff = (attempt.backoff * 2).min(MAX_BACKOFF);
                retries.insert(attempt, wait);
            }
            (Outcome::Expired, None) => {
                tracing::warn!(user = %job.user, tx = %tx, "mail dropped: its challenge expired while queued");
            }
            (Outcome::Expired, Some(error)) => {
                let reason = provider_words(&error);
                tracing::error!(user = %job.user, to = %job.to.email, %tx, tries, %reason,
                    "mail dropped: its challenge expires before the next try");
            }
            (Outcome::FailedForGood, error) => {
                let error = error.map(|e| e.to_string()).unwrap_or_default();
                tracing::error!(user = %job.user, to = %job.to.email, %tx, %error, "mail dropped");
            }
        }
    }
}

/// An attempt's outcome as `ctl status` shows it.
fn recorded(outcome: Outcome, error: Option<&MailError>, reply: Option<String>, tries: u32) -> Recorded {
    let at_unix = now_unix();
    let words = error.map(provider_words).unwrap_or_default();
    match outcome {
        Outcome::Delivered => Recorded::Relayed {
            reply: reply.unwrap_or_default(),
            at_unix,
        },
        Outcome::RetryLater => Recorded::Retrying {
            error: words,
            tries,
            at_unix,
        },
        Outcome::Expired if error.is_none() => Recorded::Failed {
            error: "the challenge expired while the mail was queued".to_owned(),
            at_unix,
        },
        _ => Recorded::Failed { error: words, at_unix },
    }
}

/// What the provider said about a transient failure, as the log shows it.
fn provider_words(error: &MailError) -> String {
    match error {
        MailError::Transient { reason } => reason.clone(),
        other => other.to_string(),
    }
}

/// The outcome of a send: a transient failure is retried only if the retry
/// falls before the challenge expires.
fn judge(attempt: &Attempt, sent: Result<(), MailError>) -> (Outcome, Option<MailError>) {
    match sent {
        Ok(()) => (Outcome::Delivered, None),
        Err(MailError::Transient { reason }) => {
            let retry = Instant::now() + attempt.backoff < attempt.job.expires;
            let outcome = if retry { Outcome::RetryLater } else { Outcome::Expired };
            (outcome, Some(MailError::Transient { reason }))
        }
        Err(e) => (Outcome::FailedForGood, Some(e)),
    }
}

#[cfg(test)]
mod tests;
