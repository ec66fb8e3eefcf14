//! The challenge store in Redis, shared by the instances of a pool.
//!
//! Keys (all with a TTL, so nothing needs sweeping):
//! - `mailotp:c:{state}`: a hash with the user (`u`), the keyed digest of the
//!   code (`d`, sealed with a key derived from the pool key: a read of Redis
//!   hands out no codes), its end of validity in wall-clock Unix milliseconds
//!   (`e`), the origin (`o`, [`Origin::encode`]), the policy it was opened
//!   under (`p`, its name; empty: none) and its max attempts (`n`), the
//!   record's MAC (`m`), blocking-until in Redis server milliseconds (`b`)
//!   and wrong attempts (`a`); it expires with the challenge;
//! - `mailotp:u:{user}`: the user's challenges, oldest first, for "PIN again
//!   within blocking_timeout" and "a code of any of the user's challenges";
//! - `mailotp:open`: a sorted set of the pool's open States scored by their
//!   end of validity in Redis server milliseconds, kept by the scripts that
//!   open and close challenges, for the open-challenges gauge (module `open`);
//! - `mailotp:k:{digest of a link token}` (link delivery): the State (`t`),
//!   user (`u`), opening time (`o`) and their MAC (`m`); the challenge's `k`
//!   says whether its link is pending (`p`) or confirmed (`c`), followed by a
//!   MAC of that mark; kept an hour past the challenge, for "410 Gone".
//!
//! Redis is not trusted ([`super::record`]): every challenge read is checked
//! in Rust before it counts. `m` covers the key name (so the State) and the
//! immutable fields in `challenge_fields` order; the record must also be
//! the user's. A list entry whose record fails is ignored, so a State pushed
//! into `mailotp:u:{user}` by someone else never counts. `e` bounds a replay:
//! a record copied before it was used and put back later is honoured only
//! until its challenge would have expired anyway (no MAC can tell a record
//! put back from one never used; the README says so). The link mark `k`
//! carries its own MAC over the key name and the mark, written by the
//! instance that attached (`p`) or confirmed (`c`) the link; only a confirm
//! of a checked link record writes `c`, so it is honoured for link challenges
//! only, and a PIN+code never completes a link challenge.
//!
//! Not covered, on purpose: the counters the scripts update in place (a MAC
//! could not stop putting an old value back). `a` (wrong attempts) could be
//! reset to allow more guesses, so each instance also counts wrong answers
//! itself (module `attempts`): a challenge gets at most `max_attempts` wrong
//! answers per instance whatever Redis says. `b` (blocking-until) could be
//! pushed out, which only makes the user's PIN get the State already open (a
//! checked one) instead of a new mail until the challenge expires: denial of
//! service, as deleting is.
//!
//! An answer to a State this instance opened needs no read first: the
//! instance remembers the records it wrote (module `written`), compares the
//! code against its own digest, and ANSWER acts only while the record is,
//! field for field, that one (module `answer`); anything else is read and
//! checked first.
//!
//! Codes are compared here, in constant time, against the digests a script
//! returns; the changes (open, consume, a wrong attempt) are Lua scripts, so
//! each is atomic across instances: of two instances consuming the same State
//! at the same instant, one gets it. Times come from Redis (`TIME`), so the
//! instances' clocks need not agree for them; only `e`, which the MAC binds,
//! is wall time (an instance whose clock is ahead ends challenges early by
//! as much: keep the instances on NTP).

mod answer;
mod attempts;
mod deny;
mod link;
mod open;
mod opening;
mod scripts;
mod view;
mod written;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use redis::Script;

use super::mail::QueueArgs;
use super::record::{bad_record, RecordKey};
use super::{limiter, now_unix_ms, PoolKeys, Redis, KEY_PREFIX};
use crate::backend::BackendUnavailable;
use crate::challenge::{
    Answer, BeforePin, ChallengeSettings, ChallengeStore, CodeMatch, DenyStatus, LinkStatus, LinkToken, NewChallenge,
    Opened, Origin, Transaction, MAX_OPEN_PER_USER,
};
use crate::limits::{Throttled, Throttling};
use crate::otp::{CodeDigest, CodeSealer};
use scripts::{ANSWER, CONSUME, DIGESTS, OPEN, WRONG};

/// Values [`DIGESTS`] returns per challenge (and OPEN for the one that blocks).
const READ_FIELDS: usize = 9;

/// One of a user's open challenges, checked, as `answer` and `find` need it.
struct OpenChallenge {
    tx: Transaction,
    digest: CodeDigest,
    link: Link,
    /// [`Origin::encode`] of where it was opened.
    origin: Vec<u8>,
    /// The end of its validity (wall clock, from its authenticated record).
    expires_unix_ms: u64,
    /// The policy it was opened under, by name.
    policy: Option<String>,
    /// Wrong answers before it is void.
    max_attempts: u8,
}

/// Where a challenge's link stands, from its checked mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// An OTP challenge.
    None,
    /// Waiting for its link to be confirmed.
    Pending,
    /// Confirmed: the State with any password logs in, once.
    Confirmed,
}

const PENDING: u8 = b'p';
const CONFIRMED: u8 = b'c';

/// The immutable fields of a challenge record, in the order its MAC covers
/// them: the one list of what the MAC covers. A new immutable field is one
/// more pair here, written by OPEN (`scripts::OPEN`'s HSET), read back by
/// the scripts in `scripts::record_fields!` order (before `m`), taken apart
/// in [`RedisStore::checked`] (with [`READ_FIELDS`] one more), and checked
/// unchanged by ANSWER with no more work (module `answer` passes these pairs).
fn challenge_fields([user, digest, expires, origin, policy, max_attempts]: [&[u8]; 6]) -> [(&'static str, &[u8]); 6] {
    [
        ("u", user),
        ("d", digest),
        ("e", expires),
        ("o", origin),
        ("p", policy),
        ("n", max_attempts),
    ]
}

fn challenge_key(state: &str) -> String {
    format!("{KEY_PREFIX}c:{state}")
}

/// What one OPEN did.
enum Tried {
    /// Opened the new challenge.
    Opened,
    /// The user's newest challenge blocks; its record passed its check.
    Blocked {
        /// Its State.
        tx: Transaction,
        /// Whether it was opened from the same origin.
        mine: bool,
        /// How long it stays valid.
        left: Duration,
    },
    /// The user's list names a challenge whose record fails its check: the
    /// entry as listed, to be taken out.
    Forged(Vec<u8>),
    /// The mail would pass this throttle: nothing was opened.
    Throttled(Throttled),
    /// The mail was to be queued and the queue is full: nothing was opened.
    QueueFull,
}

/// Challenges in Redis.
pub(crate) struct RedisStore {
    redis: Redis,
    sealer: CodeSealer,
    records: RecordKey,
    settings: ArcSwap<ChallengeSettings>,
    /// `[email.throttling]`, counted by OPEN.
    throttling: Throttling,
    /// The pool's mail stream, where OPEN queues a challenge's mail.
    queue: QueueArgs,
    open: Script,
    digests: Script,
    consume: Script,
    wrong: Script,
    answer: Script,
    /// The challenge records this instance wrote (module `written`).
    written: written::WrittenRecords,
    links: link::Scripts,
    attempts: attempts::Attempts,
    count_open: Script,
    /// The pool's open challenges, as last counted.
    open_now: std::sync::atomic::AtomicUsize,
}

/// A throttle window: `mailotp:m:u:{user}` or `mailotp:m:ip:{address}`.
fn mail_window(kind: &str, name: &str) -> String {
    format!("{KEY_PREFIX}m:{kind}:{name}")
}

fn challenges_of(user: &str) -> String {
    format!("{KEY_PREFIX}u:{user}")
}

impl RedisStore {
    /// A store on `redis` that seals codes and authenticates its records
    /// with keys derived from the pool key.
    pub(crate) fn new(
        redis: Redis,
        keys: &PoolKeys,
        settings: ChallengeSettings,
        throttling: Throttling,
        queue: QueueArgs,
    ) -> Arc<RedisStore> {
        Arc::new(RedisStore {
            redis,
            sealer: keys.sealer.clone(),
            records: keys.records.clone(),
            settings: ArcSwap::from_pointee(settings),
            throttling,
            queue,
            open: Script::new(OPEN),
            digests: Script::new(DIGESTS),
            consume: Script::new(CONSUME),
            wrong: Script::new(WRONG),
            answer: Script::new(ANSWER),
            written: written::WrittenRecords::default(),
            links: link::Scripts::new(),
            attempts: attempts::Attempts::default(),
            count_open: Script::new(open::COUNT_OPEN),
            open_now: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// The user's open challenges with their digests, as one atomic read;
    /// only those that pass their check.
    async fn digests(&self, user: &str) -> Result<Vec<OpenChallenge>, BackendUnavailable> {
        Ok(self.read(user, false).await?.unwrap_or_default())
    }

    /// [`Self::digests`], asking the user's lock first when `lock`: `None`
    /// when the user is locked (nothing was read).
    async fn read(&self, user: &str, lock: bool) -> Result<Option<Vec<OpenChallenge>>, BackendUnavailable> {
        let script = &self.digests;
        let lock = if lock { limiter::key("l", user) } else { String::new() };
        let flat: Vec<Vec<u8>> = self
            .redis
            .run("read challenges", |mut c| async move {
                script
                    .key(challenges_of(user))
                    .key(lock)
                    .arg(KEY_PREFIX)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let Some((locked, flat)) = flat.split_first() else {
            return Ok(Some(Vec::new()));
        };
        if locked.as_slice() == b"1" {
            return Ok(None);
        }
        Ok(Some(
            flat.chunks_exact(READ_FIELDS)
                .filter_map(|read| self.checked(user, read))
                .collect(),
        ))
    }

    /// One challenge as [`DIGESTS`] read it, if it passes its check: its MAC,
    /// its owner, its link mark. A failure is logged and counted.
    fn checked(&self, user: &str, read: &[Vec<u8>]) -> Option<OpenChallenge> {
        let [state, owner, digest, expires, origin, policy, max_attempts, mac, mark] = read else {
            return None;
        };
        let Some(tx) = Transaction::from_state(state) else {
            bad_record(&format!("{KEY_PREFIX}u:{user}"), "an entry that is no state");
            return None;
        };
        let key = challenge_key(&tx.to_string());
        if !self.records.verify(
            &key,
            &challenge_fields([owner, digest, expires, origin, policy, max_attempts]),
            mac,
        ) {
            bad_record(&key, "challenge mac");
            return None;
        }
        let expires: u64 = std::str::from_utf8(expires).ok()?.parse().ok()?;
        if expires <= now_unix_ms() {
            // Put back after its time, or a clock behind this one's.
            return None;
        }
        if owner.as_slice() != user.as_bytes() {
            bad_record(&key, "another user's challenge");
            return None;
        }
        let Some(link) = self.link_mark(&key, mark) else {
            bad_record(&key, "link mark");
            return None;
        };
        let Ok(digest) = digest.as_slice().try_into() else {
            bad_record(&key, "digest length");
            return None;
        };
        Some(OpenChallenge {
            tx,
            digest,
            link,
            origin: origin.clone(),
            expires_unix_ms: expires,
            policy: (!policy.is_empty()).then(|| String::from_utf8_lossy(policy).into_owned()),
            max_attempts: std::str::from_utf8(max_attempts).ok()?.parse().ok()?,
        })
    }

    /// The mark `k` of the challenge at `key` says `link`, authenticated.
    fn mark(&self, key: &str, link: u8) -> Vec<u8> {
        let mac = self.records.mac(key, &[("k", &[link])]);
        [&[link][..], &mac].concat()
    }

    /// What a challenge's mark `k` says; `None` when it fails its check.
    fn link_mark(&self, key: &str, mark: &[u8]) -> Option<Link> {
        let Some((&link, mac)) = mark.split_first() else {
            return Some(Link::None);
        };
        if !matches!(link, PENDING | CONFIRMED) || !self.records.verify(key, &[("k", &[link])], mac) {
            return None;
        }
        Some(if link == PENDING {
            Link::Pending
        } else {
            Link::Confirmed
        })
    }

    /// The State among `open`'s code challenges from `origin` whose code is
    /// `code`; every digest is checked, in constant time, so the time taken
    /// does not tell which matched.
    fn matching(&self, open: &[OpenChallenge], origin: &Origin, code: &[u8]) -> CodeMatch {
        let mut found = CodeMatch::NoChallenge;
        for o in code_challenges(open, origin) {
            if self.sealer.matches(&o.tx, code, &o.digest) && !matches!(found, CodeMatch::Matched(_)) {
                found = CodeMatch::Matched(o.tx);
            } else if found == CodeMatch::NoChallenge {
                found = CodeMatch::Wrong;
            }
        }
        found
    }

    /// One wrong answer to `open`: counted in Redis and here. `None` when
    /// the challenge is no longer open.
    async fn wrong(&self, user: &str, open: &OpenChallenge) -> Result<Option<Answer>, BackendUnavailable> {
        let (state, max_attempts) = (&open.tx, open.max_attempts);
        let verdict = self
            .on_challenge("count attempt", &self.wrong, user, state, max_attempts)
            .await?;
        let left = Duration::from_millis(open.expires_unix_ms.saturating_sub(now_unix_ms()));
        Ok(match verdict {
            0 | 1 => Some(
                self.counted_wrong(user, state, verdict == 1, (max_attempts, left))
                    .await?,
            ),
            _ => None,
        })
    }

    /// A wrong answer to `state` that Redis counted (`void`: it was the last
    /// attempt there): counted here too, which voids it when Redis lost
    /// attempts counted here (reset by someone).
    /// `max_attempts` and `left` are the challenge's own.
    async fn counted_wrong(
        &self,
        user: &str,
        state: &Transaction,
        void: bool,
        (max_attempts, left): (u8, Duration),
    ) -> Result<Answer, BackendUnavailable> {
        let here = self.attempts.wrong(*state, left);
        if !void && here >= max_attempts {
            self.cancel(user, state).await?;
            return Ok(Answer::Wrong { void: true });
        }
        Ok(Answer::Wrong { void })
    }

    /// Runs `script` on one of `user`'s challenges: KEYS the user's list and
    /// failures in a row, ARGV prefix, user, `state`, then `last`.
    async fn on_challenge(
        &self,
        what: &'static str,
        script: &Script,
        user: &str,
        state: &Transaction,
        last: impl redis::ToRedisArgs + Send + Sync,
    ) -> Result<i64, BackendUnavailable> {
        self.redis
            .run(what, |mut c| async move {
                script
                    .key(challenges_of(user))
                    .key(limiter::key("f", user))
                    .arg(KEY_PREFIX)
                    .arg(user)
                    .arg(state.to_string())
                    .arg(last)
                    .invoke_async(&mut c)
                    .await
            })
            .await
    }

    async fn consume_pair(
        &self,
        user: &str,
        state: &Transaction,
        matched: &Transaction,
    ) -> Result<bool, BackendUnavailable> {
        let done = self
            .on_challenge("consume challenge", &self.consume, user, state, matched.to_string())
            .await?;
        Ok(done == 1)
    }

    /// Takes an entry out of the user's list (its record stays: it may be
    /// another user's, copied here).
    async fn forget(&self, user: &str, entry: &[u8]) -> Result<(), BackendUnavailable> {
        self.redis
            .run("forget challenge", |mut c| async move {
                redis::cmd("LREM")
                    .arg(challenges_of(user))
                    .arg(0)
                    .arg(entry)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await
    }
}

/// The answer that accepted `this` (the State's challenge).
fn accepted(this: &OpenChallenge) -> Answer {
    Answer::Accepted {
        policy: this.policy.clone(),
    }
}

/// The code challenges among `open` from `origin`: a link challenge's code is
/// never mailed, and PIN+code must not stand in for its confirmation.
fn code_challenges<'a>(open: &'a [OpenChallenge], origin: &Origin) -> impl Iterator<Item = &'a OpenChallenge> {
    let origin = origin.encode().into_bytes();
    open.iter().filter(move |o| o.link == Link::None && o.origin == origin)
}

#[async_trait]
impl ChallengeStore for RedisStore {
    async fn open(
        &self,
        user: &str,
        origin: &Origin,
        new: NewChallenge<'_>,
        client_ip: Option<&str>,
    ) -> Result<Opened, BackendUnavailable> {
        let link = new.link.map(|token| self.link_args(user, &new.tx, token));
        // A State that blocks counts only when its record passes its check
        // (handed out, or refusing the PIN from elsewhere); a forged one
        // leaves the user's list and the open is retried.
        let origin = origin.encode();
        for _ in 0..=MAX_OPEN_PER_USER {
            match self.try_open(user, &origin, new, link.as_ref(), client_ip).await? {
                Tried::Opened => return Ok(Opened::New),
                Tried::Throttled(limit) => return Ok(Opened::Throttled(limit)),
                Tried::QueueFull => return Ok(Opened::MailQueueFull),
                Tried::Blocked { tx, mine: true, left } => return Ok(Opened::AlreadySent { tx, left }),
                Tried::Blocked { mine: false, .. } => return Ok(Opened::SentElsewhere),
                Tried::Forged(entry) => self.forget(user, &entry).await?,
            }
        }
        Err(BackendUnavailable {
            reason: format!("redis keeps handing out unchecked challenges for {user}"),
        })
    }

    async fn answer(
        &self,
        state: &Transaction,
        user: &str,
        origin: &Origin,
        code: &[u8],
    ) -> Result<Answer, BackendUnavailable> {
        self.answer_state(state, user, origin, code).await
    }

    async fn before_pin(&self, user: &str, origin: &Origin, codes: &[&[u8]]) -> Result<BeforePin, BackendUnavailable> {
        Ok(match self.read(user, true).await? {
            None => BeforePin {
                locked: true,
                codes: vec![CodeMatch::NoChallenge; codes.len()],
            },
            Some(open) => BeforePin {
                locked: false,
                codes: codes.iter().map(|code| self.matching(&open, origin, code)).collect(),
            },
        })
    }

    async fn find(&self, user: &str, origin: &Origin, code: &[u8]) -> Result<CodeMatch, BackendUnavailable> {
        let open = self.digests(user).await?;
        Ok(self.matching(&open, origin, code))
    }

    async fn wrong_code(&self, user: &str, origin: &Origin) -> Result<(), BackendUnavailable> {
        let open = self.digests(user).await?;
        for o in code_challenges(&open, origin) {
            self.wrong(user, o).await?;
        }
        Ok(())
    }

    async fn consume(&self, user: &str, tx: &Transaction) -> Result<bool, BackendUnavailable> {
        self.consume_pair(user, tx, tx).await
    }

    async fn cancel(&self, user: &str, tx: &Transaction) -> Result<(), BackendUnavailable> {
        let key = format!("{KEY_PREFIX}c:{tx}");
        self.redis
            .run("cancel challenge", |mut c| async move {
                redis::pipe()
                    .atomic()
                    .del(key)
                    .ignore()
                    .lrem(challenges_of(user), 0, tx.to_string())
                    .ignore()
                    .zrem(open::OPEN_SET, tx.to_string())
                    .ignore()
                    .query_async::<()>(&mut c)
                    .await
            })
            .await
    }

    /// The whole pool's, as the watcher last counted them (module `open`).
    fn open_count(&self) -> usize {
        self.open_now.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn set_settings(&self, settings: ChallengeSettings) {
        self.settings.store(Arc::new(settings));
    }

    async fn link_status(&self, token: &LinkToken) -> Result<LinkStatus, BackendUnavailable> {
        self.link(token, false).await
    }

    async fn confirm_link(&self, token: &LinkToken) -> Result<LinkStatus, BackendUnavailable> {
        self.link(token, true).await
    }

    async fn deny(&self, token: &LinkToken, take: bool) -> Result<DenyStatus, BackendUnavailable> {
        self.deny_record(token, take).await
    }

    async fn close_user(&self, user: &str, tx: &Transaction) -> Result<bool, BackendUnavailable> {
        self.close_all_of(user, tx).await
    }
}

#[cfg(test)]
mod tests;
