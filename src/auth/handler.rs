//! auth::handler: the seam between a transport and the decision, in the
//! shape of hickory-dns's `RequestHandler`. A transport (UDP today, RadSec
//! later) hands over a request it has already authenticated and decoded,
//! once, and gets a [`Decision`] back to sign and send. Status-Server and the
//! backends' health are answered here, not by the transport; what a request
//! costs ([`Kind`], [`RequestHandler::answers_at_once`]) is said here too, so
//! the transport picks its capacity lane without knowing the stores. Nothing
//! here knows sockets, framing or secrets.

use std::future::Future;
use std::sync::Arc;

use super::{Authenticator, Decision, Reason, Request, Unavailable};
use crate::health::Health;
use crate::wire::Code;

/// What a request will cost, read from its code and whether it carries a
/// State, before any work is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Status-Server: is the server alive?
    StatusServer,
    /// An Access-Request with State: the answer to a challenge.
    Answer,
    /// An Access-Request without State: its PIN must be checked (a hash or a
    /// directory bind).
    Pin,
}

impl Kind {
    /// The kind of a request with `code`, carrying a State or not.
    pub(crate) fn of(code: Code, has_state: bool) -> Kind {
        match code {
            Code::StatusServer => Kind::StatusServer,
            _ if has_state => Kind::Answer,
            _ => Kind::Pin,
        }
    }
}

/// A request as a transport hands it over: authenticated and decoded, the
/// password already in clear. Its `Debug` shows no password.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Incoming<'a> {
    /// Status-Server (RFC 5997).
    StatusServer,
    /// An Access-Request.
    Access(Request<'a>),
}

/// Answers requests for a transport.
pub(crate) trait RequestHandler: Send + Sync + 'static {
    /// Whether a request of `kind` is decided without waiting (no PIN hash,
    /// no remote store): the transport then answers it where it received it,
    /// instead of in a task of its own.
    fn answers_at_once(&self, kind: Kind) -> bool;

    /// Decides a request; `Err` when no answer may go out at all (a backend
    /// is down, so that a proxy in front fails over).
    fn handle(&self, request: &Incoming<'_>) -> impl Future<Output = Result<Decision, Unavailable>> + Send;
}

/// What `/metrics` shows of the decision's side, read at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stats {
    /// Challenges open now.
    pub open_challenges: usize,
    /// Mails the provider accepted.
    pub mails_sent: u64,
    /// Delivery attempts that failed (each retry counts).
    pub mail_failed_attempts: u64,
    /// Mails given up: refused for good or expired.
    pub mails_dropped: u64,
    /// Mails waiting, being sent or waiting for a retry.
    pub mails_queued: usize,
    /// Logins their user denied ("this wasn't me").
    pub denied_by_user: u64,
}

/// mailotp's handler: Status-Server by the backends' health, Access-Requests
/// by the [`Authenticator`].
pub(crate) struct Handler {
    /// The decision.
    pub auth: Authenticator,
    /// Backend health, shared with the backends that report to it.
    pub health: Arc<Health>,
}

impl Handler {
    /// The counters behind `/metrics`, as they are now.
    pub(crate) fn stats(&self) -> Stats {
        use std::sync::atomic::Ordering::Relaxed;
        let mail = self.auth.mail.stats();
        Stats {
            open_challenges: self.auth.challenges.open_count(),
            mails_sent: mail.sent.load(Relaxed),
            mail_failed_attempts: mail.failed_attempts.load(Relaxed),
            mails_dropped: mail.dropped.load(Relaxed),
            mails_queued: self.auth.mail.pending(),
            denied_by_user: self.auth.denied.load(Relaxed),
        }
    }
}

impl RequestHandler for Handler {
    fn answers_at_once(&self, kind: Kind) -> bool {
        match kind {
            Kind::StatusServer => true,
            Kind::Answer => self.auth.challenges.answers_at_once(),
            Kind::Pin => false,
        }
    }

    async fn handle(&self, request: &Incoming<'_>) -> Result<Decision, Unavailable> {
        match request {
            // A backend is down: stay silent so the proxy in front fails over.
            Incoming::StatusServer if !self.health.all_up() => Err(Unavailable::Backend),
            Incoming::StatusServer => Ok(Decision::accept(Reason::StatusServer)),
            Incoming::Access(request) => self.auth.decide(request).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_requests_without_state_need_a_pin_check() {
        assert_eq!(Kind::of(Code::StatusServer, false), Kind::StatusServer);
        assert_eq!(Kind::of(Code::StatusServer, true), Kind::StatusServer);
        assert_eq!(Kind::of(Code::AccessRequest, true), Kind::Answer);
        assert_eq!(Kind::of(Code::AccessRequest, false), Kind::Pin);
    }
}
