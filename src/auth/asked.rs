//! Who asked for a mail (address, NAS, time) and the deny ("this wasn't
//! me") link that goes with it: what the mail tells the user so they can
//! tell whether the login is theirs. Nothing here decides.

use zeroize::Zeroizing;

use super::{AuthSettings, Request};
use crate::challenge::{DenyRecord, LinkToken, Transaction};
use crate::mail::AskedBy;

/// Who asked for the mail: where from, through which NAS, and when.
pub(super) fn asked_by(req: &Request<'_>, settings: &AuthSettings) -> AskedBy {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let unix = |secs: u64| i64::try_from(secs).unwrap_or(i64::MAX);
    AskedBy {
        client_ip: req.client_ip.map(str::to_owned),
        nas: req.client.to_owned(),
        at_unix: unix(now),
        until_unix: unix(now.saturating_add(settings.validity.as_secs())),
    }
}

/// A login's deny ("this wasn't me") link: the token the store keeps (as a
/// digest) with its record, and the URL the mail carries.
pub(super) struct DenyLink {
    pub(super) token: LinkToken,
    pub(super) record: DenyRecord,
    pub(super) url: Zeroizing<String>,
}

/// With `[link]` configured: a new deny link for the login `tx`, kept by
/// the store with its challenge, for the challenge's validity.
pub(super) fn deny_link(user: &str, tx: Transaction, asked: &AskedBy, settings: &AuthSettings) -> Option<DenyLink> {
    let base = settings.deny_base.as_ref()?;
    let token = LinkToken::random();
    let record = DenyRecord {
        user: user.to_owned(),
        tx,
        client_ip: asked.client_ip.clone(),
        nas: asked.nas.clone(),
        asked_unix: u64::try_from(asked.at_unix).unwrap_or(0),
    };
    let url = Zeroizing::new(format!("{base}/d/{}", token.to_path()));
    Some(DenyLink { token, record, url })
}
