//! memory: bytes per open challenge, measured in-process through the
//! library's own `MemoryStore`: open `users × 5` challenges and divide the
//! growth of this process's resident set by their number. The server keeps
//! challenges in exactly this store, so the figure is what a server pays per
//! challenge, user names and indexes included.

use std::time::Duration;

use mailotp::challenge::{
    ChallengeSettings, ChallengeStore, MemoryStore, NewChallenge, Origin, Transaction, MAX_OPEN_PER_USER,
};
use mailotp::lifecycle::Lifecycle;
use mailotp::limits::{Lockout, MemoryLimiter, Throttling};
use mailotp::otp::Otp;

/// How long the benchmark's challenges stay valid.
const VALIDITY: Duration = Duration::from_secs(3600);

/// Resident set of this process now, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Opens `total` challenges (`MAX_OPEN_PER_USER` per user); returns bytes
/// per open challenge and the store's count.
pub fn bytes_per_challenge(total: usize) -> (f64, usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let life = Lifecycle::new(Duration::ZERO);
        let settings = ChallengeSettings {
            validity: VALIDITY,
            blocking: Duration::ZERO,
            max_attempts: 3,
        };
        // No throttles (the default): opening counts nothing beside the store.
        let lockout = Lockout {
            after: 0,
            duration: Duration::ZERO,
        };
        let limits = MemoryLimiter::start(Throttling::default(), lockout, &life);
        let before = rss_kib();
        let store = MemoryStore::start(settings, limits, &life);
        let origin = Origin::Station("198.51.100.7".to_owned());
        for i in 0..total {
            let user = format!("user-{}", i / MAX_OPEN_PER_USER);
            let code = Otp::generate(6);
            let new = NewChallenge {
                tx: Transaction::random(),
                code: &code,
                link: None,
                validity: VALIDITY,
                max_attempts: 3,
                policy: None,
                deny: None,
                mail: None,
            };
            store
                .open(&user, &origin, new, None)
                .await
                .expect("the memory store always answers");
        }
        let grown = rss_kib().saturating_sub(before);
        let open = store.open_count();
        life.stop();
        (grown as f64 * 1024.0 / open.max(1) as f64, open)
    })
}
