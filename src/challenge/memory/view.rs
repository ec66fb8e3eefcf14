//! What `mailotp ctl status` reads of the in-process store: a user's open
//! challenges, changing nothing.

use tokio::time::Instant;

use super::{LinkState, MemoryStore};
use crate::challenge::OpenChallenge;

impl MemoryStore {
    /// The user's open challenges, oldest first.
    pub(crate) fn open_of(&self, user: &str) -> Vec<OpenChallenge> {
        let now = Instant::now();
        let max_attempts = self.settings.load().max_attempts;
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
                    attempts_left: u64::from(max_attempts.saturating_sub(r.attempts)),
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
