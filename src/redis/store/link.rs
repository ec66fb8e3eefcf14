//! The link records of the challenge store (link delivery): which State a
//! link stands for, and its confirmation, both checked against the pool key
//! before they count (see the parent module for the records).

use redis::Script;

use super::{challenge_key, Link, RedisStore, CONFIRMED, PENDING};
use crate::backend::BackendUnavailable;
use crate::challenge::{LinkStatus, LinkToken, Transaction, LINK_MEMORY};
use crate::redis::record::bad_record;
use crate::redis::{millis, KEY_PREFIX};

/// KEYS[1] link; ARGV prefix. The link's State, user, opened, MAC and its
/// challenge's link mark; empty when there is no such link.
const READ_LINK: &str = r"
local e = redis.call('HMGET', KEYS[1], 't', 'u', 'o', 'm')
if not e[1] then return {} end
local k = redis.call('HGET', ARGV[1] .. 'c:' .. e[1], 'k') or ''
return {e[1], e[2] or '', e[3] or '', e[4] or '', k}
";

/// KEYS[1] link; ARGV prefix, State (checked), pending mark, confirmed mark.
/// 1 when this call confirmed the link, 0 when it was no longer pending.
const CONFIRM_LINK: &str = r"
if redis.call('HGET', KEYS[1], 't') ~= ARGV[2] then return 0 end
local c = ARGV[1] .. 'c:' .. ARGV[2]
if redis.call('HGET', c, 'k') ~= ARGV[3] then return 0 end
redis.call('HSET', c, 'k', ARGV[4])
return 1
";

/// The link scripts, loaded once.
pub(super) struct Scripts {
    read: Script,
    confirm: Script,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            read: Script::new(READ_LINK),
            confirm: Script::new(CONFIRM_LINK),
        }
    }
}

/// The fields of a link record, in the order its MAC covers them.
fn link_fields<'a>(state: &'a [u8], user: &'a [u8], opened: &'a [u8]) -> [(&'static str, &'a [u8]); 3] {
    [("t", state), ("u", user), ("o", opened)]
}

impl RedisStore {
    /// The key of a link: a digest of the token, so Redis holds no usable link.
    fn link_key(&self, token: &LinkToken) -> String {
        let digest = self.sealer.seal_link(token.to_path().as_bytes());
        format!("{KEY_PREFIX}k:{}", hex::encode(digest))
    }

    /// A link's status, checked: a link record that fails its MAC is an
    /// unknown link, and only a checked link record's State gets confirmed.
    pub(super) async fn link(&self, token: &LinkToken, confirm: bool) -> Result<LinkStatus, BackendUnavailable> {
        let (script, key) = (&self.links.read, self.link_key(token));
        let name = &key;
        let read: Vec<Vec<u8>> = self
            .redis
            .run("read link", |mut c| async move {
                script.key(name).arg(KEY_PREFIX).invoke_async(&mut c).await
            })
            .await?;
        let [state, user, opened, mac, mark] = read.as_slice() else {
            return Ok(LinkStatus::Unknown);
        };
        let tx = Transaction::from_state(state);
        let Some(tx) = tx.filter(|_| self.records.verify(&key, &link_fields(state, user, opened), mac)) else {
            bad_record(&key, "link mac");
            return Ok(LinkStatus::Unknown);
        };
        let user = String::from_utf8_lossy(user).into_owned();
        let challenge = challenge_key(&tx.to_string());
        let pending = match self.link_mark(&challenge, mark) {
            Some(link) => link == Link::Pending,
            None => {
                bad_record(&challenge, "link mark");
                false
            }
        };
        let opened_unix = std::str::from_utf8(opened)
            .ok()
            .and_then(|o| o.parse().ok())
            .unwrap_or(0);
        if !pending || (confirm && !self.confirm(&key, &challenge, &tx).await?) {
            return Ok(LinkStatus::Gone);
        }
        Ok(LinkStatus::Pending { user, opened_unix })
    }

    /// Marks the (checked) link's challenge confirmed, if it still waits.
    async fn confirm(&self, key: &str, challenge: &str, tx: &Transaction) -> Result<bool, BackendUnavailable> {
        let script = &self.links.confirm;
        let (pending, confirmed) = (self.mark(challenge, PENDING), self.mark(challenge, CONFIRMED));
        let done: i64 = self
            .redis
            .run("confirm link", |mut c| async move {
                script
                    .key(key)
                    .arg(KEY_PREFIX)
                    .arg(tx.to_string())
                    .arg(pending)
                    .arg(confirmed)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(done == 1)
    }

    /// What OPEN writes to make `tx` a link challenge whose link is `token`
    /// (see [`LinkArgs`]).
    pub(super) fn link_args(&self, user: &str, tx: &Transaction, token: &LinkToken) -> LinkArgs {
        let key = self.link_key(token);
        let opened_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .to_string();
        let state = tx.to_string();
        let mac = self.records.mac(
            &key,
            &link_fields(state.as_bytes(), user.as_bytes(), opened_unix.as_bytes()),
        );
        LinkArgs {
            pending: self.mark(&challenge_key(&state), PENDING),
            opened_unix,
            mac: mac.to_vec(),
            key,
        }
    }
}

/// A new link record and the challenge's pending mark, for OPEN: KEYS[2] the
/// link's key; ARGV[15..] the mark, opened (Unix s), the link record's MAC,
/// how long the link outlives its challenge (ms). The link record holds the
/// State (`t`), user (`u`), opened (`o`) and their MAC (`m`).
pub(super) struct LinkArgs {
    pub(super) key: String,
    pub(super) pending: Vec<u8>,
    pub(super) opened_unix: String,
    pub(super) mac: Vec<u8>,
}

impl LinkArgs {
    /// How long a link is remembered after its challenge, as OPEN takes it.
    pub(super) fn memory_ms() -> u64 {
        millis(LINK_MEMORY)
    }
}
