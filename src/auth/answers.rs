//! auth::answers: the shapes of the answers the decision gives (a prompt
//! with its State and Session-Timeout, a refusal, the canonical name for the
//! log). Plain functions of values; nothing here decides or asks a store.

use std::time::Duration;

use super::{Decision, Reason};
use crate::challenge::Transaction;
use crate::config::ChallengeMode;
use crate::dictionary::WireAttribute;
use crate::users::PinCheck;
use crate::wire::{attr, Code};

/// The answer that asks for the code (or the link): Access-Challenge with
/// State, or in reject mode Access-Reject with the prompt.
pub(super) fn prompt(mode: ChallengeMode, tx: Transaction, message: String, reason: Reason) -> Decision {
    match mode {
        ChallengeMode::AccessChallenge => Decision {
            code: Code::AccessChallenge,
            state: Some(tx),
            reply_message: Some(message),
            ..Decision::reject(reason)
        },
        ChallengeMode::Reject => Decision {
            reply_message: Some(message),
            ..Decision::reject(reason)
        },
    }
}

/// `decision`, when it is an Access-Challenge, with `Session-Timeout` = the
/// seconds its challenge stays valid (RFC 2865 §5.27), so that the NAS knows
/// how long to wait for the answer.
pub(super) fn with_session_timeout(mut decision: Decision, left: Duration) -> Decision {
    if decision.code == Code::AccessChallenge {
        let seconds = u32::try_from(left.as_millis().div_ceil(1000))
            .unwrap_or(u32::MAX)
            .max(1);
        decision.attributes.push(WireAttribute {
            attr_type: attr::SESSION_TIMEOUT,
            value: seconds.to_be_bytes().to_vec(),
        });
    }
    decision
}

/// Access-Reject with `reply` as the Reply-Message.
pub(super) fn refusal(reply: &str, reason: Reason) -> Decision {
    Decision {
        reply_message: Some(reply.to_owned()),
        ..Decision::reject(reason)
    }
}

/// `decision` with the canonical name for the log, when it is not the name
/// as typed.
pub(super) fn named(mut decision: Decision, typed: &str, canonical: &str) -> Decision {
    if typed != canonical {
        decision.canonical = Some(canonical.to_owned());
    }
    decision
}

pub(super) fn reason_for(check: &PinCheck) -> Reason {
    match check {
        PinCheck::Valid(_) => Reason::ChallengeSent,
        PinCheck::WrongPin(_) | PinCheck::Unusable => Reason::WrongPin,
        PinCheck::Locked(_) => Reason::Locked,
        PinCheck::UnknownUser => Reason::UnknownUser,
        PinCheck::Inactive(_) => Reason::Inactive,
    }
}

/// `alice@example.com` → `a***@example.com`: enough for the user to know
/// which mailbox to open, little for a shoulder-surfer.
pub(super) fn mask(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "your e-mail address".to_owned(),
    }
}
