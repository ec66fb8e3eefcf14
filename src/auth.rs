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

use crate::backend::BackendUnavailable;
use crate::challenge::{Answer, ChallengeStore, CodeMatch, Origin, Transaction};
use crate::config::messages::{Key, ReplyValues};
use crate::config::{Delivery, EmailConfig, Wording};
use crate::limits::Limiter;
use crate::mail::MailQueue;
use crate::policy::{Policies, Policy, PolicyDelivery, SecondFactor, Subject};
use crate::users::{DirectoryError, LockGate, PinCheck, User, UserDirectory};

mod answers;
mod asked;
mod decision;
mod handler;
mod open;

use answers::{named, prompt, reason_for, with_session_timeout};
pub(crate) use decision::{Decision, Reason, Request};
pub(crate) use handler::{Handler, Incoming, Kind, RequestHandler};

/// Reply-Message when the user asks again from elsewhere within the blocking
/// timeout, unless `already_sent` was changed (LinOTP's wording, which admins
/// search for). The other Reply-Messages are `config::messages`'.
pub(crate) const ALREADY_SUBMITTED: &str = "e-mail with otp already submitted";

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
    /// Wrong answers to a challenge before it is void.
    pub max_attempts: u8,
    /// With link delivery: the base URL the e-mailed links start with.
    pub link_base: Option<String>,
    /// With `[link]` configured: the base URL of the deny links every mail
    /// carries.
    pub deny_base: Option<String>,
    /// Reply-Messages per language, and the user's language.
    pub wording: Arc<Wording>,
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
        if let Some(max_attempts) = policy.and_then(|p| p.max_attempts) {
            settings.max_attempts = max_attempts;
        }
        match policy.and_then(|p| p.delivery) {
            // `check` made sure `[link]` (the deny links' base) is there.
            Some(PolicyDelivery::Link) => settings.link_base = settings.deny_base.clone(),
            Some(PolicyDelivery::Otp) => settings.link_base = None,
            None => {}
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
            max_attempts: e.max_attempts,
            link_base: match &e.delivery {
                Delivery::Link(link) => Some(link.base_url.clone()),
                Delivery::Otp => None,
            },
            deny_base: e.pages.as_ref().map(|p| p.base_url.clone()),
            wording: Arc::clone(&e.wording),
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
        let check = self.check_pin(req.user, req.password, read).await?;
        for ((pin, code), found) in splits.iter().zip(&before.codes) {
            if let Some(decision) = self
                .maybe_wrong_code(req, &origin, &check, (pin, code, *found), read)
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
            SecondFactor::None => {
                // A login succeeded: the failures in a row start from zero,
                // as when a challenge is consumed.
                self.limits.reset_failures(&user.name).await?;
                self.accept(&user.name, Reason::Exempt, policy)
            }
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

    /// The password cut into a PIN and a code of `[email]`'s `otp_length`
    /// characters, then for each other code length a policy sets (the user's
    /// policy is not known before the PIN), when it is longer than a code.
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
            Answer::Accepted { policy } => return Ok(self.accepted_answer(req, policy.as_deref())),
            Answer::Wrong { void: false } => Reason::WrongOtp,
            Answer::Wrong { void: true } => Reason::ChallengeVoid,
            Answer::Unknown => return Ok(Decision::reject(Reason::UnknownState)),
            Answer::LinkPending { left } => {
                // No directory on this path: the language the users file knows.
                let wording = Arc::clone(&self.settings.load().wording);
                let language = wording.language_of(&self.users.load().local_languages(req.user));
                let values = ReplyValues {
                    transaction: &tx.to_string(),
                    minutes: minutes(left),
                    ..ReplyValues::default()
                };
                let message = wording.reply(language.as_deref(), Key::LinkPending, &values);
                let decision = prompt(req.challenge_mode, tx, message, Reason::LinkPending);
                return Ok(with_session_timeout(decision, left));
            }
        };
        self.failure(req.user, reason).await
    }

    /// A State's right answer: Access-Accept under the policy the challenge
    /// was opened with (`stored`, by name; one that no longer exists after a
    /// reload: the `[email]` settings), unless a policy denies the login
    /// through the client the answer came from (resolved with the groups
    /// known without a directory, the users file's: no directory on this path).
    fn accepted_answer(&self, req: &Request<'_>, stored: Option<&str>) -> Decision {
        let groups = self.users.load().local_groups(req.user);
        let here = self.policy(req, req.user, &groups);
        if here.as_ref().is_some_and(|p| p.second_factor == SecondFactor::Deny) {
            return self.accept(req.user, Reason::OtpAccepted, here.as_ref());
        }
        let policies = self.policies.load();
        self.accept(
            req.user,
            Reason::OtpAccepted,
            stored.and_then(|name| policies.named(name)),
        )
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
        (pin, code, found): (&[u8], &[u8], CodeMatch),
        read: Read<'_>,
    ) -> Result<Option<Decision>, Unavailable> {
        let name = match check {
            PinCheck::WrongPin(name) => name.as_str(),
            PinCheck::UnknownUser => req.user,
            _ => return Ok(None),
        };
        // `found` was read before the hash, under the name as typed.
        let found = if name == req.user {
            found
        } else {
            self.challenges.find(name, origin, code).await?
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

/// Whole minutes in `left`, rounded up, as messages tell them.
fn minutes(left: std::time::Duration) -> u64 {
    left.as_secs().div_ceil(60)
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
