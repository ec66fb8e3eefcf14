//! expiry: a first-in, first-out queue of deadlines for state whose entries all
//! live equally long (challenges, the duplicate cache).
//!
//! Because every entry of one kind gets the same lifetime, insertion order is
//! expiry order: a `VecDeque` does what a sorted set would, in the size of a
//! deadline plus the key per entry and O(1) per operation. Deadlines are
//! `Instant`s unless the owner has a smaller clock of its own. It only
//! remembers *when* to look; the owner checks the entry itself, since it may
//! be gone or renewed by then.

use std::collections::VecDeque;

use tokio::time::Instant;

/// Deadlines in the order they were pushed.
#[derive(Debug)]
pub(crate) struct ExpiryQueue<K, D = Instant> {
    entries: VecDeque<(D, K)>,
}

impl<K, D> Default for ExpiryQueue<K, D> {
    fn default() -> Self {
        ExpiryQueue {
            entries: VecDeque::new(),
        }
    }
}

impl<K, D: Copy + Ord> ExpiryQueue<K, D> {
    /// Remembers that `key` expires at `deadline`.
    pub(crate) fn push(&mut self, deadline: D, key: K) {
        self.entries.push_back((deadline, key));
    }

    /// Takes every key whose deadline is at or before `now`, oldest first.
    pub(crate) fn pop_expired(&mut self, now: D) -> impl Iterator<Item = K> + '_ {
        std::iter::from_fn(move || {
            if self.entries.front()?.0 <= now {
                self.entries.pop_front().map(|(_, k)| k)
            } else {
                None
            }
        })
    }

    /// Takes the key with the earliest deadline, due or not.
    pub(crate) fn pop_front(&mut self) -> Option<K> {
        self.entries.pop_front().map(|(_, k)| k)
    }

    /// The earliest deadline still queued.
    pub(crate) fn next_deadline(&self) -> Option<D> {
        self.entries.front().map(|(d, _)| *d)
    }

    /// How many deadlines are queued.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
