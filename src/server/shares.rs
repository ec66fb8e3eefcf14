//! shares: each client's bounded share of the PIN-check queue (`[server]
//! pin_queue_per_client`). A PIN request holds a place in its client's share
//! from the cheap checks until its answer is sent, whether it waits for a
//! hash thread or an LDAP bind; when the share is full, that client's new PIN
//! requests are dropped, and no client can take another's places.
//! Status-Server and State answers never come here: `max_in_flight` is
//! theirs alone. Nothing here logs.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::DEFAULT_PIN_QUEUE_PER_CLIENT;

/// One semaphore of `per_client` places per client name.
#[derive(Debug)]
pub(crate) struct PinShares {
    per_client: usize,
    shares: DashMap<String, Arc<Semaphore>>,
}

impl PinShares {
    /// Shares of `per_client` places each.
    pub(crate) fn new(per_client: usize) -> PinShares {
        PinShares {
            per_client,
            shares: DashMap::new(),
        }
    }

    /// Places per client.
    pub(crate) fn per_client(&self) -> usize {
        self.per_client
    }

    /// A place in `client`'s share, held until the permit drops; `None`
    /// when the share is full.
    pub(crate) fn try_acquire(&self, client: &str) -> Option<OwnedSemaphorePermit> {
        let share = match self.shares.get(client) {
            Some(share) => Arc::clone(&share),
            None => Arc::clone(
                &self
                    .shares
                    .entry(client.to_owned())
                    .or_insert_with(|| Arc::new(Semaphore::new(self.per_client))),
            ),
        };
        share.try_acquire_owned().ok()
    }
}

impl Default for PinShares {
    fn default() -> PinShares {
        PinShares::new(DEFAULT_PIN_QUEUE_PER_CLIENT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_share_refuses_its_client_only() {
        let shares = PinShares::new(2);
        let first = shares.try_acquire("flood").unwrap();
        let _second = shares.try_acquire("flood").unwrap();
        assert!(shares.try_acquire("flood").is_none());
        assert!(shares.try_acquire("vpn1").is_some(), "another client has its own share");
        drop(first);
        assert!(
            shares.try_acquire("flood").is_some(),
            "an answered request frees its place"
        );
    }
}
