//! The duplicate cache (RFC 5080 §2.2.2): a retransmission — same source
//! address and port, identifier and Request Authenticator — gets the bytes of
//! the first answer again, and a copy that arrives while the first is still
//! being worked on is dropped, so no request is decided (or mailed) twice.
//! Entries live [`TTL`]; the cache holds at most `capacity` of them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use tokio::time::Instant;

use crate::expiry::ExpiryQueue;

/// How long an answer is kept: NASes retransmit a few times, seconds apart.
pub const TTL: Duration = Duration::from_secs(30);

/// What identifies one request on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestKey {
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
pub enum Seen {
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
pub struct DuplicateCache {
    slots: DashMap<RequestKey, Slot>,
    expiry: Mutex<ExpiryQueue<RequestKey>>,
    capacity: usize,
}

impl DuplicateCache {
    /// A cache of at most `capacity` requests.
    pub fn new(capacity: usize) -> DuplicateCache {
        DuplicateCache {
            slots: DashMap::new(),
            expiry: Mutex::new(ExpiryQueue::default()),
            capacity,
        }
    }

    /// Looks a request up, marking it in progress when it is new.
    pub fn check(&self, key: RequestKey) -> Seen {
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
    /// twice; `false` when the oldest entry is one of those.
    fn evict_oldest_answered(&self) -> bool {
        let mut expiry = self.expiry.lock().expect("expiry lock poisoned");
        while let Some(oldest) = expiry.front() {
            let in_progress = self.slots.get(oldest).is_some_and(|s| matches!(*s, Slot::InProgress));
            if in_progress {
                return false;
            }
            let oldest = *oldest;
            expiry.pop_front();
            if self.slots.remove(&oldest).is_some() {
                return true;
            }
        }
        false
    }

    /// Keeps the answer for retransmissions.
    pub fn answered(&self, key: RequestKey, bytes: Arc<[u8]>) {
        if let Some(mut slot) = self.slots.get_mut(&key) {
            *slot = Slot::Answered(bytes);
        }
    }

    /// Forgets a request that got no answer, so a retransmission is tried anew.
    pub fn forget(&self, key: &RequestKey) {
        self.slots.remove(key);
    }

    /// Drops entries older than [`TTL`].
    pub fn sweep(&self, now: Instant) {
        let due: Vec<RequestKey> = self
            .expiry
            .lock()
            .expect("expiry lock poisoned")
            .pop_expired(now)
            .collect();
        for key in due {
            self.slots.remove(&key);
        }
    }

    /// Requests remembered.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
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
        let cache = DuplicateCache::new(2);
        assert!(matches!(cache.check(key(1)), Seen::New));
        assert!(matches!(cache.check(key(2)), Seen::New));
        cache.answered(key(2), Arc::from(&b"two"[..]));
        // key 1 is still in progress and the oldest: nothing may be dropped.
        assert!(matches!(cache.check(key(3)), Seen::Full));
        cache.answered(key(1), Arc::from(&b"one"[..]));
        assert!(matches!(cache.check(key(3)), Seen::New));
        assert_eq!(cache.len(), 2);
        assert!(matches!(cache.check(key(2)), Seen::Answered(b) if &*b == b"two"));
        // key 1's answer made room, so a copy of it now counts as new.
        assert!(matches!(cache.check(key(1)), Seen::New));
    }
}
