//! The in-process challenge store: dashmap by transaction and by user, a
//! sweeper that sleeps until the oldest challenge expires, and the link index.
//! Lock order: a `by_user` entry first, then `challenges`. Nothing here logs.

use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use dashmap::DashMap;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::*;
use crate::expiry::ExpiryQueue;
use crate::lifecycle::Lifecycle;
use crate::limits::{Limiter, MemoryLimiter};
use crate::otp::{CodeDigest, CodeSealer, DIGEST_LEN};
use names::PolicyNames;

mod names;

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
/// `Instant` takes 16, which keeps an open challenge within its memory
/// budget at a million of them (see BENCHMARKS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Stamp(u64);

/// A moment as whole seconds since the store started, rounded down: 4 bytes,
/// for the blocking timeout, which thus ends up to a second early, never late.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Second(u32);

/// 56 bytes: the fields are ordered and sized so that none is padding.
#[derive(Debug)]
struct Record {
    user: Arc<str>,
    digest: CodeDigest,
    expires: Stamp,
    /// The origin as a keyed 64-bit hash: 8 bytes where the text would take
    /// 16 and an allocation; the key is random per process, so nobody can
    /// pick an origin whose hash equals another's.
    origin: u64,
    blocking_until: Second,
    /// Wrong answers left before it is void (its `max_attempts` at first).
    attempts_left: u8,
    link: LinkState,
    /// The policy it was opened under ([`PolicyNames`]; 0: none).
    policy: u16,
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
    expiry: Mutex<ExpiryQueue<Transaction, Stamp>>,
    links: DashMap<[u8; DIGEST_LEN], LinkEntry>,
    link_expiry: Mutex<ExpiryQueue<[u8; DIGEST_LEN]>>,
    denies: deny::DenyIndex,
    policy_names: PolicyNames,
    wake_sweeper: Notify,
    settings: ArcSwap<ChallengeSettings>,
    /// Counts the e-mail of each challenge opened.
    limits: Arc<MemoryLimiter>,
    sealer: CodeSealer,
    origins: RandomState,
    epoch: Instant,
}

impl MemoryStore {
    /// A store that counts e-mails in `limits`, whose sweeper runs on
    /// `life` until shutdown.
    pub fn start(settings: ChallengeSettings, limits: Arc<MemoryLimiter>, life: &Lifecycle) -> Arc<MemoryStore> {
        let store = Arc::new(MemoryStore {
            challenges: DashMap::new(),
            by_user: DashMap::new(),
            expiry: Mutex::new(ExpiryQueue::default()),
            links: DashMap::new(),
            link_expiry: Mutex::new(ExpiryQueue::default()),
            denies: deny::DenyIndex::default(),
            policy_names: PolicyNames::default(),
            wake_sweeper: Notify::new(),
            settings: ArcSwap::from_pointee(settings),
            limits,
            sealer: CodeSealer::random(),
            origins: RandomState::new(),
            epoch: Instant::now(),
        });
        life.spawn(sweep(Arc::clone(&store), life.clone()));
        store
    }

    fn stamp(&self, at: Instant) -> Stamp {
        Stamp(u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX))
    }

    fn instant(&self, stamp: Stamp) -> Instant {
        self.epoch + Duration::from_nanos(stamp.0)
    }

    fn second(&self, at: Instant) -> Second {
        Second(u32::try_from(at.saturating_duration_since(self.epoch).as_secs()).unwrap_or(u32::MAX))
    }

    fn origin(&self, origin: &Origin) -> u64 {
        self.origins.hash_one(origin)
    }

    fn is_open(&self, tx: &Transaction, now: Instant) -> bool {
        let now = self.stamp(now);
        self.challenges.get(tx).is_some_and(|r| r.expires > now)
    }

    /// Among `txs`, the open code challenges from `origin` (`None` when
    /// there are none) and the one whose code is `code`.
    fn matching(&self, txs: &[Transaction], origin: u64, code: &[u8], now: Instant) -> Option<Option<Transaction>> {
        let now = self.stamp(now);
        let mut any = false;
        let found = txs.iter().copied().find(|tx| {
            self.challenges.get(tx).is_some_and(|r| {
                let candidate = r.expires > now && r.origin == origin && r.link == LinkState::None;
                any |= candidate;
                candidate && self.sealer.matches(tx, code, &r.digest)
            })
        });
        any.then_some(found)
    }

    /// One wrong answer to the challenge `tx`; `true` when it is now void
    /// (and removed from `challenges`, not from the user's list).
    fn count_wrong(&self, tx: &Transaction) -> Option<bool> {
        let void = {
            let mut r = self.challenges.get_mut(tx)?;
            r.attempts_left = r.attempts_left.saturating_sub(1);
            r.attempts_left == 0
        };
        if void {
            self.challenges.remove(tx);
        }
        Some(void)
    }

    fn close_all(&self, txs: &mut Vec<Transaction>) {
        for tx in txs.drain(..) {
            self.challenges.remove(&tx);
        }
    }

    /// Removes expired challenges; returns the next deadline to wake at.
    fn sweep_expired(&self, now: Instant) -> Option<Instant> {
        let now_stamp = self.stamp(now);
        let due: Vec<Transaction> = {
            let mut queue = self.expiry.lock().expect("expiry lock poisoned");
            queue.pop_expired(now_stamp).collect()
        };
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
        let next = self
            .expiry
            .lock()
            .expect("expiry lock poisoned")
            .next_deadline()
            .map(|stamp| self.instant(stamp));
        match (next, next_link) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The sweeper: sleeps until the oldest challenge expires, or until `open`
/// queues the first one. `Notify` keeps a wake-up that comes while it is busy.
async fn sweep(store: Arc<MemoryStore>, life: Lifecycle) {
    loop {
        let next = store.sweep_expired(Instant::now());
        let deadline = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = life.cancelled() => return,
            _ = tokio::time::sleep_until(deadline) => {}
            _ = store.wake_sweeper.notified() => {}
        }
    }
}

#[async_trait]
impl ChallengeStore for MemoryStore {
    async fn open(
        &self,
        user: &str,
        origin: &Origin,
        new: NewChallenge<'_>,
        client_ip: Option<&str>,
    ) -> Result<Opened, BackendUnavailable> {
        let NewChallenge {
            tx,
            code,
            link,
            validity,
            max_attempts,
            policy,
            deny,
            mail,
        } = new;
        debug_assert!(mail.is_none(), "only the store in Redis queues mail");
        let now = Instant::now();
        let origin = self.origin(origin);
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
                .filter(|r| r.blocking_until > self.second(now))
                .map(|r| {
                    (
                        r.origin == origin,
                        self.instant(r.expires).saturating_duration_since(now),
                    )
                });
            match blocking {
                Some((true, left)) => return Ok(Opened::AlreadySent { tx: *newest, left }),
                Some((false, _)) => return Ok(Opened::SentElsewhere),
                None => {}
            }
        }
        if list.len() >= MAX_OPEN_PER_USER {
            let oldest = list.remove(0);
            self.challenges.remove(&oldest);
        }
        if let Err(limit) = self.limits.count_mail(user, client_ip) {
            return Ok(Opened::Throttled(limit));
        }
        let expires = self.stamp(now + validity);
        let record = Record {
            user: list.key().clone(),
            digest: self.sealer.seal(&tx, code.expose().as_bytes()),
            blocking_until: self.second(now + settings.blocking.min(validity)),
            expires,
            origin,
            attempts_left: max_attempts.max(1),
            link: LinkState::None,
            policy: self.policy_names.number(policy),
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
        if let Some(token) = link {
            self.attach(user, &tx, token);
        }
        if let Some((token, record)) = deny {
            self.denies
                .add(self.sealer.seal_deny(&token.0), record.clone(), validity);
        }
        Ok(Opened::New)
    }

    async fn answer(
        &self,
        state: &Transaction,
        user: &str,
        origin: &Origin,
        code: &[u8],
    ) -> Result<Answer, BackendUnavailable> {
        if self.limits.is_locked(user).await? {
            return Ok(Answer::Locked);
        }
        let answer = self.answer_now(state, user, origin, code);
        if matches!(answer, Answer::Accepted { .. }) {
            self.limits.succeeded(user);
        }
        Ok(answer)
    }

    async fn before_pin(&self, user: &str, origin: &Origin, codes: &[&[u8]]) -> Result<BeforePin, BackendUnavailable> {
        let locked = self.limits.is_locked(user).await?;
        let mut found = Vec::with_capacity(codes.len());
        for code in codes {
            found.push(self.find(user, origin, code).await?);
        }
        Ok(BeforePin { locked, codes: found })
    }

    async fn find(&self, user: &str, origin: &Origin, code: &[u8]) -> Result<CodeMatch, BackendUnavailable> {
        let now = Instant::now();
        let found = self
            .by_user
            .get(user)
            .and_then(|list| self.matching(&list, self.origin(origin), code, now));
        Ok(match found {
            Some(Some(tx)) => CodeMatch::Matched(tx),
            Some(None) => CodeMatch::Wrong,
            None => CodeMatch::NoChallenge,
        })
    }

    async fn wrong_code(&self, user: &str, origin: &Origin) -> Result<(), BackendUnavailable> {
        let (now, origin) = (self.stamp(Instant::now()), self.origin(origin));
        let Some(mut list) = self.by_user.get_mut(user) else {
            return Ok(());
        };
        let counted: Vec<Transaction> = list
            .iter()
            .copied()
            .filter(|tx| {
                self.challenges
                    .get(tx)
                    .is_some_and(|r| r.expires > now && r.origin == origin && r.link == LinkState::None)
            })
            .collect();
        for tx in counted {
            if self.count_wrong(&tx) == Some(true) {
                list.retain(|t| *t != tx);
            }
        }
        Ok(())
    }

    async fn consume(&self, user: &str, tx: &Transaction) -> Result<bool, BackendUnavailable> {
        let now = Instant::now();
        let Some(mut list) = self.by_user.get_mut(user) else {
            return Ok(false);
        };
        if !list.contains(tx) || !self.is_open(tx, now) {
            return Ok(false);
        }
        self.close_all(&mut list);
        drop(list);
        self.limits.succeeded(user);
        Ok(true)
    }

    async fn cancel(&self, user: &str, tx: &Transaction) -> Result<(), BackendUnavailable> {
        if let Some(mut list) = self.by_user.get_mut(user) {
            list.retain(|t| t != tx);
            self.challenges.remove(tx);
        }
        Ok(())
    }

    fn open_count(&self) -> usize {
        self.challenges.len()
    }

    fn set_settings(&self, settings: ChallengeSettings) {
        self.settings.store(Arc::new(settings));
    }

    fn answers_at_once(&self) -> bool {
        true
    }

    async fn link_status(&self, token: &LinkToken) -> Result<LinkStatus, BackendUnavailable> {
        self.link(token, false)
    }

    async fn confirm_link(&self, token: &LinkToken) -> Result<LinkStatus, BackendUnavailable> {
        self.link(token, true)
    }

    async fn deny(&self, token: &LinkToken, take: bool) -> Result<DenyStatus, BackendUnavailable> {
        Ok(self.denies.status(&self.sealer.seal_deny(&token.0), take))
    }

    async fn close_user(&self, user: &str, tx: &Transaction) -> Result<bool, BackendUnavailable> {
        let Some(mut list) = self.by_user.get_mut(user) else {
            return Ok(false);
        };
        let was_open = list.contains(tx) && self.is_open(tx, Instant::now());
        self.close_all(&mut list);
        Ok(was_open)
    }
}

impl MemoryStore {
    /// [`ChallengeStore::answer`] without the lockout: holds the user's
    /// list while it decides.
    fn answer_now(&self, state: &Transaction, user: &str, origin: &Origin, code: &[u8]) -> Answer {
        let now = Instant::now();
        let origin = self.origin(origin);
        let owner = match self.challenges.get(state) {
            Some(r) if r.expires > self.stamp(now) && &*r.user == user && r.origin == origin => r.user.clone(),
            _ => return Answer::Unknown,
        };
        let Some(mut list) = self.by_user.get_mut(&owner) else {
            return Answer::Unknown;
        };
        if !list.contains(state) {
            return Answer::Unknown;
        }
        let Some((link, expires, policy)) = self.challenges.get(state).map(|r| (r.link, r.expires, r.policy)) else {
            return Answer::Unknown;
        };
        let accepted = || Answer::Accepted {
            policy: self.policy_names.name(policy),
        };
        match link {
            LinkState::Pending => {
                let left = self.instant(expires).saturating_duration_since(now);
                return Answer::LinkPending { left };
            }
            LinkState::Confirmed => {
                self.close_all(&mut list);
                return accepted();
            }
            LinkState::None => {}
        }
        if self.matching(&list, origin, code, now).flatten().is_some() {
            self.close_all(&mut list);
            return accepted();
        }
        let Some(void) = self.count_wrong(state) else {
            return Answer::Unknown;
        };
        if void {
            list.retain(|t| t != state);
        }
        Answer::Wrong { void }
    }

    /// Makes `tx` a link challenge whose link is `token`.
    fn attach(&self, user: &str, tx: &Transaction, token: &LinkToken) {
        let Some(mut record) = self.challenges.get_mut(tx) else {
            return;
        };
        record.link = LinkState::Pending;
        let forget_at = self.instant(record.expires) + LINK_MEMORY;
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
    }

    /// Looks a link up and, with `confirm`, confirms it if it is pending.
    fn link(&self, token: &LinkToken, confirm: bool) -> Result<LinkStatus, BackendUnavailable> {
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
mod view;
