//! auth::open: a right PIN that needs the second factor opens a challenge
//! (with the settings of the user's policy, whose name it keeps) and queues
//! its mail, or hands out the open one. The mail job and the deny link are
//! made before the challenge opens, so that a store in Redis opens it, keeps
//! the deny record and queues the mail in one step. It decides nothing else.

use std::sync::Arc;

use tokio::time::Instant;
use zeroize::Zeroizing;

use super::answers::{mask, prompt, refusal, with_session_timeout};
use super::{asked, minutes, AuthSettings, Authenticator, Decision, Reason, Request, Unavailable, ALREADY_SUBMITTED};
use crate::challenge::{LinkToken, NewChallenge, Opened, Origin, Transaction};
use crate::config::messages::{Key, ReplyValues};
use crate::mail::{AskedBy, MailError, MailJob};
use crate::otp::Otp;
use crate::policy::Policy;
use crate::users::User;

impl Authenticator {
    /// Right PIN: a new challenge and its mail, or the open one within the
    /// blocking timeout (its State only to the origin that opened it).
    pub(super) async fn open_challenge(
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
        let email = mask(user.email.email.as_ref());
        let asked = asked::asked_by(req, &settings);
        let deny = asked::deny_link(&name, tx, &asked, &settings);
        let deny_url = deny.as_ref().map(|d| d.url.clone());
        let job = new_job(user, tx, otp, token.as_ref(), deny_url, asked, &settings);
        // The mail's language is the answer's too.
        let (wording, language) = (Arc::clone(&settings.wording), job.language.clone());
        let reply = |key: Key, transaction: &str, minutes: u64| {
            let values = ReplyValues {
                email: &email,
                transaction,
                minutes,
            };
            wording.reply(language.as_deref(), key, &values)
        };
        let busy = |error: &dyn std::fmt::Display| {
            tracing::error!(user = %name, %error, "cannot queue the e-mail; rejecting");
            refusal(&reply(Key::Busy, "", 0), Reason::MailQueueFull)
        };
        let sealed = match self.mail.sealed_for_store(&job) {
            Ok(sealed) => sealed,
            Err(error) => return Ok(busy(&error)),
        };
        let new = NewChallenge {
            tx,
            code: &job.otp,
            link: token.as_ref(),
            validity: settings.validity,
            max_attempts: settings.max_attempts,
            policy: policy.map(|p| p.name.as_str()),
            deny: deny.as_ref().map(|d| (&d.token, &d.record)),
            mail: sealed.as_deref(),
        };
        match self.challenges.open(&name, origin, new, req.client_ip).await? {
            Opened::AlreadySent { tx: open, left } => {
                let message = reply(Key::AlreadySent, &open.to_string(), minutes(left));
                let decision = prompt(req.challenge_mode, open, message, Reason::AlreadySent);
                return Ok(with_session_timeout(decision, left));
            }
            Opened::SentElsewhere => {
                // Someone else may have the PIN: the admin should know.
                tracing::warn!(user = %name, %origin, "right PIN from another origin while the user's challenge is open: refused without State");
                let message = wording.reply_elsewhere(language.as_deref(), &email);
                return Ok(refusal(
                    message.as_deref().unwrap_or(ALREADY_SUBMITTED),
                    Reason::SentElsewhere,
                ));
            }
            Opened::Throttled(limit) => {
                tracing::info!(user = %name, limit = limit.as_str(), "e-mail throttled");
                return Ok(refusal(&reply(Key::Throttled, "", 0), Reason::Throttled));
            }
            Opened::MailQueueFull => return Ok(busy(&"mail queue full")),
            Opened::New if sealed.is_none() => {
                if let Err(error) = self.enqueue(job).await? {
                    return Ok(busy(&error));
                }
            }
            // The store queued it with the challenge.
            Opened::New => self.mail.queued(tx, job.asked.at_unix, job.expires).await,
        }
        let key = if token.is_some() { Key::LinkPrompt } else { Key::Prompt };
        let message = reply(key, &tx.to_string(), minutes(settings.validity));
        Ok(with_session_timeout(
            prompt(req.challenge_mode, tx, message, Reason::ChallengeSent),
            settings.validity,
        ))
    }

    /// Queues the mail of a challenge just opened (the store counted it
    /// toward the throttles); when it cannot, closes the challenge again.
    async fn enqueue(&self, job: MailJob) -> Result<Result<(), MailError>, Unavailable> {
        let (name, tx) = (job.user.clone(), job.tx);
        match self.mail.enqueue(job).await {
            Ok(()) => Ok(Ok(())),
            Err(MailError::Unavailable(error)) => Err(error.into()),
            Err(error) => {
                self.challenges.cancel(&name, &tx).await?;
                Ok(Err(error))
            }
        }
    }
}

/// The mail job of a new challenge, with the link of `token` if it is a
/// link challenge, in the user's language.
fn new_job(
    user: User,
    tx: Transaction,
    otp: Otp,
    token: Option<&LinkToken>,
    deny_link: Option<Zeroizing<String>>,
    asked: AskedBy,
    settings: &AuthSettings,
) -> MailJob {
    let link = match (&settings.link_base, token) {
        (Some(base), Some(token)) => Some(Zeroizing::new(format!("{base}/l/{}", token.to_path()))),
        _ => None,
    };
    MailJob {
        language: settings.wording.language_of(&user.languages),
        to: user.email,
        user: user.name,
        otp,
        link,
        deny_link,
        asked,
        tx,
        expires: Instant::now() + settings.validity,
    }
}
