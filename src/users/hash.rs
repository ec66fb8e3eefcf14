//! hash: the threads that check PINs against their argon2 hashes.
//!
//! A check costs about 30 ms of CPU (m=19456 KiB, t=2), a cheap answer about
//! 10 µs. The pool's threads ask for the lowest CPU priority (`SCHED_IDLE`),
//! so a storm of PIN requests runs on whatever CPU the cheap answers
//! (challenge answers, Status-Server) leave over: they preempt a hash at once
//! instead of waiting for its time slice, and PIN requests queue here. A fixed
//! number of threads also bounds the memory argon2 takes (19 MiB each).
//! Nothing here logs a PIN.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use argon2::Argon2;
use thread_priority::{NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy};
use tokio::sync::oneshot;
use zeroize::Zeroizing;

use super::DirectoryError;

/// Checks PINs on `workers` threads of its own; clones share them, and the
/// threads end when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct HashPool {
    jobs: mpsc::Sender<Job>,
    stats: Arc<HashStats>,
}

/// What the hash pool did, for metrics.
#[derive(Debug, Default)]
pub struct HashStats {
    /// PIN hashes computed.
    pub hashes: AtomicU64,
    /// Microseconds requests waited for a free worker, summed.
    pub wait_micros: AtomicU64,
}

#[derive(Debug)]
struct Job {
    hash: Arc<str>,
    pin: Zeroizing<Vec<u8>>,
    queued: Instant,
    /// Whether the PIN matched, and how long the job waited for a thread.
    reply: oneshot::Sender<(bool, Duration)>,
}

impl HashPool {
    /// A pool of `workers` threads.
    pub fn new(workers: usize) -> HashPool {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let warned = Arc::new(AtomicBool::new(false));
        for n in 0..workers.max(1) {
            let (queue, warned) = (Arc::clone(&queue), Arc::clone(&warned));
            std::thread::Builder::new()
                .name(format!("pin-hash-{n}"))
                .spawn(move || work(&queue, &warned))
                .expect("a thread for PIN hashes");
        }
        HashPool {
            jobs,
            stats: Arc::default(),
        }
    }

    /// Its counters.
    pub fn stats(&self) -> &HashStats {
        &self.stats
    }

    /// Whether `pin` matches the PHC hash string; also how long it waited
    /// for a worker, for metrics.
    pub async fn verify(&self, hash: Arc<str>, pin: &[u8]) -> Result<(bool, Duration), DirectoryError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            hash,
            pin: Zeroizing::new(pin.to_vec()),
            queued: Instant::now(),
            reply,
        };
        let gone = || DirectoryError::Unavailable {
            reason: "the PIN hash threads have stopped".to_owned(),
        };
        self.jobs.send(job).map_err(|_| gone())?;
        let (ok, waited) = answer.await.map_err(|_| gone())?;
        self.stats.hashes.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        self.stats.wait_micros.fetch_add(micros, Ordering::Relaxed);
        Ok((ok, waited))
    }
}

/// One worker: lowers its priority, then checks PINs until the pool is gone.
fn work(queue: &Mutex<mpsc::Receiver<Job>>, warned: &AtomicBool) {
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    if let Err(e) =
        thread_priority::set_thread_priority_and_policy(thread_priority::thread_native_id(), ThreadPriority::Min, idle)
    {
        if !warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = ?e, "PIN hashes run at normal CPU priority (cannot lower it): cheap answers may wait behind them");
        }
    }
    loop {
        // The lock is held only while waiting for the next job.
        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else { return };
        let waited = job.queued.elapsed();
        let ok = PasswordHash::new(&job.hash)
            .is_ok_and(|parsed| Argon2::default().verify_password(&job.pin, &parsed).is_ok());
        // The request may have been given up on; nobody to tell then.
        let _ = job.reply.send((ok, waited));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pin_is_checked_against_its_hash() {
        let pool = HashPool::new(1);
        let hash: Arc<str> = Arc::from(super::super::hash_pin(b"4711"));
        assert!(pool.verify(Arc::clone(&hash), b"4711").await.unwrap().0);
        assert!(!pool.verify(Arc::clone(&hash), b"4712").await.unwrap().0);
        assert!(!pool.verify(Arc::from("not a hash"), b"4711").await.unwrap().0);
        assert_eq!(pool.stats().hashes.load(Ordering::Relaxed), 3);
    }

    /// The scheduling policy of each of this process's threads named
    /// `pin-hash-*` (field 41 of /proc's stat: 5 is SCHED_IDLE).
    fn hash_thread_policies() -> Vec<u32> {
        let mut policies = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let dir = task.unwrap().path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if !comm.starts_with("pin-hash-") {
                continue;
            }
            let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
            let after_name = stat.rsplit(')').next().unwrap_or_default();
            if let Some(policy) = after_name.split_whitespace().nth(41 - 3) {
                policies.push(policy.parse().unwrap());
            }
        }
        policies
    }

    #[test]
    fn the_threads_run_at_idle_priority() {
        const SCHED_IDLE: u32 = 5;
        let _pool = HashPool::new(2);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut policies = hash_thread_policies();
        while !(policies.len() >= 2 && policies.iter().all(|&p| p == SCHED_IDLE)) && Instant::now() < deadline {
            std::thread::yield_now();
            policies = hash_thread_policies();
        }
        assert!(policies.len() >= 2, "{policies:?}");
        assert!(policies.iter().all(|&p| p == SCHED_IDLE), "{policies:?}");
    }
}
