//! The delivery worker against a scripted provider and an outbox that
//! records the outcomes it is told, in paused time.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio_util::task::TaskTracker;

use super::*;
use crate::challenge::Transaction;
use crate::config::Config;
use crate::mail::outbox::MemoryOutbox;
use crate::mail::tests::job;

/// Answers each send with the next scripted result (then success), and
/// counts the sends.
#[derive(Default)]
struct Scripted {
    answers: Mutex<VecDeque<Result<(), MailError>>>,
    sends: AtomicU64,
}

#[async_trait]
impl MailProvider for Scripted {
    async fn send(&self, _message: Message) -> Result<String, MailError> {
        self.sends.fetch_add(1, Ordering::Relaxed);
        let answer = self.answers.lock().unwrap().pop_front().unwrap_or(Ok(()));
        answer.map(|()| "250 OK".to_owned())
    }

    async fn check_connection(&self) -> Result<(), MailError> {
        Ok(())
    }
}

/// A memory outbox that remembers every report.
#[derive(Debug)]
struct Recording {
    inner: MemoryOutbox,
    reports: Mutex<Vec<(Transaction, Outcome)>>,
}

#[async_trait]
impl Outbox for Recording {
    async fn enqueue(&self, job: MailJob) -> Result<(), MailError> {
        self.inner.enqueue(job).await
    }
    async fn take(&self) -> MailJob {
        self.inner.take().await
    }
    fn take_ready(&self) -> Option<MailJob> {
        self.inner.take_ready()
    }
    async fn report(&self, job: &MailJob, outcome: Outcome) {
        self.reports.lock().unwrap().push((job.tx, outcome));
        self.inner.report(job, outcome).await;
    }
    fn pending(&self) -> usize {
        self.inner.pending()
    }
}

struct Running {
    outbox: Arc<Recording>,
    provider: Arc<Scripted>,
    stats: Arc<MailStats>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

fn start(answers: Vec<Result<(), MailError>>) -> Running {
    let config = Config::embedded().unwrap();
    let outbox = Arc::new(Recording {
        inner: MemoryOutbox::new(10),
        reports: Mutex::default(),
    });
    let provider = Arc::new(Scripted {
        answers: Mutex::new(answers.into()),
        ..Scripted::default()
    });
    let stats = Arc::new(MailStats::default());
    let worker = Delivery {
        outbox: outbox.clone(),
        provider: provider.clone(),
        renderer: Arc::new(ArcSwap::from_pointee(Renderer::new(&config.email))),
        stats: stats.clone(),
        log: Arc::default(),
    };
    let (tasks, shutdown) = (TaskTracker::new(), CancellationToken::new());
    tasks.spawn(worker.run(shutdown.clone(), Duration::from_secs(5)));
    Running {
        outbox,
        provider,
        stats,
        tasks,
        shutdown,
    }
}

fn valid_job() -> MailJob {
    let mut job = job(None);
    job.expires = Instant::now() + Duration::from_secs(600);
    job
}

impl Running {
    /// Waits (in paused time) until `n` outcomes were reported.
    async fn reports(&self, n: usize) -> Vec<(Transaction, Outcome)> {
        for _ in 0..10_000 {
            let reports = self.outbox.reports.lock().unwrap().clone();
            if reports.len() >= n {
                return reports;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("fewer than {n} outcomes reported");
    }
}

fn transient() -> Result<(), MailError> {
    Err(MailError::Transient {
        reason: "connection refused".to_owned(),
    })
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_is_retried_and_each_outcome_reported() {
    let run = start(vec![transient(), transient()]);
    let job = valid_job();
    let tx = job.tx;
    run.outbox.enqueue(job).await.unwrap();
    let reports = run.reports(3).await;
    assert_eq!(
        reports,
        [
            (tx, Outcome::RetryLater),
            (tx, Outcome::RetryLater),
            (tx, Outcome::Delivered)
        ]
    );
    assert_eq!(run.provider.sends.load(Ordering::Relaxed), 3);
    assert_eq!(run.stats.sent.load(Ordering::Relaxed), 1);
    assert_eq!(run.stats.failed_attempts.load(Ordering::Relaxed), 2);
    assert_eq!(run.outbox.pending(), 0, "finished with");
}

#[tokio::test(start_paused = true)]
async fn a_refusal_for_good_is_not_retried() {
    let run = start(vec![Err(MailError::Permanent {
        reason: "550 no such user".to_owned(),
    })]);
    let job = valid_job();
    let tx = job.tx;
    run.outbox.enqueue(job).await.unwrap();
    assert_eq!(run.reports(1).await, [(tx, Outcome::FailedForGood)]);
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(run.provider.sends.load(Ordering::Relaxed), 1, "no retry");
    assert_eq!(run.stats.dropped.load(Ordering::Relaxed), 1);
    assert_eq!(run.outbox.pending(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_mail_whose_challenge_expired_while_queued_is_not_sent() {
    let run = start(vec![]);
    let expired = job(None);
    let tx = expired.tx;
    run.outbox.enqueue(expired).await.unwrap();
    assert_eq!(run.reports(1).await, [(tx, Outcome::Expired)]);
    assert_eq!(run.provider.sends.load(Ordering::Relaxed), 0);
    assert_eq!(run.stats.dropped.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn retries_stop_when_the_next_would_fall_after_the_challenge_expires() {
    let run = start(vec![transient(), transient(), transient()]);
    let mut job = job(None);
    job.expires = Instant::now() + Duration::from_millis(2500);
    let tx = job.tx;
    run.outbox.enqueue(job).await.unwrap();
    // Tries at 0 s and 1 s (backoff 1 s, then 2 s): the third would come at
    // 3 s, after the challenge's end.
    assert_eq!(
        run.reports(2).await,
        [(tx, Outcome::RetryLater), (tx, Outcome::Expired)]
    );
    assert_eq!(run.provider.sends.load(Ordering::Relaxed), 2);
}

#[tokio::test(start_paused = true)]
async fn mails_taken_before_shutdown_go_out_within_the_grace() {
    let run = start(vec![]);
    for _ in 0..3 {
        run.outbox.enqueue(valid_job()).await.unwrap();
    }
    run.shutdown.cancel();
    run.tasks.close();
    run.tasks.wait().await;
    assert_eq!(run.stats.sent.load(Ordering::Relaxed), 3);
    assert_eq!(run.outbox.pending(), 0);
}
