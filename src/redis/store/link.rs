//! The link records of the challenge store (link delivery): which State a
//! link stands for, and its confirmation, both checked against the pool key
//! before they count (see the parent module for the records).

use redis::Script;

use super::{challenge_key, Link, RedisStore, CONFIRMED, PENDING};
use crate::backend::BackendUnavailable;
use crate::challenge::{LinkStatus, LinkToken, Transaction, LINK_MEMORY};
use crate::redis::record::bad_record;
use crate::redis::{millis, KEY_PREFIX};

/// KEYS[1] link; ARGV prefix, State, user, opened (Unix s), memory ms,
/// pending mark, link MAC. Marks the challenge as waiting for its link; the
/// link outlives it by `memory`.
const ATTACH_LINK: &str = r"
local c = ARGV[1] .. 'c:' .. ARGV[2]
local ttl = redis.call('PTTL', c)
if ttl <= 0 then return 0 end
redis.call('HSET', c, 'k', ARGV[6])
redis.call('HSET', KEYS[1], 't', ARGV[2], 'u', ARGV[3], 'o', ARGV[4], 'm', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ttl + tonumber(ARGV[5]))
return 1
";

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
    attach: Script,
    read: Script,
    confirm: Script,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            attach: Script::new(ATTACH_LINK),
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

    /// Makes `tx` a link challenge whose link is `token`.
    pub(super) async fn attach(
        &self,
        user: &str,
        tx: &Transaction,
        token: &LinkToken,
    ) -> Result<(), BackendUnavailable> {
        let (script, key) = (&self.links.attach, self.link_key(token));
        let opened_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .to_string();
        let state = tx.to_string();
        let mac = self.records.mac(
            &key,
            &link_fields(state.as_bytes(), user.as_bytes(), opened_unix.as_bytes()),
        );
        let pending = self.mark(&challenge_key(&state), PENDING);
        self.redis
            .run("attach link", |mut c| async move {
                script
                    .key(key)
                    .arg(KEY_PREFIX)
                    .arg(state)
                    .arg(user)
                    .arg(opened_unix)
                    .arg(millis(LINK_MEMORY))
                    .arg(pending)
                    .arg(&mac[..])
                    .invoke_async::<i64>(&mut c)
                    .await
            })
            .await?;
        Ok(())
    }
}
