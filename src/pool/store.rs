//! The challenge store in Redis, shared by the instances of a pool.
//!
//! Keys (all with a TTL, so nothing is swept):
//! - `mailotp:c:{state}`: a hash with the user (`u`), the keyed digest of the
//!   code (`d`, sealed with a key derived from the pool key: a read of Redis
//!   hands out no codes), blocking-until in Redis server milliseconds (`b`),
//!   wrong attempts (`a`) and the origin (`o`, [`Origin::encode`]); it expires
//!   with the challenge;
//! - `mailotp:u:{user}`: the user's challenges, oldest first, for "PIN again
//!   within blocking_timeout" and "a code of any of the user's challenges";
//! - `mailotp:k:{digest of a link token}` (link delivery): the State, user and
//!   opening time; the challenge's `k` says whether its link is pending (`p`)
//!   or confirmed (`c`); kept an hour past the challenge, for "410 Gone".
//!
//! Codes are compared here, in constant time, against the digests a script
//! returns; the changes (open, consume, a wrong attempt) are Lua scripts, so
//! each is atomic across instances: of two instances consuming the same State
//! at the same instant, one gets it. Times come from Redis (`TIME`), so the
//! instances' clocks need not agree.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use redis::Script;

use super::{millis, Redis, KEY_PREFIX};
use crate::challenge::{
    Answer, ChallengeSettings, ChallengeStore, CodeMatch, LinkStatus, LinkToken, Opened, Origin, StoreError,
    Transaction, MAX_OPEN_PER_USER,
};
use crate::otp::{CodeDigest, CodeSealer, Otp};

/// KEYS[1] user list; ARGV prefix, state, user, digest, validity ms, blocking ms, max open,
/// origin. While the newest challenge blocks, returns its State if it is of the same
/// origin, else an empty string; otherwise opens and returns nil.
const OPEN: &str = r"
local p = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = {}
for _, tx in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if redis.call('EXISTS', p .. 'c:' .. tx) == 1 then live[#live + 1] = tx
  else redis.call('LREM', KEYS[1], 0, tx) end
end
if #live > 0 then
  local b = tonumber(redis.call('HGET', p .. 'c:' .. live[#live], 'b'))
  if b and b > now then
    if redis.call('HGET', p .. 'c:' .. live[#live], 'o') == ARGV[8] then return live[#live] end
    return ''
  end
end
local i = 1
while #live - i + 1 >= tonumber(ARGV[7]) do
  redis.call('DEL', p .. 'c:' .. live[i])
  redis.call('LREM', KEYS[1], 0, live[i])
  i = i + 1
end
local c = p .. 'c:' .. ARGV[2]
redis.call('HSET', c, 'u', ARGV[3], 'd', ARGV[4], 'b', now + tonumber(ARGV[6]), 'a', 0, 'o', ARGV[8])
redis.call('PEXPIRE', c, ARGV[5])
redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return false
";

/// KEYS[1] user list; ARGV prefix. Returns State, digest, link mark (`p`
/// pending, `c` confirmed, empty: no link), origin, … of the user's open challenges.
const DIGESTS: &str = r"
local out = {}
for _, tx in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local c = ARGV[1] .. 'c:' .. tx
  local d = redis.call('HGET', c, 'd')
  if d then
    out[#out + 1] = tx; out[#out + 1] = d; out[#out + 1] = redis.call('HGET', c, 'k') or ''
    out[#out + 1] = redis.call('HGET', c, 'o') or ''
  end
end
return out
";

/// KEYS[1] link; ARGV prefix, State, user, opened (Unix s), memory ms. Marks
/// the challenge as waiting for its link; the link outlives it by `memory`.
const ATTACH_LINK: &str = r"
local c = ARGV[1] .. 'c:' .. ARGV[2]
local ttl = redis.call('PTTL', c)
if ttl <= 0 then return 0 end
redis.call('HSET', c, 'k', 'p')
redis.call('HSET', KEYS[1], 't', ARGV[2], 'u', ARGV[3], 'o', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ttl + tonumber(ARGV[5]))
return 1
";

/// KEYS[1] link; ARGV prefix, confirm (1/0). {0}: unknown; {1}: gone;
/// {2, user, opened}: pending (and now confirmed, with confirm).
const LINK: &str = r"
local e = redis.call('HMGET', KEYS[1], 't', 'u', 'o')
if not e[1] then return {0, '', '0'} end
local c = ARGV[1] .. 'c:' .. e[1]
if redis.call('HGET', c, 'k') ~= 'p' then return {1, '', '0'} end
if ARGV[2] == '1' then redis.call('HSET', c, 'k', 'c') end
return {2, e[2], e[3]}
";

/// How long a used or expired link is remembered after its challenge, so
/// that it gets "410 Gone" rather than "404 Not Found" (as in memory).
const LINK_MEMORY: Duration = Duration::from_secs(3600);

/// One of a user's open challenges, as `answer` and `find` need it.
struct OpenChallenge {
    tx: Transaction,
    digest: CodeDigest,
    /// `b'p'`: waiting for its link; `b'c'`: link confirmed; 0: no link.
    link: u8,
    /// [`Origin::encode`] of where it was opened.
    origin: Vec<u8>,
}

/// KEYS[1] user list; ARGV prefix, user, state, matched. Closes all of the
/// user's challenges if both are still open and the user's; 1 when it did.
const CONSUME: &str = r"
local p = ARGV[1]
if redis.call('HGET', p .. 'c:' .. ARGV[3], 'u') ~= ARGV[2] then return 0 end
if redis.call('HGET', p .. 'c:' .. ARGV[4], 'u') ~= ARGV[2] then return 0 end
for _, tx in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do redis.call('DEL', p .. 'c:' .. tx) end
redis.call('DEL', KEYS[1])
return 1
";

/// KEYS[1] user list; ARGV prefix, user, state, max attempts. -1: not open;
/// 0: one attempt used; 1: that was the last, the challenge is closed.
const WRONG: &str = r"
local c = ARGV[1] .. 'c:' .. ARGV[3]
if redis.call('HGET', c, 'u') ~= ARGV[2] then return -1 end
if redis.call('HINCRBY', c, 'a', 1) >= tonumber(ARGV[4]) then
  redis.call('DEL', c)
  redis.call('LREM', KEYS[1], 0, ARGV[3])
  return 1
end
return 0
";

/// Challenges in Redis.
pub struct RedisStore {
    redis: Redis,
    sealer: CodeSealer,
    settings: ArcSwap<ChallengeSettings>,
    open: Script,
    digests: Script,
    consume: Script,
    wrong: Script,
    attach_link: Script,
    link: Script,
}

fn challenges_of(user: &str) -> String {
    format!("{KEY_PREFIX}u:{user}")
}

impl RedisStore {
    /// A store on `redis` that seals codes with `sealer` (derived from the pool key).
    pub fn new(redis: Redis, sealer: CodeSealer, settings: ChallengeSettings) -> Arc<RedisStore> {
        Arc::new(RedisStore {
            redis,
            sealer,
            settings: ArcSwap::from_pointee(settings),
            open: Script::new(OPEN),
            digests: Script::new(DIGESTS),
            consume: Script::new(CONSUME),
            wrong: Script::new(WRONG),
            attach_link: Script::new(ATTACH_LINK),
            link: Script::new(LINK),
        })
    }

    /// Applies new limits to challenges opened (and answered) from now on.
    pub fn set_settings(&self, settings: ChallengeSettings) {
        self.settings.store(Arc::new(settings));
    }

    /// The user's open challenges with their digests, as one atomic read.
    async fn digests(&self, user: &str) -> Result<Vec<OpenChallenge>, StoreError> {
        let script = &self.digests;
        let flat: Vec<Vec<u8>> = self
            .redis
            .run("read challenges", |mut c| async move {
                script
                    .key(challenges_of(user))
                    .arg(KEY_PREFIX)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(flat
            .chunks_exact(4)
            .filter_map(|fields| {
                Some(OpenChallenge {
                    tx: Transaction::from_state(&fields[0])?,
                    digest: fields[1].as_slice().try_into().ok()?,
                    link: fields[2].first().copied().unwrap_or(0),
                    origin: fields[3].clone(),
                })
            })
            .collect())
    }

    /// The State among `open`'s code challenges from `origin` whose code is
    /// `code`; every digest is checked, in constant time, so the time taken
    /// does not tell which matched.
    fn matching(&self, open: &[OpenChallenge], origin: &Origin, code: &[u8]) -> CodeMatch {
        let mut found = CodeMatch::NoChallenge;
        for o in code_challenges(open, origin) {
            if self.sealer.matches(&o.tx, code, &o.digest) && !matches!(found, CodeMatch::Matched(_)) {
                found = CodeMatch::Matched(o.tx);
            } else if found == CodeMatch::NoChallenge {
                found = CodeMatch::Wrong;
            }
        }
        found
    }

    /// The key of a link: a digest of the token, so Redis holds no usable link.
    fn link_key(&self, token: &LinkToken) -> String {
        let digest = self.sealer.seal_link(token.to_path().as_bytes());
        format!("{KEY_PREFIX}k:{}", hex::encode(digest))
    }

    async fn link(&self, token: &LinkToken, confirm: bool) -> Result<LinkStatus, StoreError> {
        let (script, key) = (&self.link, self.link_key(token));
        let (kind, user, opened_unix): (i64, String, u64) = self
            .redis
            .run("read link", |mut c| async move {
                script
                    .key(key)
                    .arg(KEY_PREFIX)
                    .arg(if confirm { "1" } else { "0" })
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(match kind {
            2 => LinkStatus::Pending { user, opened_unix },
            1 => LinkStatus::Gone,
            _ => LinkStatus::Unknown,
        })
    }

    /// Runs `script` on one of `user`'s challenges: KEYS the user's list,
    /// ARGV prefix, user, `state`, then `last`.
    async fn on_challenge(
        &self,
        what: &'static str,
        script: &Script,
        user: &str,
        state: &Transaction,
        last: impl redis::ToRedisArgs + Send + Sync,
    ) -> Result<i64, StoreError> {
        self.redis
            .run(what, |mut c| async move {
                script
                    .key(challenges_of(user))
                    .arg(KEY_PREFIX)
                    .arg(user)
                    .arg(state.to_string())
                    .arg(last)
                    .invoke_async(&mut c)
                    .await
            })
            .await
    }

    async fn consume_pair(&self, user: &str, state: &Transaction, matched: &Transaction) -> Result<bool, StoreError> {
        let done = self
            .on_challenge("consume challenge", &self.consume, user, state, matched.to_string())
            .await?;
        Ok(done == 1)
    }
}

/// The code (not link) challenges among `open` from `origin`.
fn code_challenges<'a>(open: &'a [OpenChallenge], origin: &Origin) -> impl Iterator<Item = &'a OpenChallenge> {
    let origin = origin.encode().into_bytes();
    open.iter().filter(move |o| o.link == 0 && o.origin == origin)
}

#[async_trait]
impl ChallengeStore for RedisStore {
    async fn open(&self, user: &str, origin: &Origin, tx: Transaction, code: &Otp) -> Result<Opened, StoreError> {
        let settings = **self.settings.load();
        let origin = origin.encode();
        let digest = self.sealer.seal(&tx, code.expose().as_bytes());
        let script = &self.open;
        let blocking: Option<Vec<u8>> = self
            .redis
            .run("open challenge", |mut c| async move {
                script
                    .key(challenges_of(user))
                    .arg(KEY_PREFIX)
                    .arg(tx.to_string())
                    .arg(user)
                    .arg(&digest[..])
                    .arg(millis(settings.validity))
                    .arg(millis(settings.blocking))
                    .arg(MAX_OPEN_PER_USER)
                    .arg(&origin)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(match blocking.as_deref() {
            Some([]) => Opened::SentElsewhere,
            Some(state) => Transaction::from_state(state).map_or(Opened::New, Opened::AlreadySent),
            None => Opened::New,
        })
    }

    async fn answer(
        &self,
        state: &Transaction,
        user: &str,
        origin: &Origin,
        code: &[u8],
    ) -> Result<Answer, StoreError> {
        let open = self.digests(user).await?;
        let Some(this) = open.iter().find(|o| o.tx == *state) else {
            return Ok(Answer::Unknown);
        };
        if this.origin != origin.encode().as_bytes() {
            return Ok(Answer::Unknown);
        }
        match this.link {
            b'p' => return Ok(Answer::LinkPending),
            b'c' => {
                let consumed = self.consume_pair(user, state, state).await?;
                return Ok(if consumed { Answer::Accepted } else { Answer::Unknown });
            }
            _ => {}
        }
        if let CodeMatch::Matched(matched) = self.matching(&open, origin, code) {
            return Ok(if self.consume_pair(user, state, &matched).await? {
                Answer::Accepted
            } else {
                Answer::Unknown
            });
        }
        let max_attempts = self.settings.load().max_attempts;
        let verdict = self
            .on_challenge("count attempt", &self.wrong, user, state, max_attempts)
            .await?;
        Ok(match verdict {
            0 => Answer::Wrong { void: false },
            1 => Answer::Wrong { void: true },
            _ => Answer::Unknown,
        })
    }

    async fn find(&self, user: &str, origin: &Origin, code: &[u8]) -> Result<CodeMatch, StoreError> {
        let open = self.digests(user).await?;
        Ok(self.matching(&open, origin, code))
    }

    async fn wrong_code(&self, user: &str, origin: &Origin) -> Result<(), StoreError> {
        let open = self.digests(user).await?;
        let max_attempts = self.settings.load().max_attempts;
        for o in code_challenges(&open, origin) {
            self.on_challenge("count attempt", &self.wrong, user, &o.tx, max_attempts)
                .await?;
        }
        Ok(())
    }

    async fn consume(&self, user: &str, tx: &Transaction) -> Result<bool, StoreError> {
        self.consume_pair(user, tx, tx).await
    }

    async fn cancel(&self, user: &str, tx: &Transaction) -> Result<(), StoreError> {
        let key = format!("{KEY_PREFIX}c:{tx}");
        self.redis
            .run("cancel challenge", |mut c| async move {
                redis::pipe()
                    .atomic()
                    .del(key)
                    .ignore()
                    .lrem(challenges_of(user), 0, tx.to_string())
                    .ignore()
                    .query_async::<()>(&mut c)
                    .await
            })
            .await
    }

    /// Not known here: the challenges are the whole pool's, in Redis.
    fn open_count(&self) -> usize {
        0
    }

    async fn attach_link(&self, user: &str, tx: &Transaction, token: &LinkToken) -> Result<(), StoreError> {
        let (script, key) = (&self.attach_link, self.link_key(token));
        let opened_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.redis
            .run("attach link", |mut c| async move {
                script
                    .key(key)
                    .arg(KEY_PREFIX)
                    .arg(tx.to_string())
                    .arg(user)
                    .arg(opened_unix)
                    .arg(millis(LINK_MEMORY))
                    .invoke_async::<i64>(&mut c)
                    .await
            })
            .await?;
        Ok(())
    }

    async fn link_status(&self, token: &LinkToken) -> Result<LinkStatus, StoreError> {
        self.link(token, false).await
    }

    async fn confirm_link(&self, token: &LinkToken) -> Result<LinkStatus, StoreError> {
        self.link(token, true).await
    }
}
