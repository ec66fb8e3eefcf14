//! Deny links ("this wasn't me"): what a deny token stands for, and the
//! in-process index of them. A token is kept only as a keyed digest, works
//! once, until its challenge's validity would have ended (even after the
//! login finished), and is remembered [`LINK_MEMORY`] longer so that a used
//! or expired one gets "410 Gone".

use std::sync::Mutex;
use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;

use super::{Transaction, LINK_MEMORY};
use crate::otp::CodeDigest;

/// What a deny link shows and acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyRecord {
    /// Whose login it is (canonical name).
    pub user: String,
    /// The login's challenge.
    pub tx: Transaction,
    /// Calling-Station-Id as the NAS sent it.
    pub client_ip: Option<String>,
    /// The client's (NAS's) name.
    pub nas: String,
    /// When the request arrived, in seconds since the Unix epoch.
    pub asked_unix: u64,
}

/// What a deny token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyStatus {
    /// Usable (from `use_deny`: it was usable, and this call used it).
    Open(DenyRecord),
    /// Ours, but used or past its challenge's validity.
    Gone,
    /// Never ours, or forgotten.
    Unknown,
}

struct Entry {
    record: DenyRecord,
    until: Instant,
    used: bool,
}

/// Deny tokens in this process's memory, by digest. Entries forgotten
/// [`LINK_MEMORY`] after their end are dropped on a later insert, at most
/// once a minute, so the index needs no sweeper of its own.
#[derive(Default)]
pub(super) struct DenyIndex {
    entries: DashMap<CodeDigest, Entry>,
    last_clean: Mutex<Option<Instant>>,
}

impl DenyIndex {
    pub(super) fn add(&self, digest: CodeDigest, record: DenyRecord, valid: Duration) {
        let now = Instant::now();
        self.clean(now);
        let entry = Entry {
            record,
            until: now + valid,
            used: false,
        };
        self.entries.insert(digest, entry);
    }

    /// The token's status; with `take`, an open one is used by this call.
    pub(super) fn status(&self, digest: &CodeDigest, take: bool) -> DenyStatus {
        let Some(mut entry) = self.entries.get_mut(digest) else {
            return DenyStatus::Unknown;
        };
        if entry.used || entry.until <= Instant::now() {
            return DenyStatus::Gone;
        }
        entry.used |= take;
        DenyStatus::Open(entry.record.clone())
    }

    fn clean(&self, now: Instant) {
        let mut last = self.last_clean.lock().expect("deny clean lock poisoned");
        if last.is_some_and(|at| now.duration_since(at) < Duration::from_secs(60)) {
            return;
        }
        *last = Some(now);
        self.entries.retain(|_, e| e.until + LINK_MEMORY > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otp::DIGEST_LEN;

    fn record() -> DenyRecord {
        DenyRecord {
            user: "alice".to_owned(),
            tx: Transaction::random(),
            client_ip: Some("203.0.113.9".to_owned()),
            nas: "vpn1".to_owned(),
            asked_unix: 1_796_000_000,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_deny_token_works_once_until_its_challenge_would_end() {
        let index = DenyIndex::default();
        let (one, two, three) = ([1; DIGEST_LEN], [2; DIGEST_LEN], [3; DIGEST_LEN]);
        index.add(one, record(), Duration::from_secs(600));
        index.add(two, record(), Duration::from_secs(600));
        assert_eq!(index.status(&one, false), DenyStatus::Open(record_of(&index, &one)));
        assert!(matches!(index.status(&one, true), DenyStatus::Open(_)), "the first use");
        assert_eq!(index.status(&one, true), DenyStatus::Gone, "single use");
        assert_eq!(index.status(&three, true), DenyStatus::Unknown);
        tokio::time::advance(Duration::from_secs(600)).await;
        assert_eq!(index.status(&two, true), DenyStatus::Gone, "past the validity");
    }

    fn record_of(index: &DenyIndex, digest: &CodeDigest) -> DenyRecord {
        index.entries.get(digest).unwrap().record.clone()
    }
}
