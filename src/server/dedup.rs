//! The duplicate cache (RFC 5080 §2.2.2): a retransmission — same source
//! address and port, identifier and Request Authenticator — gets the bytes of
//! the first answer again, and a copy that arrives while the first is still
//! being worked on is dropped, so no request is decided (or mailed) twice.
//! Answers live [`TTL`]; a request being decided stays until it is answered
//! or forgotten, however long that takes. The cache holds at most `capacity`
//! entries.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use tokio::time::Instant;

use crate::expiry::ExpiryQueue;

/// How long an answer is kept: NASes retransmit a few times, seconds apart.
pub(crate) const TTL: Duration = Duration::from_secs(30);

/// What identifies one request on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct RequestKey {
    /// Source address and port.
    pub source: SocketAddr,
    /// Identifier octet.
    pub identifier: u8,
    /// Request Authenticator.
    pub authenticator: [u8; 16],
}

#[derive(Debug)]
enum Slot {
    InProgress,
    Answered(Arc<[u8]>),
}

/// What the cache knows of a request.
#[derive(Debug)]
pub(crate) enum Seen {
    /// First time: it is now marked in progress.
    New,
    /// A copy is being worked on.
    InProgress,
    /// Already answered with these bytes.
    Answered(Arc<[u8]>),
    /// The cache is full; the request should be dropped.
    Full,
}

/// Recent requests and their answers.
#[derive(Debug)]
pub(crate) struct DuplicateCache {
    slots: DashMap<RequestKey, Slot>,
    expiry: Mutex<ExpiryQueue<RequestKey>>,
    capacity: usize,
}

impl DuplicateCache {
    /// A cache of at most `capacity` requests.
    pub(crate) fn new(capacity: usize) -> DuplicateCache {
        DuplicateCache {
            slots: DashMap::new(),
            expiry: Mutex::new(ExpiryQueue::default()),
            capacity,
        }
    }

    /// Looks a request up, marking it in progress when it is new.
    pub(crate) fn check(&self, key: RequestKey) -> Seen {
        if self.slots.len() >= self.capacity && !self.slots.contains_key(&key) && !self.evict_oldest_answered() {
            return Seen::Full;
        }
        match self.slots.entry(key) {
            Entry::Occupied(e) => match e.get() {
                Slot::InProgress => Seen::InProgress,
                Slot::Answered(bytes) => Seen::Answered(Arc::clone(bytes)),
            },
            Entry::Vacant(e) => {
                e.insert(Slot::InProgress);
                self.expiry
                    .lock()
                    .expect("expiry lock poisoned")
                    .push(Instant::now() + TTL, key);
                Seen::New
            }
        }
    }

    /// Makes room under sustained load: the oldest entries are answers (or
    /// forgotten requests) long sent, whose retransmissions are least likely,
    /// so they go first. Without this a steady 3,400 requests/s (capacity /
    /// TTL) would fill the cache and every further request would be dropped.
    /// A request still being worked on is never evicted, so none is decided
    /// twice: it goes to the back of the queue, and the next oldest answer
    /// makes room instead (a PIN waiting for a hash may be older than the
    /// last 100,000 cheap answers). `false` when every entry is in progress.
    fn evict_oldest_answered(&self) -> bool {
        let mut expiry = self.expiry.lock().expect("expiry lock poisoned");
        for _ in 0..expiry.len() {
            let Some(oldest) = expiry.pop_front() else {
                return false;
            };
            match self.slots.get(&oldest).map(|slot| matches!(*slot, Slot::InProgress)) {
                Some(true) => expiry.push(Instant::now() + TTL, oldest),
                Some(false) => {
                    self.slots.remove(&oldest);
                    return true;
                }
                // Forgotten already; only its deadline was left.
                None => {}
            }
        }
        false
    }

    /// Keeps the answer for retransmissions.
    pub(crate) fn answered(&self, key: RequestKey, bytes: Arc<[u8]>) {
        if let Some(mut slot) = self.slots.get_mut(&key) {
            *slot = Slot::Answered(bytes);
        }
    }

    /// Forgets a request that got no answer, so a retransmission is tried anew.
    pub(crate) fn forget(&self, key: &RequestKey) {
        self.slots.remove(key);
    }

    /// Drops answers older than [`TTL`]. A request still being decided is
    /// kept however old it is (a PIN check behind a slow directory may take
    /// longer than the TTL): dropping it would let a retransmission be
    /// decided, and mailed, a second time. It is looked at again a TTL later.
    pub(crate) fn sweep(&self, now: Instant) {
        let due: Vec<RequestKey> = self
            .expiry
            .lock()
            .expect("expiry lock poisoned")
            .pop_expired(now)
            .collect();
        for key in due {
            let removed = self.slots.remove_if(&key, |_, slot| !matches!(slot, Slot::InProgress));
            if removed.is_none() && self.slots.contains_key(&key) {
                self.expiry.lock().expect("expiry lock poisoned").push(now + TTL, key);
            }
        }
    }

    /// Requests remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u8) -> RequestKey {
        RequestKey {
            source: "127.0.0.1:5000".parse().unwrap(),
            identifier: id,
            authenticator: [id; 16],
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retransmissions_get_the_first_answer_until_ttl() {
        let cache = DuplicateCache::new(10);
        assert!(matches!(cache.check(key(1)), Seen::New));
        assert!(matches!(cache.check(key(1)), Seen::InProgress));
        cache.answered(key(1), Arc::from(&b"answer"[..]));
        assert!(matches!(cache.check(key(1)), Seen::Answered(b) if &*b == b"answer"));
        tokio::time::advance(TTL).await;
        cache.sweep(Instant::now());
        assert!(matches!(cache.check(key(1)), Seen::New));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_still_being_decided_outlives_the_ttl() {
        let cache = DuplicateCache::new(10);
        assert!(matches!(cache.check(key(1)), Seen::New));
        assert!(matches!(cache.check(key(2)), Seen::New));
        cache.answered(key(2), Arc::from(&b"two"[..]));
        for _ in 0..3 {
            tokio::time::advance(TTL).await;
            cache.sweep(Instant::now());
            assert!(matches!(cache.check(key(1)), Seen::InProgress), "key 1 forgotten");
        }
        assert!(matches!(cache.check(key(2)), Seen::New), "the answer expired");
        // Once answered, it lives one more TTL, like any answer.
        cache.answered(key(1), Arc::from(&b"one"[..]));
        tokio::time::advance(TTL).await;
        cache.sweep(Instant::now());
        assert!(matches!(cache.check(key(1)), Seen::New));
    }

    #[tokio::test(start_paused = true)]
    async fn the_cache_is_bounded() {
        let cache = DuplicateCache::new(2);
        assert!(matches!(cache.check(key(1)), Seen::New));
        assert!(matches!(cache.check(key(2)), Seen::New));
        assert!(matches!(cache.check(key(3)), Seen::Full));
        assert!(matches!(cache.check(key(1)), Seen::InProgress));
        cache.forget(&key(1));
        assert!(matches!(cache.check(key(3)), Seen::New));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_cache_makes_room_by_dropping_the_oldest_answer() {
        let cache = DuplicateCache::new(3);
        assert!(matches!(cache.check(key(1)), Seen::New));
        assert!(matches!(cache.check(key(2)), Seen::New));
        assert!(matches!(cache.check(key(3)), Seen::New));
        cache.answered(key(2), Arc::from(&b"two"[..]));
        cache.answered(key(3), Arc::from(&b"three"[..]));
        // key 1 is the oldest but still in progress: key 2, the oldest
        // answer, makes room, and key 1 stays in progress.
        assert!(matches!(cache.check(key(4)), Seen::New));
        assert_eq!(cache.len(), 3);
        assert!(matches!(cache.check(key(1)), Seen::InProgress));
        assert!(matches!(cache.check(key(3)), Seen::Answered(b) if &*b == b"three"));
        // key 2's answer was dropped, so a copy of it counts as new; key 3,
        // the only answer left, makes room for it.
        assert!(matches!(cache.check(key(2)), Seen::New));
        assert!(matches!(cache.check(key(1)), Seen::InProgress));
        // Now all three are in progress: nothing may go.
        assert!(matches!(cache.check(key(5)), Seen::Full));
    }
}
