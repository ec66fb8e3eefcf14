//! The challenge records this instance wrote, remembered until their
//! challenge ends: with them, an answer to a State this instance opened
//! needs no read first. The answer script acts only when the record in
//! Redis is, field for field, the one remembered here (so it was written by
//! this instance and not altered since); anything else falls back to read,
//! check, then act. Bounded in memory; keeps keyed digests, never a code;
//! nothing here logs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::challenge::Transaction;
use crate::otp::CodeDigest;

/// Records remembered at most; past it, ended ones go, then all (answers
/// then take the read first).
const CAPACITY: usize = 65_536;

/// One challenge record as OPEN wrote it.
pub(super) struct Written {
    pub(super) user: String,
    pub(super) digest: CodeDigest,
    /// End of validity, Unix ms, as written (`e`).
    pub(super) expires: String,
    /// [`crate::challenge::Origin::encode`] (`o`).
    pub(super) origin: String,
    /// The record's (field, value) pairs the MAC covers, then the MAC
    /// (`m`): what ANSWER finds unchanged before it acts.
    pub(super) fields: Vec<(&'static str, Vec<u8>)>,
    /// The pending link mark written with it; empty for a code challenge.
    pub(super) pending: Vec<u8>,
    /// Wrong answers before it is void (`n`).
    pub(super) max_attempts: u8,
    /// The policy it was opened under (`p`).
    pub(super) policy: Option<String>,
}

/// Records written here, by State, each until its challenge ends. Shared,
/// so that an answer takes its record without copying its fields.
#[derive(Default)]
pub(super) struct WrittenRecords {
    records: Mutex<HashMap<Transaction, (Arc<Written>, Instant)>>,
}

impl WrittenRecords {
    /// Remembers `record`, written under `tx`, until `until`.
    pub(super) fn remember(&self, tx: Transaction, record: Written, until: Instant) {
        let mut records = self.records.lock().expect("written lock poisoned");
        if records.len() >= CAPACITY {
            let now = Instant::now();
            records.retain(|_, (_, end)| *end > now);
            if records.len() >= CAPACITY {
                records.clear();
            }
        }
        records.insert(tx, (Arc::new(record), until));
    }

    /// The record written under `tx`, while its challenge lasts.
    pub(super) fn get(&self, tx: &Transaction) -> Option<Arc<Written>> {
        let records = self.records.lock().expect("written lock poisoned");
        records
            .get(tx)
            .filter(|(_, end)| *end > Instant::now())
            .map(|(record, _)| Arc::clone(record))
    }
}
