//! metrics: counters the server keeps about itself (drops by reason, answers
//! by code, RadSec connections). Plain atomics, cheap enough for the hot path; rendering them for
//! an exporter is someone else's job. Nothing here logs.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Why a datagram got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// The source address is no configured client.
    UnknownClient,
    /// Not a well-formed RADIUS packet (length, attribute framing).
    Malformed,
    /// A code we do not serve (Accounting-Request, responses, unknown codes).
    UnsupportedCode,
    /// Message-Authenticator required but absent.
    MissingMessageAuthenticator,
    /// Message-Authenticator present but wrong.
    BadMessageAuthenticator,
    /// User-Password whose length is not a multiple of 16 up to 128.
    BadPassword,
    /// A retransmission of a request still being worked on.
    DuplicateInProgress,
    /// `max_in_flight` Status-Server and State answers are being worked on, or
    /// the duplicate cache is full.
    Overloaded,
    /// A PIN request beyond its client's share of the PIN-check queue
    /// (`pin_queue_per_client`).
    PinQueueFull,
    /// The challenge store or user directory could not be reached.
    BackendUnavailable,
}

impl DropReason {
    /// Every reason, in the order of [`Metrics::drops`].
    pub(crate) const ALL: [DropReason; 10] = [
        DropReason::UnknownClient,
        DropReason::Malformed,
        DropReason::UnsupportedCode,
        DropReason::MissingMessageAuthenticator,
        DropReason::BadMessageAuthenticator,
        DropReason::BadPassword,
        DropReason::DuplicateInProgress,
        DropReason::Overloaded,
        DropReason::PinQueueFull,
        DropReason::BackendUnavailable,
    ];

    /// The reason as logs and metrics name it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DropReason::UnknownClient => "unknown-client",
            DropReason::Malformed => "malformed",
            DropReason::UnsupportedCode => "unsupported-code",
            DropReason::MissingMessageAuthenticator => "missing-message-authenticator",
            DropReason::BadMessageAuthenticator => "bad-message-authenticator",
            DropReason::BadPassword => "bad-user-password",
            DropReason::DuplicateInProgress => "duplicate-in-progress",
            DropReason::Overloaded => "overloaded",
            DropReason::PinQueueFull => "pin-queue-full",
            DropReason::BackendUnavailable => "backend-unavailable",
        }
    }

    fn index(self) -> usize {
        DropReason::ALL.iter().position(|r| *r == self).expect("listed in ALL")
    }
}

/// Why a RadSec connection was closed before any RADIUS was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `max_connections` were open already.
    TooMany,
    /// TLS did not finish within `handshake_timeout`.
    HandshakeTimeout,
    /// The client certificate was refused: it does not chain to `ca_file`,
    /// has expired, or lacks the clientAuth extended key usage.
    BadCertificate,
    /// TLS failed otherwise (not TLS at all, no common version or cipher).
    HandshakeFailed,
    /// The certificate is good but its names and the source address match
    /// no `radsec = true` client.
    UnknownClient,
}

impl Refusal {
    /// Every reason, in the order of [`RadsecCounters::refused`].
    pub(crate) const ALL: [Refusal; 5] = [
        Refusal::TooMany,
        Refusal::HandshakeTimeout,
        Refusal::BadCertificate,
        Refusal::HandshakeFailed,
        Refusal::UnknownClient,
    ];

    /// The reason as logs and metrics name it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::TooMany => "too-many-connections",
            Refusal::HandshakeTimeout => "handshake-timeout",
            Refusal::BadCertificate => "bad-certificate",
            Refusal::HandshakeFailed => "handshake-failed",
            Refusal::UnknownClient => "unknown-client",
        }
    }

    /// Its place in [`Refusal::ALL`].
    pub(crate) fn index(self) -> usize {
        Refusal::ALL.iter().position(|r| *r == self).expect("listed in ALL")
    }
}

/// RadSec's counters, part of the server's metrics.
#[derive(Debug, Default)]
pub(crate) struct RadsecCounters {
    refused: [AtomicU64; Refusal::ALL.len()],
    /// Connections open now (past the handshake and identified).
    pub open: AtomicI64,
}

impl RadsecCounters {
    /// Counts one refused connection.
    pub(crate) fn refuse(&self, reason: Refusal) {
        self.refused[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Connections refused for `reason` so far.
    pub(crate) fn refused_for(&self, reason: Refusal) -> u64 {
        self.refused[reason.index()].load(Ordering::Relaxed)
    }

    /// Connections refused so far, by reason.
    pub(crate) fn refused(&self) -> Vec<(&'static str, u64)> {
        Refusal::ALL
            .iter()
            .zip(&self.refused)
            .map(|(r, n)| (r.as_str(), n.load(Ordering::Relaxed)))
            .collect()
    }
}

/// Records read from Redis that failed their pool-key check (forged, altered,
/// or written under another key): counted by the pool, which runs before the
/// server's [`Metrics`] exist.
pub(crate) static REDIS_BAD_RECORDS: AtomicU64 = AtomicU64::new(0);

/// The server's counters.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    drops: [AtomicU64; DropReason::ALL.len()],
    /// Access-Accepts sent.
    pub accepts: AtomicU64,
    /// Access-Rejects sent.
    pub rejects: AtomicU64,
    /// Access-Challenges sent.
    pub challenges: AtomicU64,
    /// Retransmissions answered from the duplicate cache.
    pub duplicates_answered: AtomicU64,
    /// Access-Requests answered under each `[[policies]]` entry, by name (as
    /// many names as the configurations served have had).
    policies: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// RadSec connections: open, and refused by reason.
    pub radsec: RadsecCounters,
}

impl Metrics {
    /// Counts one dropped datagram.
    pub(crate) fn drop(&self, reason: DropReason) {
        self.drops[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one Access-Request answered under the policy `name`.
    pub(crate) fn policy(&self, name: &str) {
        let mut counts = self.policies.lock().expect("policy counts lock poisoned");
        match counts.get_mut(name) {
            Some(count) => *count += 1,
            None => {
                counts.insert(name.to_owned(), 1);
            }
        }
    }

    /// Access-Requests answered under each policy so far, by name.
    pub(crate) fn policies(&self) -> Vec<(String, u64)> {
        let counts = self.policies.lock().expect("policy counts lock poisoned");
        counts.iter().map(|(name, count)| (name.clone(), *count)).collect()
    }

    /// Datagrams dropped for `reason` so far.
    pub(crate) fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()].load(Ordering::Relaxed)
    }
}
