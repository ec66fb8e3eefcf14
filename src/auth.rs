//! auth: the Access-Request decision, top to bottom in [`Authenticator::decide`],
//! and the [`RequestHandler`] seam a transport hands requests to.
//!
//! It gets a request that `server` has already authenticated and decoded, and
//! returns a [`Decision`]: code, State, Reply-Message and the reason for the
//! log. It never touches sockets and never waits for mail: it only queues it.
//! Every "no" that could tell a stranger whether a user exists (unknown user,
//! wrong PIN, inactive) is the same bare Access-Reject.
//!
//! Users are counted under their canonical name (what the directory's verdict
//! carries), never the User-Name as typed; a login belongs to its [`Origin`],
//! so that the PIN alone never finishes, voids or reveals a login the user
//! started elsewhere. Unknown and known users cost the same store round trips.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use lettre::message::Mailbox;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::backend::BackendUnavailable;
use crate::challenge::{Answer, ChallengeStore, CodeMatch, LinkToken, NewChallenge, Opened, Origin, Transaction};
use crate::config::{Delivery, EmailConfig};
use crate::limits::Limiter;
use crate::mail::{AskedBy, MailError, MailJob, MailQueue};
use crate::otp::Otp;
use crate::policy::{Policies, Policy, SecondFactor, Subject};
use crate::users::{DirectoryError, LockGate, PinCheck, User, UserDirectory};

mod answers;
mod asked;
mod decision;
mod handler;

use answers::{mask, named, prompt, reason_for, refusal, with_session_timeout};
pub(crate) use decision::{Decision, Reason, Request};
pub(crate) use handler::{Handler, Incoming, Kind, RequestHandler};

/// Reply-Message when the same user asks again within the blocking timeout
/// (LinOTP's wording, which admins search for).
pub(crate) const ALREADY_SUBMITTED: &str = "e-mail with otp already submitted";
/// Reply-Message when an e-mail throttle is reached.
pub(crate) const THROTTLED: &str = "Too many e-mails were sent to you, please try again later";
/// Reply-Message when a link challenge is answered before its link was confirmed.
pub(crate) const LINK_PENDING: &str = "Open the link in the e-mail and press Confirm, then press Enter here";
/// Reply-Message when the mail queue is full.
pub(crate) const QUEUE_FULL: &str = "The e-mail service is busy, please try again later";

/// The decision could not be made: a store or directory is unreachable. The
/// server then answers nothing, so that a proxy in front fails over.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unavailable {
    /// The challenge store.
    #[error(transparent)]
    Store(#[from] BackendUnavailable),
    /// The user directory.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// A backend reported itself down (see `health`).
    #[error("a backend is down")]
    Backend,
}

/// The `[email]` settings the decision uses; replaced on reload.
#[derive(Debug, Clone)]
pub(crate) struct AuthSettings {
    /// Digits per code.
    pub otp_length: u32,
    /// A fixed code (test mode).
    pub fixed_otp: Option<String>,
    /// How long codes are valid, to date the mail job.
    pub validity: std::time::Duration,
    /// With link delivery: the base URL the e-mailed links start with.
    pub link_base: Option<String>,
    /// With `[link]` configured: the base URL of the deny links every mail
    /// carries.
    pub deny_base: Option<String>,
}

impl AuthSettings {
    /// These settings with the overrides of `policy`.
    fn for_policy(&self, policy: Option<&Policy>) -> AuthSettings {
        let mut settings = self.clone();
        if let Some(validity) = policy.and_then(|p| p.challenge_validity) {
            settings.validity = validity;
        }
        if let Some(otp_length) = policy.and_then(|p| p.otp_length) {
            settings.otp_length = otp_length;
        }
        settings
    }
}

impl From<&EmailConfig> for AuthSettings {
    fn from(e: &EmailConfig) -> AuthSettings {
        AuthSettings {
            otp_length: e.otp_length,
            fixed_otp: e.fixed_otp.clone(),
            validity: e.challenge_validity,
            link_base: match &e.delivery {
                Delivery::Link(link) => Some(link.base_url.clone()),
                Delivery::Otp => None,
            },
            deny_base: e.pages.as_ref().map(|p| p.base_url.clone()),
        }
    }
}

/// Everything the decision needs.
pub(crate) struct Authenticator {
    /// The users (swapped whole on reload).
    pub users: ArcSwap<Box<dyn UserDirectory>>,
    /// Open challenges.
    pub challenges: Arc<dyn ChallengeStore>,
    /// Throttles and lockout.
    pub limits: Arc<dyn Limiter>,
    /// The mail queue.
    pub mail: MailQueue,
    /// Code settings (swapped on reload).
    pub settings: ArcSwap<AuthSettings>,
    /// Logins their user denied on the deny page (counted by `link`).
    pub denied: Arc<std::sync::atomic::AtomicU64>,
    /// `[[policies]]` (swapped on reload).
    pub policies: ArcSwap<Policies>,
}

impl Authenticator {
    /// Decides an Access-Request.
    pub(crate) async fn decide(&self, req: &Request<'_>) -> Result<Decision, Unavailable> {
        if req.user.is_empty() {
            return Ok(Decision::reject(Reason::NoUserName));
        }
        let origin = req.origin();
        if let Some(state) = req.state {
            return self.answer(req, &origin, state).await;
        }
        // The lock and the user's challenges, read once before the hash.
        let splits = self.splits(req.password);
        let codes: Vec<&[u8]> = splits.iter().map(|(_, code)| *code).collect();
        let before = self.challenges.before_pin(req.user, &origin, &codes).await?;
        let read = Read {
            user: req.user,
            locked: before.locked,
        };
        for ((pin, code), found) in splits.iter().zip(&before.codes) {
            // The password ends in the code of a challenge of this user from
            // here: its start is the PIN (one hash, as on the plain path).
            if let CodeMatch::Matched(_) = found {
                let check = self.check_pin(req.user, pin, read).await?;
                return self.pin_and_code(req, &origin, check, code).await;
            }
        }
        let split = self.split(req.password);
        let check = self.check_pin(req.user, req.password, read).await?;
        if let Some((pin, code)) = split {
            let found = codes
                .iter()
                .position(|c| c.len() == code.len())
                .map(|i| before.codes[i]);
            if let Some(decision) = self
                .maybe_wrong_code(req, &origin, &check, (pin, code, found), read)
                .await?
            {
                return Ok(decision);
            }
        }
        let decision = match self.first_factor(req.user, check).await? {
            Ok(user) => {
                let name = user.name.clone();
                let policy = self.policy(req, &name, &user.groups);
                let decision = self.second_factor(req, &origin, user, policy.as_ref()).await?;
                named(decision, req.user, &name)
            }
            Err(decision) => decision,
        };
        Ok(decision)
    }

    /// The policy for the canonical `name` in `groups` asking with `req`,
    /// resolved once per request; `None`: the `[email]` settings.
    fn policy(&self, req: &Request<'_>, name: &str, groups: &[String]) -> Option<Policy> {
        let who = Subject {
            user: name,
            groups,
            client: req.client,
            calling_station: req.client_ip,
        };
        self.policies.load().resolve(&who).cloned()
    }

    /// Right PIN: what the policy asks for. A denied login is answered like
    /// a wrong PIN but counts as no failure (the PIN was right).
    async fn second_factor(
        &self,
        req: &Request<'_>,
        origin: &Origin,
        user: User,
        policy: Option<&Policy>,
    ) -> Result<Decision, Unavailable> {
        let mut decision = match policy.map_or(SecondFactor::Email, |p| p.second_factor) {
            SecondFactor::None => self.accept(&user.name, Reason::Exempt, policy),
            SecondFactor::Deny => {
                // In place of counting a failure: the same round trip.
                self.limits.is_locked(&user.name).await?;
                Decision::reject(Reason::DeniedByPolicy)
            }
            SecondFactor::Email => {
                let user = with_trusted_email(user, req.trusted_email);
                self.open_challenge(req, origin, user, policy).await?
            }
        };
        decision.policy = policy.map(|p| p.name.clone());
        Ok(decision)
    }

    /// The directory's verdict on `pin` for `typed`, the lockout asked in
    /// between (under the canonical name the directory found).
    async fn check_pin(&self, typed: &str, pin: &[u8], read: Read<'_>) -> Result<PinCheck, Unavailable> {
        let gate = Gate {
            limits: self.limits.as_ref(),
            read,
            error: Mutex::new(None),
        };
        let check = self.users.load().check_pin(typed, pin, &gate).await?;
        match gate.error.into_inner().expect("gate lock poisoned") {
            Some(error) => Err(error.into()),
            None => Ok(check),
        }
    }

    /// The password cut into a PIN and a code of `otp_length` characters,
    /// when it is longer than a code.
    fn split<'p>(&self, password: &'p [u8]) -> Option<(&'p [u8], &'p [u8])> {
        split_at_code(password, self.settings.load().otp_length)
    }

    /// The password cut as [`Self::split`] does, then for each other code
    /// length a policy sets (the user's policy is not known before the PIN).
    fn splits<'p>(&self, password: &'p [u8]) -> Vec<(&'p [u8], &'p [u8])> {
        let mut lengths = vec![self.settings.load().otp_length];
        for length in self.policies.load().0.iter().filter_map(|p| p.otp_length) {
            if !lengths.contains(&length) {
                lengths.push(length);
            }
        }
        lengths.into_iter().filter_map(|l| split_at_code(password, l)).collect()
    }

    /// State + code: the second round of a challenge. The store refuses a
    /// State of another user or origin, so a name as typed that is not the
    /// canonical one is refused here, never accepted for someone else; it
    /// also refuses a locked user first, and resets the failures on success.
    async fn answer(&self, req: &Request<'_>, origin: &Origin, state: &[u8]) -> Result<Decision, Unavailable> {
        let Some(tx) = Transaction::from_state(state) else {
            return Ok(Decision::reject(Reason::UnknownState));
        };
        let reason = match self.challenges.answer(&tx, req.user, origin, req.password).await? {
            Answer::Locked => return Ok(Decision::reject(Reason::Locked)),
            Answer::Accepted => {
                // No directory on this path: the groups the users file knows.
                let groups = self.users.load().local_groups(req.user);
                let policy = self.policy(req, req.user, &groups);
                return Ok(self.accept(req.user, Reason::OtpAccepted, policy.as_ref()));
            }
            Answer::Wrong { void: false } => Reason::WrongOtp,
            Answer::Wrong { void: true } => Reason::ChallengeVoid,
            Answer::Unknown => return Ok(Decision::reject(Reason::UnknownState)),
            Answer::LinkPending { left } => {
                let message = LINK_PENDING.to_owned();
                let decision = prompt(req.challenge_mode, tx, message, Reason::LinkPending);
                return Ok(with_session_timeout(decision, left));
            }
        };
        self.failure(req.user, reason).await
    }

    /// The whole password was not the PIN; when the user it names has code
    /// challenges open from here, it may be the PIN followed by a wrong code
    /// (or a code the name as typed did not find): then its start is checked
    /// as the PIN. Unknown users make the same store read.
    async fn maybe_wrong_code(
        &self,
        req: &Request<'_>,
        origin: &Origin,
        check: &PinCheck,
        (pin, code, found): (&[u8], &[u8], Option<CodeMatch>),
        read: Read<'_>,
    ) -> Result<Option<Decision>, Unavailable> {
        let name = match check {
            PinCheck::WrongPin(name) => name.as_str(),
            PinCheck::UnknownUser => req.user,
            _ => return Ok(None),
        };
        let found = match found {
            // Read before the hash, under this name.
            Some(found) if name == req.user => found,
            _ => self.challenges.find(name, origin, code).await?,
        };
        if found == CodeMatch::NoChallenge {
            return Ok(None);
        }
        let check = self.check_pin(req.user, pin, read).await?;
        if !matches!(check, PinCheck::Valid(_)) {
            // Neither the whole nor the start is the PIN: one wrong PIN.
            return Ok(None);
        }
        Ok(Some(self.pin_and_code(req, origin, check, code).await?))
    }

    /// PIN followed by the code in one password, without State (reject mode,
    /// or clients that cannot do challenges): only the user's open code
    /// challenges from this origin count, never a link challenge. A wrong code
    /// is a wrong answer to each of them and a failure toward the lockout.
    async fn pin_and_code(
        &self,
        req: &Request<'_>,
        origin: &Origin,
        check: PinCheck,
        code: &[u8],
    ) -> Result<Decision, Unavailable> {
        let user = match self.first_factor(req.user, check).await? {
            Ok(user) => user,
            Err(decision) => return Ok(decision),
        };
        let name = user.name.as_str();
        let decision = match self.challenges.find(name, origin, code).await? {
            CodeMatch::Matched(tx) if self.challenges.consume(name, &tx).await? => {
                let policy = self.policy(req, name, &user.groups);
                self.accept(name, Reason::PinOtpAccepted, policy.as_ref())
            }
            CodeMatch::Wrong => {
                self.challenges.wrong_code(name, origin).await?;
                self.failure(name, Reason::WrongOtp).await?
            }
            _ => Decision::reject(Reason::UnknownState),
        };
        Ok(named(decision, req.user, name))
    }

    /// The PIN check's verdict as a user or the answer. The lockout was
    /// applied by the directory (see [`Gate`]): a locked user gets the answer
    /// of a wrong PIN whatever the PIN was and however the name was spelled.
    /// Names that resolve to nobody are read under the name as typed and
    /// never written, so they cost the same round trips and grow nothing.
    async fn first_factor(&self, typed: &str, check: PinCheck) -> Result<Result<User, Decision>, Unavailable> {
        let canonical = check.canonical().unwrap_or(typed).to_owned();
        let decision = match check {
            PinCheck::Valid(user) => return Ok(Ok(user)),
            PinCheck::WrongPin(name) => self.failure(&name, Reason::WrongPin).await?,
            other => {
                if other == PinCheck::Unusable && canonical != typed {
                    // Refused before the gate was asked: its round trip too
                    // (under the name as typed the lock was read already).
                    self.limits.is_locked(&canonical).await?;
                }
                // In place of counting a failure: the same round trip.
                self.limits.is_locked(&canonical).await?;
                Decision::reject(reason_for(&other))
            }
        };
        Ok(Err(named(decision, typed, &canonical)))
    }

    /// A wrong PIN or code from a user that exists (canonical name): counted
    /// toward lockout.
    async fn failure(&self, name: &str, reason: Reason) -> Result<Decision, Unavailable> {
        if self.limits.failed(name).await? {
            tracing::warn!(user = %name, "user locked after too many failures in a row");
        }
        Ok(Decision::reject(reason))
    }

    /// Access-Accept with the user's reply attributes, then the policy's
    /// (the store that consumed the challenge reset the failures in a row).
    /// A code that finishes a login where the policy now denies it (a State
    /// opened through another client with the same Calling-Station-Id) is
    /// refused like the PIN would have been.
    fn accept(&self, name: &str, reason: Reason, policy: Option<&Policy>) -> Decision {
        if policy.is_some_and(|p| p.second_factor == SecondFactor::Deny) {
            return Decision {
                policy: policy.map(|p| p.name.clone()),
                ..Decision::reject(Reason::DeniedByPolicy)
            };
        }
        let mut attributes = self.users.load().reply_attributes(name);
        attributes.extend(policy.iter().flat_map(|p| p.reply.iter().cloned()));
        Decision {
            attributes,
            policy: policy.map(|p| p.name.clone()),
            ..Decision::accept(reason)
        }
    }

    /// Right PIN: a new challenge and its mail, or the open one within the
    /// blocking timeout (its State only to the origin that opened it). The
    /// mail job and the deny link are made first, so that a store in Redis
    /// opens the challenge, keeps the deny record and queues the mail in
    /// one step.
    async fn open_challenge(
        &self,
        req: &Request<'_>,
        origin: &Origin,
        user: User,
        policy: Option<&Policy>,
    ) -> Result<Decision, Unavailable> {
        let settings = self.settings.load().for_policy(policy);
        let otp = match &settings.fixed_otp {
            Some(code) => {
                tracing::warn!(user = %user.name, "fixed_otp_for_testing used instead of a random code (test mode)");
                Otp::fixed(code)
            }
            None => Otp::generate(settings.otp_length),
        };
        let (tx, name) = (Transaction::random(), user.name.clone());
        let token = settings.link_base.is_some().then(LinkToken::random);
        let asked = asked::asked_by(req, &settings);
        let deny = asked::deny_link(&name, tx, &asked, &settings);
        let deny_url = deny.as_ref().map(|d| d.url.clone());
        let (job, message) = new_job(user, tx, otp, token.as_ref(), deny_url, asked, &settings);
        let sealed = match self.mail.sealed_for_store(&job) {
            Ok(sealed) => sealed,
            Err(error) => return Ok(cannot_queue(&name, &error)),
        };
        let new = NewChallenge {
            tx,
            code: &job.otp,
            link: token.as_ref(),
            validity: settings.validity,
            deny: deny.as_ref().map(|d| (&d.token, &d.record)),
            mail: sealed.as_deref(),
        };
        match self.challenges.open(&name, origin, new, req.client_ip).await? {
            Opened::AlreadySent { tx: open, left } => {
                let message = format!("{ALREADY_SUBMITTED} (transaction {open})");
                let decision = prompt(req.challenge_mode, open, message, Reason::AlreadySent);
                return Ok(with_session_timeout(decision, left));
            }
            Opened::SentElsewhere => {
                // Someone else may have the PIN: the admin should know.
                tracing::warn!(user = %name, %origin, "right PIN from another origin while the user's challenge is open: refused without State");
                return Ok(refusal(ALREADY_SUBMITTED, Reason::SentElsewhere));
            }
            Opened::Throttled(limit) => {
                tracing::info!(user = %name, limit = limit.as_str(), "e-mail throttled");
                return Ok(refusal(THROTTLED, Reason::Throttled));
            }
            Opened::MailQueueFull => {
                return Ok(cannot_queue(&name, &"mail queue full"));
            }
            Opened::New if sealed.is_none() => {
                if let Err(refusal) = self.enqueue(job).await? {
                    return Ok(refusal);
                }
            }
            // The store queued it with the challenge.
            Opened::New => {}
        }
        Ok(with_session_timeout(
            prompt(req.challenge_mode, tx, message, Reason::ChallengeSent),
            settings.validity,
        ))
    }

    /// Queues the mail of a challenge just opened (the store counted it
    /// toward the throttles); when it cannot, closes the challenge and
    /// returns the refusal.
    async fn enqueue(&self, job: MailJob) -> Result<Result<(), Decision>, Unavailable> {
        let (name, tx) = (job.user.clone(), job.tx);
        match self.mail.enqueue(job).await {
            Ok(()) => Ok(Ok(())),
            Err(MailError::Unavailable(error)) => Err(error.into()),
            Err(error) => {
                self.challenges.cancel(&name, &tx).await?;
                Ok(Err(cannot_queue(&name, &error)))
            }
        }
    }
}

/// The mail job of a new challenge, with the link of `token` if it is a
/// link challenge, and the prompt that goes with it.
fn new_job(
    user: User,
    tx: Transaction,
    otp: Otp,
    token: Option<&LinkToken>,
    deny_link: Option<Zeroizing<String>>,
    asked: AskedBy,
    settings: &AuthSettings,
) -> (MailJob, String) {
    let mailbox = mask(user.email.email.as_ref());
    let (link, prompt) = match (&settings.link_base, token) {
        (Some(base), Some(token)) => (
            Some(Zeroizing::new(format!("{base}/l/{}", token.to_path()))),
            format!("Open the link in the e-mail sent to {mailbox}, then press Enter"),
        ),
        _ => (None, format!("Enter the one-time password sent to {mailbox}")),
    };
    let job = MailJob {
        to: user.email,
        user: user.name,
        otp,
        link,
        deny_link,
        asked,
        tx,
        expires: Instant::now() + settings.validity,
    };
    (job, prompt)
}

/// The refusal when a mail cannot be queued (nothing was opened, or the
/// challenge was closed again).
fn cannot_queue(name: &str, error: &dyn std::fmt::Display) -> Decision {
    tracing::error!(user = %name, error = %error, "cannot queue the e-mail; rejecting");
    refusal(QUEUE_FULL, Reason::MailQueueFull)
}

/// The lockout, asked by the directory before it checks a PIN. A store that
/// cannot answer counts as locked (nothing is checked), and its error is kept
/// for [`Authenticator::check_pin`] to report: no answer goes out then.
struct Gate<'a> {
    limits: &'a dyn Limiter,
    /// The lock as read before the hash, answered without asking again.
    read: Read<'a>,
    error: Mutex<Option<BackendUnavailable>>,
}

/// Whether `user` was locked, as the store read it before the PIN check.
#[derive(Debug, Clone, Copy)]
struct Read<'a> {
    user: &'a str,
    locked: bool,
}

#[async_trait::async_trait]
impl LockGate for Gate<'_> {
    async fn is_locked(&self, name: &str) -> bool {
        if self.read.user == name {
            return self.read.locked;
        }
        match self.limits.is_locked(name).await {
            Ok(locked) => locked,
            Err(error) => {
                *self.error.lock().expect("gate lock poisoned") = Some(error);
                true
            }
        }
    }
}

/// `password` cut into a PIN and a code of `length` characters, when it is
/// longer than a code.
fn split_at_code(password: &[u8], length: u32) -> Option<(&[u8], &[u8])> {
    let length = length as usize;
    (password.len() > length).then(|| password.split_at(password.len() - length))
}

/// The user with the address a trusted front proxy sent, if it sent a valid one.
fn with_trusted_email(mut user: User, trusted: Option<&str>) -> User {
    match trusted.map(str::parse::<Mailbox>) {
        Some(Ok(mailbox)) => {
            tracing::info!(user = %user.name, to = %mailbox.email, "e-mail address from the trusted client's attribute");
            user.email = mailbox;
        }
        Some(Err(e)) => {
            tracing::warn!(user = %user.name, error = %e, "trusted e-mail attribute is not an address; using the directory's")
        }
        None => {}
    }
    user
}

#[cfg(test)]
mod tests;
