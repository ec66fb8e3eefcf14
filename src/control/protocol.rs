//! The control socket's line protocol, shared by the server and `mailotp
//! ctl`: one JSON request line, one JSON answer line, per connection. Plain
//! serde types; nothing here reads a socket or a store.

use serde::{Deserialize, Serialize};

pub(crate) use crate::challenge::LastResult;
pub(crate) use crate::mail::status::Delivery;

/// Bytes a request line may take, newline included.
pub(crate) const MAX_REQUEST: usize = 4096;

/// What the operator asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum Request {
    /// A user's challenges, lock, throttles.
    Status {
        /// The canonical user name.
        user: String,
    },
    /// Clears the lock and the failures (and with `throttles` the e-mail counts).
    Unlock {
        /// The canonical user name.
        user: String,
        /// Also clear the e-mail counts.
        #[serde(default)]
        throttles: bool,
    },
    /// Closes every open challenge of the user.
    Revoke {
        /// The canonical user name.
        user: String,
    },
    /// Open challenges, queued mails, answers by code.
    Stats,
    /// What SIGHUP does.
    Reload,
}

impl Request {
    /// The command's name, for the log and the metrics.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Request::Status { .. } => "status",
            Request::Unlock { .. } => "unlock",
            Request::Revoke { .. } => "revoke",
            Request::Stats => "stats",
            Request::Reload => "reload",
        }
    }

    /// The user it is about, if any.
    pub(crate) fn user(&self) -> Option<&str> {
        match self {
            Request::Status { user } | Request::Unlock { user, .. } | Request::Revoke { user } => Some(user),
            Request::Stats | Request::Reload => None,
        }
    }
}

/// The answer: `ok` with a `result`, or an `error` in one line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Answer {
    /// Whether the command did what it was asked.
    pub ok: bool,
    /// Why not, in one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What it found or did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Outcome>,
}

impl Answer {
    /// A failure with its one-line reason.
    pub(crate) fn error(reason: impl Into<String>) -> Answer {
        Answer {
            ok: false,
            error: Some(reason.into()),
            result: None,
        }
    }

    /// A success.
    pub(crate) fn ok(result: Outcome) -> Answer {
        Answer {
            ok: true,
            error: None,
            result: Some(result),
        }
    }
}

/// What a command found or did.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Outcome {
    /// `status`.
    Status(UserStatus),
    /// `unlock`.
    Unlocked(Unlocked),
    /// `revoke`.
    Revoked(Revoked),
    /// `stats`.
    Stats(Stats),
    /// `reload`.
    Reloaded(Reloaded),
}

/// A user as the server sees them now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UserStatus {
    /// The user.
    pub user: String,
    /// The server's clock when it answered (Unix seconds).
    pub now_unix: i64,
    /// Open challenges, oldest first.
    pub challenges: Vec<ChallengeStatus>,
    /// When the lock ends (Unix seconds); `None` when not locked.
    pub locked_until_unix: Option<i64>,
    /// Failed PINs or codes in a row.
    pub failures: u64,
    /// E-mails counted toward the throttles in the last five minutes.
    pub mails_last_5_min: u64,
    /// ... and in the last hour.
    pub mails_last_hour: u64,
    /// The last answer the user's requests got (kept a day).
    pub last: Option<LastResult>,
}

/// One open challenge.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ChallengeStatus {
    /// The transaction id: the State the NAS sees (32 hex digits).
    pub transaction: String,
    /// When the PIN request opened it (Unix seconds), when known.
    pub opened_unix: Option<i64>,
    /// When it expires (Unix seconds).
    pub expires_unix: i64,
    /// Wrong answers it still takes.
    pub attempts_left: u64,
    /// Link delivery: `pending` or `confirmed`; `None` for a code.
    pub link: Option<String>,
    /// What became of its e-mail.
    pub delivery: Delivery,
}

/// `unlock`'s result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Unlocked {
    /// The user.
    pub user: String,
    /// Whether a lock was lifted.
    pub was_locked: bool,
    /// Whether the e-mail counts were cleared too.
    pub throttles_cleared: bool,
}

/// `revoke`'s result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Revoked {
    /// The user.
    pub user: String,
    /// Challenges closed.
    pub closed: u64,
}

/// `stats`' result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Stats {
    /// Open challenges (the pool's with Redis).
    pub open_challenges: u64,
    /// Mails waiting, being sent or waiting for a retry (the pool's with Redis).
    pub mails_queued: u64,
    /// Age of the oldest of them, in seconds.
    pub oldest_queued_s: Option<u64>,
    /// RADIUS answers this instance sent, by code.
    pub answers: Answers,
}

/// Answers by code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Answers {
    /// Access-Accept.
    pub accept: u64,
    /// Access-Reject.
    pub reject: u64,
    /// Access-Challenge.
    pub challenge: u64,
}

/// `reload`'s result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Reloaded {
    /// Always `true`: a refused reload is an error answer.
    pub reloaded: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_as_one_json_line() {
        let r: Request = serde_json::from_str(r#"{"command":"unlock","user":"alice","throttles":true}"#).unwrap();
        assert_eq!(
            r,
            Request::Unlock {
                user: "alice".into(),
                throttles: true
            }
        );
        let r: Request = serde_json::from_str(r#"{"command":"stats"}"#).unwrap();
        assert_eq!(r, Request::Stats);
        assert!(serde_json::from_str::<Request>(r#"{"command":"shutdown"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"command":"status","user":"a","x":1}"#).is_err());
    }

    #[test]
    fn delivery_states_are_tagged() {
        let d = Delivery::Relayed {
            reply: "250 OK".into(),
            at_unix: 5,
        };
        let text = serde_json::to_string(&d).unwrap();
        assert_eq!(text, r#"{"state":"relayed","reply":"250 OK","at_unix":5}"#);
        assert_eq!(serde_json::from_str::<Delivery>(&text).unwrap(), d);
    }
}
