//! hash: the threads that check PINs against their argon2 hashes.
//!
//! A check costs about 30 ms of CPU (m=19456 KiB, t=2), a cheap answer about
//! 10 µs. A fixed number of threads bounds both the CPU PIN requests can take
//! from the cheap answers and the memory argon2 takes (19 MiB each); PIN
//! requests beyond them queue here. The threads keep normal priority: at
//! SCHED_IDLE any other load on the machine starved them.
//! Nothing here logs a PIN.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use argon2::Argon2;
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
        for n in 0..workers.max(1) {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("pin-hash-{n}"))
                .spawn(move || work(&queue))
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

/// One worker: checks PINs until the pool is gone.
fn work(queue: &Mutex<mpsc::Receiver<Job>>) {
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
}
