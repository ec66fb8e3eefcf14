//! hash: the threads that check PINs against their argon2 hashes.
//!
//! A check costs about 15 ms of CPU (m=19456 KiB, t=2), a cheap answer a
//! few µs. A fixed number of threads bounds both the CPU PIN requests can take
//! from the cheap answers and the memory argon2 takes: each thread keeps one
//! argon2 memory block (19 MiB at that cost) and reuses it for every check,
//! so memory stays at threads × m_cost however many PINs come (allocating it
//! afresh per check left the allocator holding hundreds of MiB).
//!
//! PIN requests beyond the threads wait here in one lane per RADIUS client
//! (the [`PIN_LANE`] the caller runs under), and the threads take the lanes
//! in turn: a flood from one NAS waits behind itself, not in front of other
//! NASes' users. How many may wait is bounded per client by `server`.
//!
//! The threads run at nice 5. A hash never sleeps, so once the kernel picks
//! it, a cheap answer that is ready to run waits for the next scheduler tick
//! (4 ms at HZ=250); at nice 5 the kernel picks the hash far less often while
//! answers are waiting, yet it still gets about a quarter of a CPU against a
//! busy process of normal priority. SCHED_IDLE, tried before, gave it none
//! of that: any other load on the machine starved logins.
//! Nothing here logs a PIN.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;
use zeroize::Zeroizing;

use super::DirectoryError;

tokio::task_local! {
    /// The RADIUS client a PIN check is made for (its `name`): `server` runs
    /// each request under it, and the hash threads take turns between these
    /// lanes. Checks made outside it (`check`, tests) share one lane.
    pub static PIN_LANE: Arc<str>;
}

/// Checks PINs on `workers` threads of its own; clones share them, and the
/// threads end when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct HashThreads {
    queue: Arc<Closer>,
    stats: Arc<HashStats>,
}

/// What the hash threads did, for metrics.
#[derive(Debug, Default)]
pub struct HashStats {
    /// PIN hashes computed.
    pub hashes: AtomicU64,
    /// Microseconds requests waited for a free worker, summed.
    pub wait_micros: AtomicU64,
}

struct Job {
    hash: Arc<str>,
    pin: Zeroizing<Vec<u8>>,
    queued: Instant,
    /// Whether the PIN matched, and how long the job waited for a thread.
    reply: oneshot::Sender<(bool, Duration)>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash stays out too: with it a PIN can be guessed offline.
        f.debug_struct("Job")
            .field("pin", &"[redacted]")
            .field("queued", &self.queued)
            .finish_non_exhaustive()
    }
}

/// Jobs waiting for a thread, one lane per client; a lane with jobs left
/// goes to the back after each job taken, so the lanes are served in turn.
#[derive(Debug, Default)]
struct Lanes {
    waiting: VecDeque<(Arc<str>, VecDeque<Job>)>,
    closed: bool,
}

impl Lanes {
    fn push(&mut self, lane: Arc<str>, job: Job) {
        // Lanes with jobs are few (one per busy client): a scan is enough.
        match self.waiting.iter_mut().find(|(name, _)| *name == lane) {
            Some((_, jobs)) => jobs.push_back(job),
            None => self.waiting.push_back((lane, VecDeque::from([job]))),
        }
    }

    fn pop(&mut self) -> Option<Job> {
        let (lane, mut jobs) = self.waiting.pop_front()?;
        let job = jobs.pop_front();
        if !jobs.is_empty() {
            self.waiting.push_back((lane, jobs));
        }
        job
    }
}

/// The lanes and the signal that a job is waiting.
#[derive(Debug, Default)]
struct Queue {
    lanes: Mutex<Lanes>,
    ready: Condvar,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Lanes> {
        self.lanes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `job` in `lane`; gives it back when the queue is closed.
    fn push(&self, lane: Arc<str>, job: Job) -> Result<(), Job> {
        let mut lanes = self.lock();
        if lanes.closed {
            return Err(job);
        }
        lanes.push(lane, job);
        drop(lanes);
        self.ready.notify_one();
        Ok(())
    }

    /// The next job in turn, waiting for one; `None` once the queue is closed.
    fn next(&self) -> Option<Job> {
        let mut lanes = self.lock();
        loop {
            if lanes.closed {
                return None;
            }
            if let Some(job) = lanes.pop() {
                return Some(job);
            }
            lanes = self.ready.wait(lanes).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

/// Held by the handle's clones only (the threads hold the queue itself): the
/// last clone dropped closes the queue and ends the threads.
#[derive(Debug)]
struct Closer(Arc<Queue>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl HashThreads {
    /// `workers` threads.
    pub fn new(workers: usize) -> HashThreads {
        let queue = Arc::new(Queue::default());
        let warned = Arc::new(AtomicBool::new(false));
        for n in 0..workers.max(1) {
            let (queue, warned) = (Arc::clone(&queue), Arc::clone(&warned));
            std::thread::Builder::new()
                .name(format!("pin-hash-{n}"))
                .spawn(move || work(&queue, &warned))
                .expect("a thread for PIN hashes");
        }
        HashThreads {
            queue: Arc::new(Closer(queue)),
            stats: Arc::default(),
        }
    }

    /// Its counters.
    pub fn stats(&self) -> &HashStats {
        &self.stats
    }

    /// Whether `pin` matches the PHC hash string; also how long it waited
    /// for a worker, for metrics. Queued in the lane of the [`PIN_LANE`]
    /// this runs under.
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
        let lane = PIN_LANE.try_with(Arc::clone).unwrap_or_else(|_| Arc::from(""));
        self.queue.0.push(lane, job).map_err(|_| gone())?;
        let (ok, waited) = answer.await.map_err(|_| gone())?;
        self.stats.hashes.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        self.stats.wait_micros.fetch_add(micros, Ordering::Relaxed);
        Ok((ok, waited))
    }
}

/// The nice value of the hash threads (the answering threads keep 0).
const HASH_NICE: i32 = 5;

/// One worker: checks PINs until the handle is gone, in one memory block of
/// its own that grows to the largest m_cost it meets and is then reused.
fn work(queue: &Queue, warned: &AtomicBool) {
    if let Err(e) = lower_priority() {
        if !warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %e, "PIN hashes run at the same CPU priority as answers (cannot renice them): an answer may wait up to a scheduler tick behind a hash");
        }
    }
    let mut memory = Vec::new();
    while let Some(job) = queue.next() {
        let waited = job.queued.elapsed();
        let ok = matches(&job.hash, &job.pin, &mut memory);
        // The request may have been given up on; nobody to tell then.
        let _ = job.reply.send((ok, waited));
    }
}

/// Whether `pin` hashes to the PHC string `hash`, computed in `memory`
/// (grown when the hash's m_cost needs more). What `verify_password` does,
/// without its allocation per call; the outputs are compared in constant time.
fn matches(hash: &str, pin: &[u8], memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let algorithm = Algorithm::try_from(parsed.algorithm);
    let version = parsed.version.map_or(Ok(Version::default()), Version::try_from);
    let (Ok(algorithm), Ok(version), Ok(params)) = (algorithm, version, Params::try_from(&parsed)) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::default());
    }
    let mut out = Zeroizing::new(vec![0u8; expected.len()]);
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(pin, salt, &mut out, &mut memory[..])
        .is_ok()
        && bool::from(out.ct_eq(expected.as_bytes()))
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
        let threads = HashThreads::new(1);
        let hash: Arc<str> = Arc::from(super::super::hash_pin(b"4711"));
        assert!(threads.verify(Arc::clone(&hash), b"4711").await.unwrap().0);
        assert!(!threads.verify(Arc::clone(&hash), b"4712").await.unwrap().0);
        assert!(!threads.verify(Arc::from("not a hash"), b"4711").await.unwrap().0);
        assert_eq!(threads.stats().hashes.load(Ordering::Relaxed), 3);
    }

    fn job(pin: &[u8]) -> Job {
        Job {
            hash: Arc::from("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA"),
            pin: Zeroizing::new(pin.to_vec()),
            queued: Instant::now(),
            reply: oneshot::channel().0,
        }
    }

    #[test]
    fn the_debug_form_of_a_job_hides_the_pin() {
        let shown = format!("{:?}", job(b"pin-8812"));
        assert!(shown.contains("[redacted]"), "{shown}");
        assert!(!shown.contains("pin-8812"), "{shown}");
        assert!(!shown.contains("56, 56, 49, 50"), "no bytes of the PIN either: {shown}");
        assert!(!shown.contains("argon2"), "nor its hash: {shown}");
    }

    #[test]
    fn lanes_are_served_in_turn() {
        let mut lanes = Lanes::default();
        let (flood, nas): (Arc<str>, Arc<str>) = (Arc::from("flood"), Arc::from("nas"));
        for pin in [b"f1", b"f2", b"f3"] {
            lanes.push(Arc::clone(&flood), job(pin));
        }
        lanes.push(Arc::clone(&nas), job(b"n1"));
        let order: Vec<Vec<u8>> = std::iter::from_fn(|| lanes.pop()).map(|j| j.pin.to_vec()).collect();
        assert_eq!(order, [&b"f1"[..], b"n1", b"f2", b"f3"]);
    }

    #[test]
    fn one_reused_block_checks_hashes_of_any_cost() {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let hash_with = |m: u32, t: u32| {
            let params = Params::new(m, t, 1, None).unwrap();
            let salt = SaltString::encode_b64(b"sixteen byte salt").unwrap();
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password(b"4711", &salt)
                .unwrap()
                .to_string()
        };
        let mut memory = Vec::new();
        // Small, then the production cost (the block grows), then small
        // again in the larger block: each as argon2's own verify says.
        for hash in [hash_with(64, 1), super::super::hash_pin(b"4711"), hash_with(32, 3)] {
            assert!(matches(&hash, b"4711", &mut memory), "{hash}");
            assert!(!matches(&hash, b"4712", &mut memory), "{hash}");
        }
        assert_eq!(memory.len(), Params::DEFAULT_M_COST as usize);
        assert!(!matches("not a hash", b"4711", &mut memory));
    }

    #[tokio::test]
    async fn hash_threads_run_at_their_nice_value() {
        let threads = HashThreads::new(2);
        let hash: Arc<str> = Arc::from(super::super::hash_pin(b"4711"));
        // A job done means at least one thread is past its set-up.
        assert!(threads.verify(hash, b"4711").await.unwrap().0);
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
