//! challenge: open e-mail challenges, keyed by transaction id (the RADIUS State).
//!
//! [`ChallengeStore`] is the seam: `auth` opens, answers and consumes
//! challenges through it and never learns how they are kept. Its API carries
//! only plain values (user names, transaction ids, codes) so that a store in
//! Redis can stand behind it later. [`MemoryStore`] is the in-process one. The
//! store keeps a keyed digest of each code, never the code, and never logs.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use dashmap::DashMap;
use rand::RngCore;
use thiserror::Error;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::expiry::ExpiryQueue;
use crate::otp::{CodeDigest, CodeSealer, Otp, DIGEST_LEN};

/// How many challenges one user may have open at once; opening another closes
/// the oldest. With the LinOTP defaults (600 s validity, 120 s blocking) a
/// user who keeps retrying reaches five.
pub const MAX_OPEN_PER_USER: usize = 5;

/// A challenge's transaction id: 128 random bits, sent as the RADIUS State in
/// 32 lower-case hex characters so it reads the same in logs and radclient.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transaction([u8; 16]);

impl Transaction {
    /// A fresh, unguessable id.
    pub fn random() -> Transaction {
        let mut id = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut id);
        Transaction(id)
    }

    /// Reads a State attribute; `None` when it is not one of ours.
    pub fn from_state(state: &[u8]) -> Option<Transaction> {
        if state.len() != 32 || !state.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut id = [0u8; 16];
        hex::decode_to_slice(state, &mut id).ok()?;
        Some(Transaction(id))
    }

    /// The State attribute's value.
    pub fn to_state(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex::encode_to_slice(self.0, &mut out).expect("32 hex digits for 16 bytes");
        out
    }

    /// The raw id.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Transaction({self})")
    }
}

/// A confirmation link's secret part: 128 random bits, 32 hex characters in
/// the URL. The store keeps only a keyed digest of it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LinkToken([u8; 16]);

impl LinkToken {
    /// A fresh, unguessable token.
    pub fn random() -> LinkToken {
        let mut t = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut t);
        LinkToken(t)
    }

    /// Reads the token from a URL path segment; `None` when it cannot be one.
    pub fn from_path(segment: &str) -> Option<LinkToken> {
        Transaction::from_state(segment.as_bytes()).map(|tx| LinkToken(tx.0))
    }

    /// The token as it goes into the URL.
    pub fn to_path(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for LinkToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkToken(***)")
    }
}

/// What a confirmation link stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkStatus {
    /// A challenge waiting for confirmation (from `confirm_link`: it was
    /// waiting, and this call confirmed it).
    Pending {
        /// Whose login it is.
        user: String,
        /// When the PIN request came, in seconds since the Unix epoch.
        opened_unix: u64,
    },
    /// A link that was ours but is used up: confirmed, consumed or expired.
    Gone,
    /// Never ours, or forgotten long ago.
    Unknown,
}

/// Timing and attempt limits, from `[email]`; a reload applies them to
/// challenges opened afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChallengeSettings {
    /// How long a code is good for (`challenge_validity`).
    pub validity: Duration,
    /// How long a PIN again gets the open challenge instead of a new e-mail
    /// (`blocking_timeout`).
    pub blocking: Duration,
    /// Wrong answers to one challenge before it is void (`max_attempts`).
    pub max_attempts: u8,
}

/// What a PIN request opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// A new challenge under the given transaction: its e-mail must go out.
    New,
    /// The user's challenge still within the blocking timeout: no new e-mail.
    AlreadySent(Transaction),
}

/// The outcome of answering a challenge's State with a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The code belongs to one of the user's open challenges; all of them are
    /// now closed.
    Accepted,
    /// Wrong code; `void` when that was the last attempt the challenge had.
    Wrong {
        /// Whether the challenge is now closed.
        void: bool,
    },
    /// No open challenge of this user under that State (expired, used, never
    /// ours, or another user's).
    Unknown,
    /// A link challenge whose link was not confirmed yet: ask again, count
    /// no attempt (nothing was guessed).
    LinkPending,
}

/// Why a store could not answer; with the in-memory store this never happens.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The shared store cannot be reached.
    #[error("challenge store unavailable: {reason}")]
    Unavailable {
        /// What went wrong, in words for the log.
        reason: String,
    },
}

/// Where challenges live. Every method is atomic for one user: two requests
/// racing on the same challenge never both succeed.
#[async_trait]
pub trait ChallengeStore: Send + Sync + 'static {
    /// Opens a challenge for `user` under `tx` with `code`, unless the user's
    /// newest one is still within the blocking timeout.
    async fn open(&self, user: &str, tx: Transaction, code: &Otp) -> Result<Opened, StoreError>;

    /// Answers the challenge under `state` for `user` with `code`. A code of
    /// any of the user's open challenges counts (the older mail may arrive
    /// last); a wrong one uses up one attempt of the State's challenge.
    async fn answer(&self, state: &Transaction, user: &str, code: &[u8]) -> Result<Answer, StoreError>;

    /// The user's open challenge that `code` belongs to, changing nothing.
    async fn find(&self, user: &str, code: &[u8]) -> Result<Option<Transaction>, StoreError>;

    /// Closes all of the user's challenges if `tx` is still open among them;
    /// `false` when it is not (another request consumed it first).
    async fn consume(&self, user: &str, tx: &Transaction) -> Result<bool, StoreError>;

    /// Closes one challenge, e.g. when its e-mail could not be queued.
    async fn cancel(&self, user: &str, tx: &Transaction) -> Result<(), StoreError>;

    /// How many challenges are open, for metrics.
    fn open_count(&self) -> usize;

    /// Whether every call completes at once, without waiting on I/O (a store
    /// in this process). The server then answers State + code requests on
    /// its receive loop instead of in a task of their own.
    fn answers_at_once(&self) -> bool {
        false
    }
    /// Makes `tx` a link challenge: answered only after `token` is confirmed.
    async fn attach_link(&self, _user: &str, _tx: &Transaction, _token: &LinkToken) -> Result<(), StoreError> {
        Err(link_unsupported())
    }

    /// What `token` stands for, changing nothing (the page a GET shows).
    async fn link_status(&self, _token: &LinkToken) -> Result<LinkStatus, StoreError> {
        Err(link_unsupported())
    }

    /// Confirms the challenge of `token` once; `Pending` when this call did.
    async fn confirm_link(&self, _token: &LinkToken) -> Result<LinkStatus, StoreError> {
        Err(link_unsupported())
    }
}

fn link_unsupported() -> StoreError {
    StoreError::Unavailable {
        reason: "this challenge store does not support link delivery".to_owned(),
    }
}

/// How long a used or expired link is remembered, so that it gets "410 Gone"
/// rather than "404 Not Found".
const LINK_MEMORY: Duration = Duration::from_secs(3600);

/// A link challenge's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    /// A code challenge.
    None,
    /// The link was not confirmed yet.
    Pending,
    /// The link was confirmed; the next answer to the State is accepted.
    Confirmed,
}

/// A moment as nanoseconds since the store started: 8 bytes where an
/// `Instant` takes 16. With two per record that keeps an open challenge
/// within its memory budget at a million of them (see BENCHMARKS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Stamp(u64);

#[derive(Debug)]
struct Record {
    user: Arc<str>,
    digest: CodeDigest,
    blocking_until: Stamp,
    expires: Stamp,
    attempts: u8,
    link: LinkState,
}

/// The link index: a token's digest → its challenge.
#[derive(Debug)]
struct LinkEntry {
    tx: Transaction,
    user: Arc<str>,
    opened_unix: u64,
}

/// Challenges in this process's memory.
pub struct MemoryStore {
    challenges: DashMap<Transaction, Record>,
    // Lock order: a `by_user` entry first, then `challenges`; never the reverse
    // while a `challenges` guard is held.
    by_user: DashMap<Arc<str>, Vec<Transaction>>,
    expiry: Mutex<ExpiryQueue<Transaction>>,
    links: DashMap<[u8; DIGEST_LEN], LinkEntry>,
    link_expiry: Mutex<ExpiryQueue<[u8; DIGEST_LEN]>>,
    wake_sweeper: Notify,
    settings: ArcSwap<ChallengeSettings>,
    sealer: CodeSealer,
    epoch: Instant,
}

impl MemoryStore {
    /// A store whose sweeper runs on `tasks` until `shutdown`.
    pub fn start(settings: ChallengeSettings, tasks: &TaskTracker, shutdown: CancellationToken) -> Arc<MemoryStore> {
        let store = Arc::new(MemoryStore {
            challenges: DashMap::new(),
            by_user: DashMap::new(),
            expiry: Mutex::new(ExpiryQueue::default()),
            links: DashMap::new(),
            link_expiry: Mutex::new(ExpiryQueue::default()),
            wake_sweeper: Notify::new(),
            settings: ArcSwap::from_pointee(settings),
            sealer: CodeSealer::random(),
            epoch: Instant::now(),
        });
        tasks.spawn(sweep(Arc::clone(&store), shutdown));
        store
    }

    /// Applies new limits to challenges opened from now on.
    pub fn set_settings(&self, settings: ChallengeSettings) {
        self.settings.store(Arc::new(settings));
    }

    fn stamp(&self, at: Instant) -> Stamp {
        Stamp(u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX))
    }

    fn is_open(&self, tx: &Transaction, now: Instant) -> bool {
        let now = self.stamp(now);
        self.challenges.get(tx).is_some_and(|r| r.expires > now)
    }

    fn matching(&self, txs: &[Transaction], code: &[u8], now: Instant) -> Option<Transaction> {
        let now = self.stamp(now);
        txs.iter().copied().find(|tx| {
            self.challenges
                .get(tx)
                .is_some_and(|r| r.expires > now && self.sealer.matches(tx, code, &r.digest))
        })
    }

    fn close_all(&self, txs: &mut Vec<Transaction>) {
        for tx in txs.drain(..) {
            self.challenges.remove(&tx);
        }
    }

    /// Removes expired challenges; returns the next deadline to wake at.
    fn sweep_expired(&self, now: Instant) -> Option<Instant> {
        let due: Vec<Transaction> = {
            let mut queue = self.expiry.lock().expect("expiry lock poisoned");
            queue.pop_expired(now).collect()
        };
        let now_stamp = self.stamp(now);
        for tx in due {
            let Some(user) = self.challenges.get(&tx).map(|r| r.user.clone()) else {
                continue;
            };
            if let Some(mut list) = self.by_user.get_mut(&user) {
                if self.challenges.remove_if(&tx, |_, r| r.expires <= now_stamp).is_some() {
                    list.retain(|t| *t != tx);
                }
            }
            self.by_user.remove_if(&user, |_, list| list.is_empty());
        }
        let forgotten: Vec<_> = {
            let mut queue = self.link_expiry.lock().expect("link expiry lock poisoned");
            queue.pop_expired(now).collect()
        };
        for digest in forgotten {
            self.links.remove(&digest);
        }
        let next_link = self
            .link_expiry
            .lock()
            .expect("link expiry lock poisoned")
            .next_deadline();
        let next = self.expiry.lock().expect("expiry lock poisoned").next_deadline();
        match (next, next_link) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The sweeper: sleeps until the oldest challenge expires, or until `open`
/// queues the first one. `Notify` keeps a wake-up that comes while it is busy.
async fn sweep(store: Arc<MemoryStore>, shutdown: CancellationToken) {
    loop {
        let next = store.sweep_expired(Instant::now());
        let deadline = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(deadline) => {}
            _ = store.wake_sweeper.notified() => {}
        }
    }
}

#[async_trait]
impl ChallengeStore for MemoryStore {
    async fn open(&self, user: &str, tx: Transaction, code: &Otp) -> Result<Opened, StoreError> {
        let now = Instant::now();
        let settings = **self.settings.load();
        // Never more than MAX_OPEN_PER_USER: no room to spare per user.
        let mut list = self
            .by_user
            .entry(Arc::from(user))
            .or_insert_with(|| Vec::with_capacity(MAX_OPEN_PER_USER));
        list.retain(|t| self.is_open(t, now));
        if let Some(newest) = list.last() {
            let blocking = self
                .challenges
                .get(newest)
                .is_some_and(|r| r.blocking_until > self.stamp(now));
            if blocking {
                return Ok(Opened::AlreadySent(*newest));
            }
        }
        if list.len() >= MAX_OPEN_PER_USER {
            let oldest = list.remove(0);
            self.challenges.remove(&oldest);
        }
        let expires = now + settings.validity;
        let record = Record {
            user: list.key().clone(),
            digest: self.sealer.seal(&tx, code.expose().as_bytes()),
            blocking_until: self.stamp(now + settings.blocking),
            expires: self.stamp(expires),
            attempts: 0,
            link: LinkState::None,
        };
        self.challenges.insert(tx, record);
        list.push(tx);
        drop(list);
        let was_empty = {
            let mut queue = self.expiry.lock().expect("expiry lock poisoned");
            let was_empty = queue.is_empty();
            queue.push(expires, tx);
            was_empty
        };
        if was_empty {
            self.wake_sweeper.notify_one();
        }
        Ok(Opened::New)
    }

    async fn answer(&self, state: &Transaction, user: &str, code: &[u8]) -> Result<Answer, StoreError> {
        let now = Instant::now();
        let owner = match self.challenges.get(state) {
            Some(r) if r.expires > self.stamp(now) && &*r.user == user => r.user.clone(),
            _ => return Ok(Answer::Unknown),
        };
        let Some(mut list) = self.by_user.get_mut(&owner) else {
            return Ok(Answer::Unknown);
        };
        if !list.contains(state) {
            return Ok(Answer::Unknown);
        }
        match self.challenges.get(state).map(|r| r.link) {
            Some(LinkState::Pending) => return Ok(Answer::LinkPending),
            Some(LinkState::Confirmed) => {
                self.close_all(&mut list);
                return Ok(Answer::Accepted);
            }
            _ => {}
        }
        if self.matching(&list, code, now).is_some() {
            self.close_all(&mut list);
            return Ok(Answer::Accepted);
        }
        let max_attempts = self.settings.load().max_attempts;
        let void = match self.challenges.get_mut(state) {
            Some(mut r) => {
                r.attempts = r.attempts.saturating_add(1);
                r.attempts >= max_attempts
            }
            None => return Ok(Answer::Unknown),
        };
        if void {
            self.challenges.remove(state);
            list.retain(|t| t != state);
        }
        Ok(Answer::Wrong { void })
    }

    async fn find(&self, user: &str, code: &[u8]) -> Result<Option<Transaction>, StoreError> {
        let now = Instant::now();
        Ok(self.by_user.get(user).and_then(|list| self.matching(&list, code, now)))
    }

    async fn consume(&self, user: &str, tx: &Transaction) -> Result<bool, StoreError> {
        let now = Instant::now();
        let Some(mut list) = self.by_user.get_mut(user) else {
            return Ok(false);
        };
        if !list.contains(tx) || !self.is_open(tx, now) {
            return Ok(false);
        }
        self.close_all(&mut list);
        Ok(true)
    }

    async fn cancel(&self, user: &str, tx: &Transaction) -> Result<(), StoreError> {
        if let Some(mut list) = self.by_user.get_mut(user) {
            list.retain(|t| t != tx);
            self.challenges.remove(tx);
        }
        Ok(())
    }

    fn open_count(&self) -> usize {
        self.challenges.len()
    }

    fn answers_at_once(&self) -> bool {
        true
    }

    async fn attach_link(&self, user: &str, tx: &Transaction, token: &LinkToken) -> Result<(), StoreError> {
        let Some(mut record) = self.challenges.get_mut(tx) else {
            return Ok(());
        };
        record.link = LinkState::Pending;
        let forget_at = self.epoch + Duration::from_nanos(record.expires.0) + LINK_MEMORY;
        drop(record);
        let digest = self.sealer.seal_link(&token.0);
        let opened_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let entry = LinkEntry {
            tx: *tx,
            user: Arc::from(user),
            opened_unix,
        };
        self.links.insert(digest, entry);
        self.link_expiry
            .lock()
            .expect("link expiry lock poisoned")
            .push(forget_at, digest);
        self.wake_sweeper.notify_one();
        Ok(())
    }

    async fn link_status(&self, token: &LinkToken) -> Result<LinkStatus, StoreError> {
        self.link(token, false)
    }

    async fn confirm_link(&self, token: &LinkToken) -> Result<LinkStatus, StoreError> {
        self.link(token, true)
    }
}

impl MemoryStore {
    /// Looks a link up and, with `confirm`, confirms it if it is pending.
    fn link(&self, token: &LinkToken, confirm: bool) -> Result<LinkStatus, StoreError> {
        let digest = self.sealer.seal_link(&token.0);
        let Some(entry) = self.links.get(&digest) else {
            return Ok(LinkStatus::Unknown);
        };
        let now = Instant::now();
        let Some(mut record) = self.challenges.get_mut(&entry.tx) else {
            return Ok(LinkStatus::Gone);
        };
        if record.expires <= self.stamp(now) || record.link != LinkState::Pending {
            return Ok(LinkStatus::Gone);
        }
        if confirm {
            record.link = LinkState::Confirmed;
        }
        Ok(LinkStatus::Pending {
            user: entry.user.to_string(),
            opened_unix: entry.opened_unix,
        })
    }
}

#[cfg(test)]
mod tests;
