//! health: whether the backends this instance depends on (a shared state
//! store, a user directory) answered their last request.
//!
//! SPEC: while a backend is unreachable the instance answers nothing, not
//! even Status-Server, so that a proxy in front marks it dead and fails over.
//! Backends report here on every failure and success; the request handler
//! (`auth::Handler`) asks before answering Status-Server. Flags only:
//! nothing here connects or logs.

use std::sync::atomic::{AtomicBool, Ordering};

/// A backend that can make this instance go silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The shared challenge store (Redis).
    State,
    /// The user directory (LDAP).
    Directory,
}

/// Up/down flags, one per backend; all up at start.
#[derive(Debug, Default)]
pub struct Health {
    state_down: AtomicBool,
    directory_down: AtomicBool,
}

impl Health {
    fn flag(&self, backend: Backend) -> &AtomicBool {
        match backend {
            Backend::State => &self.state_down,
            Backend::Directory => &self.directory_down,
        }
    }

    /// The backend failed; returns whether it was up until now (log once).
    pub fn down(&self, backend: Backend) -> bool {
        !self.flag(backend).swap(true, Ordering::AcqRel)
    }

    /// The backend answered; returns whether it was down until now.
    pub fn up(&self, backend: Backend) -> bool {
        self.flag(backend).swap(false, Ordering::AcqRel)
    }

    /// Whether every backend answered its last request.
    pub fn all_up(&self) -> bool {
        !self.state_down.load(Ordering::Acquire) && !self.directory_down.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_are_reported_once() {
        let h = Health::default();
        assert!(h.all_up());
        assert!(h.down(Backend::State));
        assert!(!h.down(Backend::State));
        assert!(!h.all_up());
        assert!(h.up(Backend::State));
        assert!(!h.up(Backend::State));
        assert!(h.all_up());
    }
}
