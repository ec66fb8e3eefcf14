//! Lockout counters in Redis, so the limits hold across the instances of a
//! pool. (The e-mail throttles are counted by the challenge store's OPEN
//! script, in the same round trip as the challenge they are counted for:
//! `mailotp:m:u:{user}` and `mailotp:m:ip:{address}`, sorted sets of send
//! times in Redis server milliseconds, kept an hour.)
//!
//! Keys (all with a TTL): `mailotp:f:{user}` counts failures in a row (kept a
//! day after the last one); `mailotp:l:{user}` exists while the user is locked.
//! Counting is one Lua script, so two instances racing cannot both miss it.
//! The challenge store reads the lock and deletes the failures in its own
//! scripts on the answer path (one round trip with the challenge).
//!
//! Redis is not trusted, yet these counters carry no MAC, on purpose: anyone
//! who can write to Redis can delete a key, which resets its counter, and no
//! MAC stops a deletion; a MAC would only stop them setting a value, and the
//! values they could set only make a limit stricter (a user locked, a window
//! full): denial of service, which deleting challenges gives them anyway. No
//! value read here can lead to an Accept: a counter can only refuse.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;

use super::{millis, Redis, KEY_PREFIX};
use crate::backend::BackendUnavailable;
use crate::limits::{Limiter, Lockout};

/// How long failures in a row are remembered after the last one.
const FAILURES_KEPT: Duration = Duration::from_secs(24 * 3600);

/// KEYS failures, lock; ARGV after, lock ms, failures kept ms. 1 when this
/// failure locked the user.
const FAILED: &str = r"
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if n == tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// Limits in Redis.
pub(crate) struct RedisLimiter {
    redis: Redis,
    lockout: Lockout,
    failed: Script,
}

impl RedisLimiter {
    /// A limiter on `redis` with the configured limits.
    pub(crate) fn new(redis: Redis, lockout: Lockout) -> Arc<RedisLimiter> {
        Arc::new(RedisLimiter {
            redis,
            lockout,
            failed: Script::new(FAILED),
        })
    }
}

/// `mailotp:{kind}:{name}`: `f` failures in a row, `l` the lock.
pub(super) fn key(kind: &str, name: &str) -> String {
    format!("{KEY_PREFIX}{kind}:{name}")
}

#[async_trait]
impl Limiter for RedisLimiter {
    /// Asked even with `lockout_after = 0`: a "Not me" deny locks the user
    /// all the same (`lock`).
    async fn is_locked(&self, user: &str) -> Result<bool, BackendUnavailable> {
        let lock = key("l", user);
        self.redis
            .run("read lock", |mut c| async move {
                redis::cmd("EXISTS").arg(lock).query_async::<bool>(&mut c).await
            })
            .await
    }

    async fn failed(&self, user: &str) -> Result<bool, BackendUnavailable> {
        if self.lockout.after == 0 {
            return Ok(false);
        }
        let (after, duration) = (self.lockout.after, self.lockout.duration);
        let script = &self.failed;
        let locked: i64 = self
            .redis
            .run("count failure", |mut c| async move {
                script
                    .key(key("f", user))
                    .key(key("l", user))
                    .arg(after)
                    .arg(millis(duration))
                    .arg(millis(FAILURES_KEPT))
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(locked == 1)
    }

    async fn lock(&self, user: &str) -> Result<(), BackendUnavailable> {
        let (lock, ms) = (key("l", user), millis(self.lockout.duration));
        self.redis
            .run("lock user", |mut c| async move {
                redis::cmd("SET")
                    .arg(lock)
                    .arg("1")
                    .arg("PX")
                    .arg(ms.max(1))
                    .query_async::<()>(&mut c)
                    .await
            })
            .await
    }

    async fn reset_failures(&self, user: &str) -> Result<(), BackendUnavailable> {
        let failures = key("f", user);
        self.redis
            .run("reset failures", |mut c| async move {
                redis::cmd("DEL").arg(failures).query_async::<()>(&mut c).await
            })
            .await
    }
}
