//! challenge: open e-mail challenges, keyed by transaction id (the RADIUS State).
//!
//! [`ChallengeStore`] is the seam: `auth` opens, answers and consumes
//! challenges through it, `app` builds one and changes its settings through
//! it, and neither learns how they are kept. Its API carries only plain values
//! (user names, transaction ids, codes), so that the store in Redis
//! (`crate::redis::store`) stands behind it as well as [`MemoryStore`], the
//! in-process one. A store keeps a keyed digest of each code, never the code,
//! and never logs.
//!
//! Every challenge belongs to its [`Origin`]: a State, a code or a confirmed
//! link from another origin never finishes, voids or reveals it.
//!
//! The abuse controls that go with a challenge are the store's part of the
//! step too, so that a store in Redis does them in the same round trip:
//! opening counts the e-mail toward the throttles, answering refuses a locked
//! user first and a consumed challenge resets the failures in a row (the
//! counters themselves are `limits`').

use std::time::Duration;

use async_trait::async_trait;

use crate::backend::BackendUnavailable;
use crate::config::EmailConfig;
use crate::limits::Throttled;
use crate::otp::Otp;

pub use crate::ids::{LinkToken, Origin, Transaction};

/// How many challenges one user may have open at once; opening another closes
/// the oldest. With the LinOTP defaults (600 s validity, 120 s blocking) a
/// user who keeps retrying reaches five.
pub const MAX_OPEN_PER_USER: usize = 5;

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

/// How long a used or expired link is remembered, so that it gets "410 Gone"
/// rather than "404 Not Found".
pub const LINK_MEMORY: Duration = Duration::from_secs(3600);

/// Timing and attempt limits, from `[email]`; a reload applies them to
/// challenges opened afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChallengeSettings {
    /// How long a code is good for (`challenge_validity`).
    pub validity: Duration,
    /// How long a PIN again gets the open challenge instead of a new e-mail
    /// (`blocking_timeout`).
    pub blocking: Duration,
    /// Wrong answers to one challenge before it is void (`max_attempts`):
    /// `[email]`'s; `auth` gives each challenge its own (its policy's) in
    /// [`NewChallenge`], which the stores count against.
    pub max_attempts: u8,
}

impl From<&EmailConfig> for ChallengeSettings {
    fn from(email: &EmailConfig) -> ChallengeSettings {
        ChallengeSettings {
            validity: email.challenge_validity,
            blocking: email.blocking_timeout,
            max_attempts: email.max_attempts,
        }
    }
}

/// What a new challenge is made of.
#[derive(Debug, Clone, Copy)]
pub struct NewChallenge<'a> {
    /// Its transaction (the State).
    pub tx: Transaction,
    /// The code mailed (a link challenge's too: never mailed, never enough).
    pub code: &'a Otp,
    /// With link delivery, the link's token.
    pub link: Option<&'a LinkToken>,
    /// How long it stays valid: `[email]`'s or the user's policy's.
    pub validity: Duration,
    /// Wrong answers before it is void: `[email]`'s or the user's policy's.
    pub max_attempts: u8,
    /// The name of the user's policy, kept with the challenge so that its
    /// answer gets that policy's reply attributes.
    pub policy: Option<&'a str>,
    /// With `[link]`: the login's deny ("this wasn't me") token and record,
    /// kept (the token as a keyed digest) for the challenge's validity when
    /// it opens, so that [`ChallengeStore::deny`] finds them.
    pub deny: Option<(&'a LinkToken, &'a DenyRecord)>,
    /// The mail job as the pool's outbox sealed it for this store to queue
    /// in the same step (`MailQueue::sealed_for_store`); given only to the
    /// store in Redis, whose outbox it is. `None`: the caller queues the
    /// mail once the challenge is open.
    pub mail: Option<&'a [u8]>,
}

/// What a PIN request opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// A new challenge under the given transaction: its e-mail must go out.
    New,
    /// The user's challenge from the same origin, still within the blocking
    /// timeout: no new e-mail.
    AlreadySent {
        /// Its transaction.
        tx: Transaction,
        /// How long it stays valid (the NAS's Session-Timeout).
        left: Duration,
    },
    /// The user's newest challenge is within the blocking timeout but belongs
    /// to another origin: no new e-mail, and its State is not handed out.
    SentElsewhere,
    /// A new challenge would have been opened, but its e-mail would pass
    /// this limit of `[email.throttling]`: nothing was opened or counted.
    Throttled(Throttled),
    /// The mail was to be queued with the challenge, and the queue is full:
    /// nothing was opened or counted.
    MailQueueFull,
}

/// What the code part of a PIN+code password is, among the user's open code
/// challenges from the request's origin (link challenges never count: their
/// code is never mailed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeMatch {
    /// The code of this challenge.
    Matched(Transaction),
    /// There are such challenges, and the code is none of theirs.
    Wrong,
    /// There are none.
    NoChallenge,
}

/// What [`ChallengeStore::before_pin`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeforePin {
    /// The user is locked out (the limiter's lock, read with the challenges).
    pub locked: bool,
    /// Per code asked, in order; all `NoChallenge` when `locked` (a store
    /// may then read nothing else).
    pub codes: Vec<CodeMatch>,
}

/// The outcome of answering a challenge's State with a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The code belongs to one of the user's open challenges; all of them are
    /// now closed.
    Accepted {
        /// The policy the State's challenge was opened under, by name.
        policy: Option<String>,
    },
    /// Wrong code; `void` when that was the last attempt the challenge had.
    Wrong {
        /// Whether the challenge is now closed.
        void: bool,
    },
    /// No open challenge of this user from this origin under that State
    /// (expired, used, never ours, another user's or another origin's).
    Unknown,
    /// A link challenge whose link was not confirmed yet: ask again, count
    /// no attempt (nothing was guessed).
    LinkPending {
        /// How long the challenge stays valid (the NAS's Session-Timeout).
        left: Duration,
    },
    /// The user is locked out: nothing was compared or counted.
    Locked,
}

/// Where challenges live. Every method is atomic for one user: two requests
/// racing on the same challenge never both succeed.
#[async_trait]
pub trait ChallengeStore: Send + Sync + 'static {
    /// Opens the challenge `new` for `user` from `origin` (its blocking
    /// timeout ends with its validity at the latest), unless the user's
    /// newest one is still within the blocking timeout, and counts its
    /// e-mail toward the throttles, as triggered from `client_ip` (unless a
    /// limit is reached: then nothing is opened). With a `link`, it is a link
    /// challenge: answered only after that token is confirmed. When it
    /// opens, it also keeps `new.deny` and queues `new.mail` (refusing with
    /// `MailQueueFull`, nothing opened, when the queue is full). All in one
    /// step (one round trip for a store in Redis).
    async fn open(
        &self,
        user: &str,
        origin: &Origin,
        new: NewChallenge<'_>,
        client_ip: Option<&str>,
    ) -> Result<Opened, BackendUnavailable>;

    /// Answers the challenge under `state` for `user` from `origin` with
    /// `code`. A code of any of the user's open code challenges from the same
    /// origin counts (the older mail may arrive last); a wrong one uses up one
    /// attempt of the State's challenge. A State of another origin is
    /// `Unknown` and changes nothing. A locked user (lockout) is `Locked`
    /// before anything is compared; an accepted answer starts the user's
    /// failures in a row from zero (a store in Redis reads the lock with the
    /// challenges and resets the failures with the consume).
    async fn answer(
        &self,
        state: &Transaction,
        user: &str,
        origin: &Origin,
        code: &[u8],
    ) -> Result<Answer, BackendUnavailable>;

    /// What the PIN path reads before the PIN check, changing nothing and in
    /// one step (one round trip for a store in Redis): whether `user` is
    /// locked out, and for each of `codes` (the code parts the password may
    /// end in) what [`ChallengeStore::find`] would say.
    async fn before_pin(&self, user: &str, origin: &Origin, codes: &[&[u8]]) -> Result<BeforePin, BackendUnavailable>;

    /// Which of the user's open code challenges from `origin` `code` belongs
    /// to, changing nothing.
    async fn find(&self, user: &str, origin: &Origin, code: &[u8]) -> Result<CodeMatch, BackendUnavailable>;

    /// A wrong code in a PIN+code password: one attempt of each of the user's
    /// open code challenges from `origin` is used up (those at `max_attempts`
    /// are void).
    async fn wrong_code(&self, user: &str, origin: &Origin) -> Result<(), BackendUnavailable>;

    /// Closes all of the user's challenges if `tx` is still open among them
    /// and starts the user's failures in a row from zero; `false` when it is
    /// not (another request consumed it first).
    async fn consume(&self, user: &str, tx: &Transaction) -> Result<bool, BackendUnavailable>;

    /// Closes one challenge, e.g. when its e-mail could not be queued.
    async fn cancel(&self, user: &str, tx: &Transaction) -> Result<(), BackendUnavailable>;

    /// How many challenges are open, for metrics.
    fn open_count(&self) -> usize;

    /// Applies new limits to challenges opened from now on; challenges
    /// already open keep theirs. Its `validity` and `max_attempts` are
    /// `[email]`'s; `open` is given each challenge's own.
    fn set_settings(&self, settings: ChallengeSettings);

    /// Whether every call completes at once, without waiting on I/O (a store
    /// in this process). The server then answers State + code requests on
    /// its receive loop instead of in a task of their own.
    fn answers_at_once(&self) -> bool {
        false
    }

    /// What `token` stands for, changing nothing (the page a GET shows).
    async fn link_status(&self, token: &LinkToken) -> Result<LinkStatus, BackendUnavailable>;

    /// Confirms the challenge of `token` once; `Pending` when this call did.
    async fn confirm_link(&self, token: &LinkToken) -> Result<LinkStatus, BackendUnavailable>;

    /// What the deny token stands for; with `take`, an open one is used up
    /// by this call (`Open` only for the one call that did).
    async fn deny(&self, token: &LinkToken, take: bool) -> Result<DenyStatus, BackendUnavailable>;

    /// Closes every open challenge of `user` (their States get
    /// Access-Reject); `true` when `tx` was still open among them.
    async fn close_user(&self, user: &str, tx: &Transaction) -> Result<bool, BackendUnavailable>;
}

mod deny;
mod memory;
mod operator;

pub use deny::{DenyRecord, DenyStatus};
pub(crate) use operator::{LastResult, MemoryState, OpenChallenge, OperatorState, LAST_RESULT_KEPT};

pub use memory::MemoryStore;
