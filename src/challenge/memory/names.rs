//! The names of the policies challenges were opened under, each kept once:
//! a record holds a 2-byte number where the name would take 16 bytes and an
//! allocation. Names are only added (a reload may rename policies; records
//! opened before keep theirs), at most [`u16::MAX`] of them.

use std::sync::{Arc, Mutex};

/// Policy names by number; number 0 is "no policy".
#[derive(Debug, Default)]
pub(super) struct PolicyNames {
    names: Mutex<Vec<Arc<str>>>,
}

impl PolicyNames {
    /// The number of `name` (0 for none), added if new. Past `u16::MAX`
    /// names (renamed that often, never in practice) a new name gets 0 and
    /// its challenges the `[email]` settings' answer.
    pub(super) fn number(&self, name: Option<&str>) -> u16 {
        let Some(name) = name else { return 0 };
        let mut names = self.names.lock().expect("policy names lock poisoned");
        let index = match names.iter().position(|n| &**n == name) {
            Some(index) => index,
            None => {
                names.push(Arc::from(name));
                names.len() - 1
            }
        };
        u16::try_from(index + 1).unwrap_or(0)
    }

    /// The name numbered `number`.
    pub(super) fn name(&self, number: u16) -> Option<String> {
        let index = usize::from(number).checked_sub(1)?;
        let names = self.names.lock().expect("policy names lock poisoned");
        names.get(index).map(|n| n.to_string())
    }
}
