//! Wrong answers this instance counted per challenge: a floor under the
//! attempts count in Redis, which a Redis writer can reset at will (the
//! scripts update it in place, so it carries no MAC). With it, resetting
//! `a` buys at most `max_attempts` guesses per instance of the pool and
//! challenge, instead of as many as the challenge's validity allows.
//! Bounded in memory; nothing here logs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::challenge::Transaction;

/// Challenges remembered at most; past it, expired ones go, then all (the
/// count in Redis still applies).
const CAPACITY: usize = 65_536;

/// Wrong answers per challenge, each kept until its challenge's validity ends.
#[derive(Default)]
pub(super) struct Attempts {
    seen: Mutex<HashMap<Transaction, (u8, Instant)>>,
}

impl Attempts {
    /// Wrong answers counted here for `tx`.
    pub(super) fn count(&self, tx: &Transaction) -> u8 {
        let seen = self.seen.lock().expect("attempts lock poisoned");
        seen.get(tx)
            .filter(|(_, until)| *until > Instant::now())
            .map_or(0, |(n, _)| *n)
    }

    /// Counts one wrong answer to `tx`, remembered for `validity`; the count.
    pub(super) fn wrong(&self, tx: Transaction, validity: Duration) -> u8 {
        let mut seen = self.seen.lock().expect("attempts lock poisoned");
        let now = Instant::now();
        if seen.len() >= CAPACITY {
            seen.retain(|_, (_, until)| *until > now);
            if seen.len() >= CAPACITY {
                seen.clear();
            }
        }
        let entry = seen.entry(tx).or_insert((0, now + validity));
        entry.0 = entry.0.saturating_add(1);
        entry.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_challenge() {
        let attempts = Attempts::default();
        let (one, other) = (Transaction::random(), Transaction::random());
        assert_eq!(attempts.wrong(one, Duration::from_secs(60)), 1);
        assert_eq!(attempts.wrong(one, Duration::from_secs(60)), 2);
        assert_eq!((attempts.count(&one), attempts.count(&other)), (2, 0));
        attempts.wrong(other, Duration::ZERO);
        assert_eq!(attempts.count(&other), 0, "past its validity");
    }
}
