//! What `mailotp ctl status` reads of the in-process store: a user's open
//! challenges, changing nothing.

use tokio::time::Instant;

use super::{LinkState, MemoryStore};
use crate::challenge::OpenChallenge;

impl MemoryStore {
    /// The user's open challenges, oldest first.
    pub(crate) fn open_of(&self, user: &str) -> Vec<OpenChallenge> {
        let now = Instant::now();
        let Some(list) = self.by_user.get(user) else {
            return Vec::new();
        };
        list.iter()
            .filter_map(|tx| {
                let r = self.challenges.get(tx)?;
                let left = self.instant(r.expires).saturating_duration_since(now);
                (!left.is_zero()).then(|| OpenChallenge {
                    tx: *tx,
                    left,
                    attempts_left: u64::from(r.attempts_left),
                    link_confirmed: match r.link {
                        LinkState::None => None,
                        LinkState::Pending => Some(false),
                        LinkState::Confirmed => Some(true),
                    },
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::*;
    use crate::otp::Otp;

    #[tokio::test(start_paused = true)]
    async fn open_of_lists_the_users_open_challenges_with_attempts_left() {
        let life = Lifecycle::new(Duration::ZERO);
        let lockout = crate::limits::Lockout {
            after: 0,
            duration: Duration::ZERO,
        };
        let limits = MemoryLimiter::start(crate::limits::Throttling::default(), lockout, &life);
        let settings = ChallengeSettings {
            validity: Duration::from_secs(600),
            blocking: Duration::ZERO,
            max_attempts: 3,
        };
        let store = MemoryStore::start(settings, limits, &life);
        let (tx, code, origin) = (
            Transaction::random(),
            Otp::from_value(123_456, 6),
            Origin::Client("vpn".into()),
        );
        let new = NewChallenge {
            tx,
            code: &code,
            link: None,
            validity: Duration::from_secs(600),
            max_attempts: 3,
            policy: None,
            deny: None,
            mail: None,
        };
        store.open("alice", &origin, new, None).await.unwrap();
        store.answer(&tx, "alice", &origin, b"000000").await.unwrap();
        let open = store.open_of("alice");
        assert_eq!(open.len(), 1);
        assert_eq!(
            (open[0].tx, open[0].attempts_left, open[0].link_confirmed),
            (tx, 2, None)
        );
        assert_eq!(open[0].left, Duration::from_secs(600));
        assert!(store.open_of("bob").is_empty());
        tokio::time::advance(Duration::from_secs(600)).await;
        assert!(store.open_of("alice").is_empty(), "an expired one is not shown");
    }
}
