//! The operator's view of the pool's state in Redis (`mailotp ctl` on any
//! instance acts on the pool): a user's challenges (read and checked by the
//! challenge store), lock and throttle counts, unlocking, the shared mail
//! queue, and what became of each challenge's mail.
//!
//! Keys written here, each a hash of JSON (`j`) and its MAC (`m`, over the
//! key name and `j`, like every record: a forged one is ignored and
//! counted): `mailotp:ms:{state}`, the delivery (when it was asked, queued /
//! retrying with the error / relayed with the relay's reply / failed), which
//! expires with its challenge; `mailotp:lr:{user}`, the user's last answer
//! (code, reason, client, time), kept a day. They hold no code and no link. The other keys are
//! read or deleted as their owners (`limiter`, `store`, `mail`) define them.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use tokio::sync::mpsc;

use super::mail::QueueArgs;
use super::record::{bad_record, RecordKey, RecordMac};
use super::store::RedisStore;
use super::{limiter, millis, PoolError, PoolKeys, Redis, KEY_PREFIX};
use crate::backend::BackendUnavailable;
use crate::challenge::{ChallengeSettings, LastResult, OpenChallenge, OperatorState, Transaction, LAST_RESULT_KEPT};
use crate::config::{EmailConfig, RedisConfig};
use crate::health::Health;
use crate::lifecycle::Lifecycle;
use crate::limits::UserLimits;
use crate::mail::status::{Delivery, DeliveryEntry, DeliveryLog};

/// KEYS lock, failures, the user's mail window. The lock's PTTL, the
/// failures in a row, the mails in the last five minutes and hour (scores
/// are Redis server milliseconds, as OPEN writes them).
const LIMITS: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {
  redis.call('PTTL', KEYS[1]),
  tonumber(redis.call('GET', KEYS[2]) or '0') or 0,
  redis.call('ZCOUNT', KEYS[3], now - 300000 + 1, '+inf'),
  redis.call('ZCOUNT', KEYS[3], now - 3600000 + 1, '+inf')
}
";

/// KEYS lock, failures, mail window; ARGV[1] '1' to clear the window too.
/// 1 when a lock was lifted.
const UNLOCK: &str = r"
local was = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2])
if ARGV[1] == '1' then redis.call('DEL', KEYS[3], KEYS[3] .. ':seq') end
return was
";

/// KEYS[1] the mail stream. Its length, the oldest entry's id (or ''), and
/// Redis's clock in ms (stream ids start with the ms they were added).
const QUEUE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local id = ''
if first[1] then id = first[1][1] end
return {redis.call('XLEN', KEYS[1]), id, tostring(now)}
";

/// KEYS the records; for each, four ARGV: json, MAC, keep ms, '1' when only
/// a new record may be written (queued never replaces what a worker
/// reported).
const RECORDS: &str = r"
for i, key in ipairs(KEYS) do
  local a = (i - 1) * 4
  if ARGV[a + 4] ~= '1' or redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, 'j', ARGV[a + 1], 'm', ARGV[a + 2])
    redis.call('PEXPIRE', key, ARGV[a + 3])
  end
end
return #KEYS
";

/// Records written in one script call at most; more wait for the next.
const RECORDS_AT_ONCE: usize = 256;
/// Records waiting to be written at most; beyond, new ones are dropped (they
/// only feed `mailotp ctl status`).
const RECORDS_WAITING: usize = 4096;

/// The pool's state as `mailotp ctl` sees it.
pub(crate) struct RedisState {
    redis: Redis,
    store: Arc<RedisStore>,
    records: RecordKey,
    writer: Writer,
}

/// What became of the pool's mails, in Redis.
pub(crate) struct RedisDeliveries {
    redis: Redis,
    records: RecordKey,
    writer: Writer,
}

/// Hands records to the one task that writes them: the requests and mails
/// they describe never wait for them, and under load one script call
/// carries the records of many (group commit), so that they do not double
/// the pool's round trips.
#[derive(Clone)]
struct Writer {
    queue: mpsc::Sender<Pending>,
    records: RecordKey,
}

/// A record on its way to Redis.
struct Pending {
    key: String,
    json: String,
    mac: RecordMac,
    keep: Duration,
    only_new: bool,
}

impl Writer {
    /// Starts the writing task on `life`.
    fn start(redis: Redis, records: RecordKey, life: &Lifecycle) -> Writer {
        let (queue, waiting) = mpsc::channel(RECORDS_WAITING);
        life.spawn(write_records(redis, waiting, life.clone()));
        Writer { queue, records }
    }

    /// Queues `value` as JSON with its MAC at `key` for `keep`; with
    /// `only_new` only when nothing is there yet. A record that finds the
    /// queue full is dropped: it would only show an older state.
    fn write<T: serde::Serialize>(&self, key: String, value: &T, keep: Duration, only_new: bool) {
        let Ok(json) = serde_json::to_string(value) else {
            return;
        };
        let mac = self.records.mac(&key, &[("j", json.as_bytes())]);
        let pending = Pending {
            key,
            json,
            mac,
            keep,
            only_new,
        };
        if self.queue.try_send(pending).is_err() {
            tracing::debug!("operator records queue full; a record for mailotp ctl was dropped");
        }
    }
}

/// Writes queued records, as many as are waiting in each script call, until
/// shutdown (then what is waiting is written once more).
async fn write_records(redis: Redis, mut waiting: mpsc::Receiver<Pending>, life: Lifecycle) {
    let script = Script::new(RECORDS);
    let mut batch = Vec::with_capacity(RECORDS_AT_ONCE);
    loop {
        let more = tokio::select! {
            n = waiting.recv_many(&mut batch, RECORDS_AT_ONCE) => n > 0,
            () = life.cancelled() => {
                waiting.close();
                waiting.recv_many(&mut batch, RECORDS_WAITING).await > 0
            }
        };
        if !more {
            return;
        }
        let mut call = script.prepare_invoke();
        for p in &batch {
            call.key(&p.key)
                .arg(&p.json)
                .arg(&p.mac[..])
                .arg(millis(p.keep))
                .arg(if p.only_new { "1" } else { "0" });
        }
        let written = redis
            .run("write operator records", |mut c| {
                let call = &call;
                async move { call.invoke_async::<i64>(&mut c).await }
            })
            .await;
        if let Err(e) = written {
            tracing::debug!(error = %e, records = batch.len(), "cannot write records for mailotp ctl");
        }
        batch.clear();
        if life.is_stopping() && waiting.is_closed() && waiting.is_empty() {
            return;
        }
    }
}

/// The operator's handles on `config`'s Redis, with a connection of their
/// own: challenges and limits, and the delivery log.
pub(crate) fn start(
    config: &RedisConfig,
    email: &EmailConfig,
    health: &Arc<Health>,
    life: &Lifecycle,
) -> Result<(Arc<RedisState>, Arc<RedisDeliveries>), PoolError> {
    let keys = PoolKeys::derive(&config.key);
    let redis = Redis::connect(config, &keys.fingerprint, Arc::clone(health))?;
    // This store only reads (`ctl status`): it never opens, so it queues
    // nothing.
    let reads_only = QueueArgs {
        stream: String::new(),
        limit: 0,
        ttl_ms: 0,
    };
    let store = RedisStore::new(
        redis.clone(),
        &keys,
        ChallengeSettings::from(email),
        email.throttling,
        reads_only,
    );
    let writer = Writer::start(redis.clone(), keys.records.clone(), life);
    let deliveries = Arc::new(RedisDeliveries {
        redis: redis.clone(),
        records: keys.records.clone(),
        writer: writer.clone(),
    });
    let state = RedisState {
        redis,
        store,
        records: keys.records.clone(),
        writer,
    };
    Ok((Arc::new(state), deliveries))
}

impl RedisState {
    /// Runs `script` on the user's lock, failures and mail window, with `arg`.
    async fn on_limits<T: redis::FromRedisValue>(
        &self,
        what: &'static str,
        script: &str,
        user: &str,
        arg: &str,
    ) -> Result<T, BackendUnavailable> {
        let script = Script::new(script);
        self.redis
            .run(what, |mut c| async move {
                script
                    .key(limiter::key("l", user))
                    .key(limiter::key("f", user))
                    .key(mail_window(user))
                    .arg(arg)
                    .invoke_async(&mut c)
                    .await
            })
            .await
    }
}

/// The user's mail window, as the store's OPEN counts it.
fn mail_window(user: &str) -> String {
    format!("{KEY_PREFIX}m:u:{user}")
}

#[async_trait]
impl OperatorState for RedisState {
    async fn open_challenges(&self, user: &str) -> Result<Vec<OpenChallenge>, BackendUnavailable> {
        self.store.open_of(user).await
    }

    async fn limits(&self, user: &str) -> Result<UserLimits, BackendUnavailable> {
        let (lock_ms, failures, five, hour): (i64, u64, u64, u64) =
            self.on_limits("read limits", LIMITS, user, "").await?;
        Ok(UserLimits {
            locked_for: u64::try_from(lock_ms)
                .ok()
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis),
            failures,
            mails_5_min: five,
            mails_hour: hour,
        })
    }

    async fn unlock(&self, user: &str, throttles: bool) -> Result<bool, BackendUnavailable> {
        let clear = if throttles { "1" } else { "0" };
        let was: i64 = self.on_limits("unlock user", UNLOCK, user, clear).await?;
        Ok(was > 0)
    }

    fn record_result(&self, user: &str, result: LastResult) {
        self.writer.write(last_key(user), &result, LAST_RESULT_KEPT, false);
    }

    async fn last_result(&self, user: &str) -> Result<Option<LastResult>, BackendUnavailable> {
        read_record(&self.redis, &self.records, last_key(user)).await
    }
}

fn status_key(tx: &Transaction) -> String {
    format!("{KEY_PREFIX}ms:{tx}")
}

fn last_key(user: &str) -> String {
    format!("{KEY_PREFIX}lr:{user}")
}

/// Reads what [`Writer::write`] wrote at `key`; a record that fails its MAC
/// is ignored and counted.
async fn read_record<T: serde::de::DeserializeOwned>(
    redis: &Redis,
    records: &RecordKey,
    key: String,
) -> Result<Option<T>, BackendUnavailable> {
    let name = key.clone();
    let (json, mac): (Option<Vec<u8>>, Option<Vec<u8>>) = redis
        .run("read operator record", |mut c| async move {
            redis::cmd("HMGET")
                .arg(name)
                .arg("j")
                .arg("m")
                .query_async(&mut c)
                .await
        })
        .await?;
    let (Some(json), Some(mac)) = (json, mac) else {
        return Ok(None);
    };
    if !records.verify(&key, &[("j", &json)], &mac) {
        bad_record(&key, "operator record mac");
        return Ok(None);
    }
    Ok(serde_json::from_slice(&json).ok())
}

#[async_trait]
impl DeliveryLog for RedisDeliveries {
    async fn record(&self, tx: Transaction, entry: DeliveryEntry, keep: Duration) {
        let only_new = entry.delivery == Delivery::Queued;
        self.writer.write(status_key(&tx), &entry, keep, only_new);
    }

    async fn get(&self, tx: &Transaction) -> Result<Option<DeliveryEntry>, BackendUnavailable> {
        read_record(&self.redis, &self.records, status_key(tx)).await
    }

    async fn unfinished(&self) -> Result<(u64, Option<u64>), BackendUnavailable> {
        let script = Script::new(QUEUE);
        let (len, oldest, now): (u64, String, String) = self
            .redis
            .run("read mail queue", |mut c| async move {
                script.key(format!("{KEY_PREFIX}mail")).invoke_async(&mut c).await
            })
            .await?;
        let ms = |s: &str| s.split('-').next().and_then(|ms| ms.parse::<u64>().ok());
        let age = ms(&oldest)
            .zip(ms(&now))
            .map(|(then, now)| now.saturating_sub(then) / 1000);
        Ok((len, age))
    }
}
