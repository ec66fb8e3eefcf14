//! backend: the one error of a shared backend (the challenge store, limits,
//! the mail queue) that cannot answer now. It is neutral on purpose: none of
//! them owns it, so none borrows another's error, and `auth` treats them
//! alike: no answer goes out, so that a proxy in front fails over.
//!
//! The reason is for the log; it never carries a code, a key or a URL.

use thiserror::Error;

/// A backend could not answer (with the in-memory ones this never happens).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("backend unavailable: {reason}")]
pub struct BackendUnavailable {
    /// What went wrong, in words for the log.
    pub reason: String,
}
