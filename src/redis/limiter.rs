//! Throttle windows and lockout counters in Redis, so the limits hold across
//! the instances of a pool.
//!
//! Keys (all with a TTL): `mailotp:m:u:{user}` and `mailotp:m:ip:{address}`
//! are sorted sets of send times (Redis server milliseconds) for the sliding
//! windows, kept an hour; `mailotp:f:{user}` counts failures in a row (kept a
//! day after the last one); `mailotp:l:{user}` exists while the user is locked.
//! Checking and counting are one Lua script each, so two instances racing for
//! the last allowed mail cannot both get it.
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
use crate::limits::{Limiter, Lockout, Throttled, Throttling};

/// How long failures in a row are remembered after the last one.
const FAILURES_KEPT: Duration = Duration::from_secs(24 * 3600);

/// KEYS user window, address window; ARGV per hour, in five minutes, per
/// address per hour (0: no limit), whether an address was given.
/// Returns 0 when counted, else the limit: 1 hour, 2 five minutes, 3 address.
const COUNT_MAIL: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hour, five = 3600000, 300000
local per_hour, per_five, per_ip = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - hour)
if per_hour > 0 and redis.call('ZCARD', KEYS[1]) >= per_hour then return 1 end
if per_five > 0 and redis.call('ZCOUNT', KEYS[1], now - five + 1, '+inf') >= per_five then return 2 end
local by_ip = ARGV[4] == '1' and per_ip > 0
if by_ip then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - hour)
  if redis.call('ZCARD', KEYS[2]) >= per_ip then return 3 end
end
local member = now .. ':' .. redis.call('INCR', KEYS[1] .. ':seq')
redis.call('PEXPIRE', KEYS[1] .. ':seq', hour)
redis.call('ZADD', KEYS[1], now, member)
redis.call('PEXPIRE', KEYS[1], hour)
if by_ip then
  redis.call('ZADD', KEYS[2], now, member)
  redis.call('PEXPIRE', KEYS[2], hour)
end
return 0
";

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
pub struct RedisLimiter {
    redis: Redis,
    throttling: Throttling,
    lockout: Lockout,
    count_mail: Script,
    failed: Script,
}

impl RedisLimiter {
    /// A limiter on `redis` with the configured limits.
    pub fn new(redis: Redis, throttling: Throttling, lockout: Lockout) -> Arc<RedisLimiter> {
        Arc::new(RedisLimiter {
            redis,
            throttling,
            lockout,
            count_mail: Script::new(COUNT_MAIL),
            failed: Script::new(FAILED),
        })
    }
}

fn key(kind: &str, name: &str) -> String {
    format!("{KEY_PREFIX}{kind}:{name}")
}

#[async_trait]
impl Limiter for RedisLimiter {
    async fn count_mail(
        &self,
        user: &str,
        client_ip: Option<&str>,
    ) -> Result<Result<(), Throttled>, BackendUnavailable> {
        let t = self.throttling;
        let script = &self.count_mail;
        let verdict: i64 = self
            .redis
            .run("count mail", |mut c| async move {
                script
                    .key(key("m:u", user))
                    .key(key("m:ip", client_ip.unwrap_or("")))
                    .arg(t.per_user_per_hour.unwrap_or(0))
                    .arg(t.per_user_in_five_minutes.unwrap_or(0))
                    .arg(t.per_client_ip_per_hour.unwrap_or(0))
                    .arg(if client_ip.is_some() { "1" } else { "0" })
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(match verdict {
            1 => Err(Throttled::UserHour),
            2 => Err(Throttled::UserFiveMinutes),
            3 => Err(Throttled::ClientIpHour),
            _ => Ok(()),
        })
    }

    async fn is_locked(&self, user: &str) -> Result<bool, BackendUnavailable> {
        if self.lockout.after == 0 {
            return Ok(false);
        }
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

    async fn succeeded(&self, user: &str) -> Result<(), BackendUnavailable> {
        let failures = key("f", user);
        self.redis
            .run("reset failures", |mut c| async move {
                redis::cmd("DEL").arg(failures).query_async::<()>(&mut c).await
            })
            .await
    }
}
