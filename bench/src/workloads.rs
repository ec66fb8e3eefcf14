//! workloads: what the load generator sends in each scenario.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use mailotp::wire::{attr, Code, Packet};

use crate::load::Workload;
use crate::packet::{request, Outgoing};
use crate::procs::{user_attr, FIXED_OTP, PAP_USER, PIN, SECRET};

/// Status-Server (RFC 5997), answered with Access-Accept.
pub struct StatusServer;

impl Workload for StatusServer {
    fn next(&self, id: u8, authenticator: &[u8; 16]) -> Option<Outgoing> {
        Some(Outgoing {
            bytes: request(Code::StatusServer, id, authenticator, SECRET.as_bytes(), &[], None),
            expect: Code::AccessAccept,
            item: 0,
        })
    }
}

/// FreeRADIUS PAP: User-Name + User-Password of a cleartext user → Accept.
pub struct Pap;

impl Workload for Pap {
    fn next(&self, id: u8, authenticator: &[u8; 16]) -> Option<Outgoing> {
        Some(access_request(
            id,
            authenticator,
            &[user_attr(PAP_USER)],
            PIN,
            Code::AccessAccept,
            0,
        ))
    }
}

/// The PIN path: user `{prefix}-N` (N cycling below `users`, or each once
/// when `once`) sends the PIN and gets an Access-Challenge; the States are kept.
pub struct Pins {
    prefix: &'static str,
    users: usize,
    once: bool,
    next_user: AtomicUsize,
    /// (user number, State) of every challenge opened.
    pub opened: Mutex<Vec<(usize, Vec<u8>)>>,
}

impl Pins {
    /// PINs of `prefix-0 .. prefix-(users-1)`.
    pub fn new(prefix: &'static str, users: usize, once: bool) -> Pins {
        Pins {
            prefix,
            users,
            once,
            next_user: AtomicUsize::new(0),
            opened: Mutex::new(Vec::new()),
        }
    }
}

impl Workload for Pins {
    fn next(&self, id: u8, authenticator: &[u8; 16]) -> Option<Outgoing> {
        let n = self.next_user.fetch_add(1, Ordering::Relaxed);
        if self.once && n >= self.users {
            return None;
        }
        let user = n % self.users;
        let name = format!("{}-{user}", self.prefix);
        Some(access_request(
            id,
            authenticator,
            &[user_attr(&name)],
            PIN,
            Code::AccessChallenge,
            user,
        ))
    }

    fn answered(&self, sent: &Outgoing, answer: &Packet<'_>) -> Result<(), &'static str> {
        let state = answer.first(attr::STATE).ok_or("Access-Challenge without State")?;
        self.opened
            .lock()
            .expect("not poisoned")
            .push((sent.item, state.to_vec()));
        Ok(())
    }
}

/// A PIN flood: every request a new unknown user (`stranger-N`), so each
/// costs the dummy hash, and gets Access-Reject.
#[derive(Default)]
pub struct Strangers {
    next: AtomicUsize,
}

impl Workload for Strangers {
    fn next(&self, id: u8, authenticator: &[u8; 16]) -> Option<Outgoing> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let name = format!("stranger-{n}");
        Some(access_request(
            id,
            authenticator,
            &[user_attr(&name)],
            PIN,
            Code::AccessReject,
            n,
        ))
    }
}

/// The challenge-answer path: State + the code of a pre-opened challenge →
/// Access-Accept; each challenge is answered once.
pub struct Answers {
    prefix: &'static str,
    challenges: Vec<(usize, Vec<u8>)>,
    next: AtomicUsize,
}

impl Answers {
    /// Answers `challenges` (user number, State) of users `prefix-N`.
    pub fn new(prefix: &'static str, challenges: Vec<(usize, Vec<u8>)>) -> Answers {
        Answers {
            prefix,
            challenges,
            next: AtomicUsize::new(0),
        }
    }
}

impl Workload for Answers {
    fn next(&self, id: u8, authenticator: &[u8; 16]) -> Option<Outgoing> {
        let (user, state) = self.challenges.get(self.next.fetch_add(1, Ordering::Relaxed))?;
        let name = format!("{}-{user}", self.prefix);
        let attrs = [user_attr(&name), (attr::STATE, state.as_slice())];
        Some(access_request(
            id,
            authenticator,
            &attrs,
            FIXED_OTP,
            Code::AccessAccept,
            *user,
        ))
    }
}

/// An Access-Request with `attrs` and `password`, expecting `expect`.
fn access_request(
    id: u8,
    authenticator: &[u8; 16],
    attrs: &[(u8, &[u8])],
    password: &str,
    expect: Code,
    item: usize,
) -> Outgoing {
    Outgoing {
        bytes: request(
            Code::AccessRequest,
            id,
            authenticator,
            SECRET.as_bytes(),
            attrs,
            Some(password.as_bytes()),
        ),
        expect,
        item,
    }
}
