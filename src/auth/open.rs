//! auth::open: a right PIN that needs the second factor opens a challenge
//! (with the settings of the user's policy, whose name it keeps) and queues
//! its mail, or hands out the open one. It decides nothing else.

use tokio::time::Instant;
use zeroize::Zeroizing;

use std::sync::Arc;

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
        let tx = Transaction::random();
        let token = settings.link_base.is_some().then(LinkToken::random);
        let new = NewChallenge {
            tx,
            code: &otp,
            link: token.as_ref(),
            validity: settings.validity,
            max_attempts: settings.max_attempts,
            policy: policy.map(|p| p.name.as_str()),
        };
        let opened = self.challenges.open(&user.name, origin, new, req.client_ip).await?;
        let wording = Arc::clone(&settings.wording);
        let language = wording.language_of(&user.languages);
        let email = mask(user.email.email.as_ref());
        let reply = |key: Key, transaction: &str, minutes: u64| {
            let values = ReplyValues {
                email: &email,
                transaction,
                minutes,
            };
            wording.reply(language.as_deref(), key, &values)
        };
        let (message, reason) = match opened {
            Opened::AlreadySent { tx: open, left } => {
                let message = reply(Key::AlreadySent, &open.to_string(), minutes(left));
                let decision = prompt(req.challenge_mode, open, message, Reason::AlreadySent);
                return Ok(with_session_timeout(decision, left));
            }
            Opened::SentElsewhere => {
                // Someone else may have the PIN: the admin should know.
                tracing::warn!(user = %user.name, %origin, "right PIN from another origin while the user's challenge is open: refused without State");
                let message = wording.reply_elsewhere(language.as_deref(), &email);
                return Ok(refusal(
                    message.as_deref().unwrap_or(ALREADY_SUBMITTED),
                    Reason::SentElsewhere,
                ));
            }
            Opened::Throttled(limit) => {
                tracing::info!(user = %user.name, limit = limit.as_str(), "e-mail throttled");
                return Ok(refusal(&reply(Key::Throttled, "", 0), Reason::Throttled));
            }
            Opened::New => {
                let key = if token.is_some() { Key::LinkPrompt } else { Key::Prompt };
                let asked = asked::asked_by(req, &settings);
                if !self.send_new(user, tx, otp, token, asked, &settings).await? {
                    return Ok(refusal(&reply(Key::Busy, "", 0), Reason::MailQueueFull));
                }
                (
                    reply(key, &tx.to_string(), minutes(settings.validity)),
                    Reason::ChallengeSent,
                )
            }
        };
        Ok(with_session_timeout(
            prompt(req.challenge_mode, tx, message, reason),
            settings.validity,
        ))
    }

    /// Queues the mail (the store counted it toward the throttles), with the
    /// link of `token` if `tx` is a link challenge, in the user's language.
    /// `false`: the queue is full, and `tx` was closed.
    async fn send_new(
        &self,
        user: User,
        tx: Transaction,
        otp: Otp,
        token: Option<LinkToken>,
        asked: AskedBy,
        settings: &AuthSettings,
    ) -> Result<bool, Unavailable> {
        let link = match (&settings.link_base, token) {
            (Some(base), Some(token)) => Some(Zeroizing::new(format!("{base}/l/{}", token.to_path()))),
            _ => None,
        };
        let name = user.name.clone();
        let deny_link = self.deny_link(&name, tx, &asked, settings).await?;
        let job = MailJob {
            language: settings.wording.language_of(&user.languages),
            to: user.email,
            user: user.name,
            otp,
            link,
            deny_link,
            asked,
            tx,
            expires: Instant::now() + settings.validity,
        };
        if let Err(error) = self.mail.enqueue(job).await {
            if let MailError::Unavailable(error) = error {
                return Err(error.into());
            }
            tracing::error!(user = %name, %error, "cannot queue the e-mail; rejecting");
            self.challenges.cancel(&name, &tx).await?;
            return Ok(false);
        }
        Ok(true)
    }
}
