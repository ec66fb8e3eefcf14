//! auth::decision: what `auth` is asked ([`Request`]) and what it answers
//! ([`Decision`], with its [`Reason`] for the log). Plain values; nothing
//! here decides, logs, or shows a password.

use crate::challenge::{Origin, Transaction};
use crate::config::ChallengeMode;
use crate::dictionary::WireAttribute;
use crate::wire::Code;

/// Why the decision came out as it did, for the one log line per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Status-Server: the server is alive.
    StatusServer,
    /// Right PIN: a code was queued for e-mail.
    ChallengeSent,
    /// Right PIN again within the blocking timeout: no new e-mail.
    AlreadySent,
    /// Right PIN within the blocking timeout of a challenge opened from
    /// another origin: no new e-mail, and no State.
    SentElsewhere,
    /// The State's code was right.
    OtpAccepted,
    /// PIN and code in one password were right.
    PinOtpAccepted,
    /// The user exists, the PIN is wrong.
    WrongPin,
    /// No such user.
    UnknownUser,
    /// The account is switched off.
    Inactive,
    /// Wrong code for the State.
    WrongOtp,
    /// Wrong code, and that was the challenge's last attempt.
    ChallengeVoid,
    /// The State is not an open challenge of this user.
    UnknownState,
    /// The mail queue is full.
    MailQueueFull,
    /// The request has no User-Name.
    NoUserName,
    /// Right PIN, but an e-mail throttle is reached.
    Throttled,
    /// The user is locked after too many failures in a row.
    Locked,
    /// A link challenge answered before its link was confirmed.
    LinkPending,
    /// Right PIN, and the user's policy needs no second factor.
    Exempt,
    /// Right PIN, but the user's policy refuses the login.
    DeniedByPolicy,
}

impl Reason {
    /// Whether the request named an existing user (so a stranger's made-up
    /// names are never kept, e.g. as a last result).
    pub(crate) fn names_a_user(self) -> bool {
        !matches!(
            self,
            Reason::StatusServer | Reason::UnknownUser | Reason::UnknownState | Reason::NoUserName
        )
    }

    /// The reason as it appears in logs and metrics.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::StatusServer => "status-server",
            Reason::ChallengeSent => "challenge-sent",
            Reason::AlreadySent => "already-sent",
            Reason::SentElsewhere => "already-sent-elsewhere",
            Reason::OtpAccepted => "otp-accepted",
            Reason::PinOtpAccepted => "pin-otp-accepted",
            Reason::WrongPin => "wrong-pin",
            Reason::UnknownUser => "unknown-user",
            Reason::Inactive => "inactive-user",
            Reason::WrongOtp => "wrong-otp",
            Reason::ChallengeVoid => "challenge-void",
            Reason::UnknownState => "unknown-state",
            Reason::MailQueueFull => "mail-queue-full",
            Reason::NoUserName => "no-user-name",
            Reason::Throttled => "throttled",
            Reason::Locked => "locked",
            Reason::LinkPending => "link-pending",
            Reason::Exempt => "exempt",
            Reason::DeniedByPolicy => "denied-by-policy",
        }
    }
}

/// A decoded, authenticated Access-Request. Its `Debug` shows no password.
#[derive(Clone, Copy)]
pub(crate) struct Request<'a> {
    /// User-Name.
    pub user: &'a str,
    /// User-Password in clear (PIN, OTP, or PIN followed by OTP); may be empty.
    pub password: &'a [u8],
    /// The State attribute, if any.
    pub state: Option<&'a [u8]>,
    /// How the sending client wants to be asked for the code.
    pub challenge_mode: ChallengeMode,
    /// Calling-Station-Id (the user's address, as VPNs send it), for throttling.
    pub client_ip: Option<&'a str>,
    /// The e-mail address a trusted front proxy sent (`trusted_email_attribute`).
    pub trusted_email: Option<&'a str>,
    /// The configured name of the client it came from: the origin of a
    /// request without Calling-Station-Id.
    pub client: &'a str,
}

impl Request<'_> {
    /// Where the login comes from.
    pub(crate) fn origin(&self) -> Origin {
        Origin::of(self.client_ip, self.client)
    }
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("user", &self.user)
            .field("password", &"[redacted]")
            .field("state", &self.state.map(String::from_utf8_lossy))
            .field("challenge_mode", &self.challenge_mode)
            .field("client_ip", &self.client_ip)
            .field("trusted_email", &self.trusted_email)
            .field("client", &self.client)
            .finish()
    }
}

/// What to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    /// Access-Accept, Access-Reject or Access-Challenge.
    pub code: Code,
    /// The State to send (Access-Challenge).
    pub state: Option<Transaction>,
    /// The Reply-Message to send.
    pub reply_message: Option<String>,
    /// More attributes (the user's `reply` on Access-Accept).
    pub attributes: Vec<WireAttribute>,
    /// Why, for the log.
    pub reason: Reason,
    /// The user's canonical name, for the log, when it is not the User-Name
    /// as typed.
    pub canonical: Option<String>,
    /// The name of the `[[policies]]` entry that applied, for the log.
    pub policy: Option<String>,
}

impl Decision {
    /// An Access-Accept with nothing but the reason.
    pub(crate) fn accept(reason: Reason) -> Decision {
        Decision {
            code: Code::AccessAccept,
            state: None,
            reply_message: None,
            attributes: Vec::new(),
            reason,
            canonical: None,
            policy: None,
        }
    }

    /// An Access-Reject with nothing but the reason.
    pub(crate) fn reject(reason: Reason) -> Decision {
        Decision {
            code: Code::AccessReject,
            ..Decision::accept(reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_debug_shows_no_password() {
        let req = Request {
            user: "alice",
            password: b"1234-secret-567890",
            state: None,
            challenge_mode: ChallengeMode::AccessChallenge,
            client_ip: Some("198.51.100.7"),
            trusted_email: None,
            client: "vpn1",
        };
        let shown = format!("{req:?} {req:#?}");
        assert!(shown.contains("[redacted]") && shown.contains("alice"), "{shown}");
        assert!(!shown.contains("secret") && !shown.contains("1234"), "{shown}");
    }
}
