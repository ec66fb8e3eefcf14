//! hash: the threads that check PINs against their argon2 hashes.
//!
//! A check costs about 15 ms of CPU (m=19456 KiB, t=2), a cheap answer a
//! few µs. A fixed number of threads bounds both the CPU PIN requests can take
//! from the cheap answers and the memory argon2 takes (19 MiB each); PIN
//! requests beyond them queue here.
//!
//! The threads run at nice 5. A hash never sleeps, so once the kernel picks
//! it, a cheap answer that is ready to run waits for the next scheduler tick
//! (4 ms at HZ=250); at nice 5 the kernel picks the hash far less often while
//! answers are waiting, yet it still gets about a quarter of a CPU against a
//! busy process of normal priority. SCHED_IDLE, tried before, gave it none
//! of that: any other load on the machine starved logins.
//! Nothing here logs a PIN.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// The nice value of the hash threads (the answering threads keep 0).
const HASH_NICE: i32 = 5;

/// One worker: checks PINs until the pool is gone.
fn work(queue: &Mutex<mpsc::Receiver<Job>>, warned: &AtomicBool) {
    if let Err(e) = lower_priority() {
        if !warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %e, "PIN hashes run at the same CPU priority as answers (cannot renice them): an answer may wait up to a scheduler tick behind a hash");
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

/// Sets this thread's nice value to [`HASH_NICE`]. On Linux, nice is a
/// property of the thread, so only the calling thread changes.
fn lower_priority() -> std::io::Result<()> {
    // SAFETY: setpriority takes plain integers and touches no memory of ours;
    // `who` 0 is the calling thread. Raising one's own nice value needs no
    // privilege.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, HASH_NICE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
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

    #[tokio::test]
    async fn hash_threads_run_at_their_nice_value() {
        let pool = HashPool::new(2);
        let hash: Arc<str> = Arc::from(super::super::hash_pin(b"4711"));
        // A job done means at least one thread is past its set-up.
        assert!(pool.verify(hash, b"4711").await.unwrap().0);
        let mut nice = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let dir = task.unwrap().path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if comm.starts_with("pin-hash-") {
                // Field 19 of stat is nice; the fields after the `(comm)` start at 3.
                let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
                let after_comm = stat.rsplit_once(')').unwrap().1;
                nice.push(after_comm.split_whitespace().nth(16).unwrap().parse::<i32>().unwrap());
            }
        }
        assert!(nice.contains(&HASH_NICE), "nice values of pin-hash threads: {nice:?}");
    }
}
