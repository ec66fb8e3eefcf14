//! users::ldap::groups: the groups of a user the directory found, for
//! `[[policies]]`: the values of `group_attribute` on the user's entry (read
//! with the user search) and the DNs of the entries `group_filter` finds
//! under `group_base_dn`, searched with the service account and the user's
//! DN escaped per RFC 4515. Asked once per right PIN (or `check --explain`),
//! never cached: a user removed from a group loses it at the next login.

use ldap3::{ldap_escape, Scope, SearchEntry};

use super::{conn, Inner, SUCCESS};
use crate::config::DN_PLACEHOLDER;
use crate::users::DirectoryError;

impl Inner {
    /// The groups of the entry `dn`: `from_entry` (the values of
    /// `group_attribute` the user search read) and the entries `group_filter`
    /// finds.
    pub(super) async fn groups(&self, dn: &str, from_entry: Vec<String>) -> Result<Vec<String>, DirectoryError> {
        let groups = &self.config.groups;
        let mut found = from_entry;
        let Some(filter) = &groups.filter else {
            return Ok(found);
        };
        // Escaped: a DN may hold `(`, `)`, `*` or `\`, which would change
        // the filter (and so the groups) if put in as they are.
        let filter = filter.replace(DN_PLACEHOLDER, &ldap_escape(dn));
        let (base, filter) = (groups.base_dn.as_str(), filter.as_str());
        let result = self
            .service
            .run("group search", |mut ldap| async move {
                ldap.search(base, Scope::Subtree, filter, vec!["1.1"]).await
            })
            .await?;
        match result.1.rc {
            SUCCESS => {}
            rc => {
                return Err(conn::unavailable(
                    "group search",
                    format_args!("result code {rc} {} (group_base_dn `{base}`)", result.1.text),
                ))
            }
        }
        found.extend(result.0.into_iter().map(|e| SearchEntry::construct(e).dn));
        Ok(found)
    }
}
