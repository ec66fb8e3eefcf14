//! redis: several instances as one through Redis (`[state] backend = "redis"`).
//!
//! This module owns the Redis connection, the keys derived from the pool's
//! shared key, and the health of the backend: every Redis call goes through
//! [`Redis::run`], which reports to [`Health`] and logs the transition once,
//! so while Redis is unreachable the instance answers nothing (Access-Request
//! and Status-Server alike) and answers again as soon as a call succeeds. A
//! watcher counts the open challenges every second, so that the way back does
//! not wait for an Access-Request. The stores in [`store`], [`limiter`] and [`mail`] keep every
//! key with a TTL, so nothing needs sweeping. Nothing here logs a code, a key
//! or the Redis URL (it may carry a password).
//!
//! Redis is not trusted ([`record`]): the pool key's fingerprint lives there
//! (`mailotp:keyfp`, without expiry, written by the first instance that finds
//! none). An instance whose key differs refuses to start; one that could not
//! reach Redis at start checks before its first call and, on a mismatch,
//! answers nothing (as while Redis is down) and says why once.

pub(crate) mod control;
pub(crate) mod limiter;
pub(crate) mod mail;
pub(crate) mod record;
pub(crate) mod store;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hkdf::Hkdf;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};
use sha2::Sha256;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::backend::BackendUnavailable;
use crate::challenge::{ChallengeSettings, ChallengeStore};
use crate::config::{EmailConfig, PoolKey, RedisConfig};
use crate::health::{Backend, Health};
use crate::lifecycle::Lifecycle;
use crate::limits::{Limiter, Lockout};
use crate::mail::MailQueue;
use crate::otp::CodeSealer;
use record::{RecordKey, FINGERPRINT_KEY};

/// Every key this program writes starts with this, so a Redis can be shared
/// with other applications.
pub(crate) const KEY_PREFIX: &str = "mailotp:";
/// How long one Redis call may take before the backend counts as down.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the watcher calls Redis (see `store::open`).
pub(crate) const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The Redis backend could not be set up.
#[derive(Debug, Error)]
pub(crate) enum PoolError {
    /// `redis_url` is not a URL the client understands.
    #[error("state.redis_url is not a usable Redis URL: {reason}")]
    Url {
        /// The client's words (never the URL itself).
        reason: String,
    },
    /// The mail provider's settings are wrong.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Redis did not answer.
    #[error("redis unreachable: {reason}")]
    Unreachable {
        /// The client's words.
        reason: String,
    },
    /// The pool in this Redis uses another key.
    #[error("{}", mismatch(theirs, ours))]
    KeyMismatch {
        /// The fingerprint stored in Redis.
        theirs: String,
        /// This instance's.
        ours: String,
    },
}

fn mismatch(theirs: &str, ours: &str) -> String {
    format!(
        "pool key fingerprint mismatch: redis holds {theirs}, state.secret_file gives {ours}; \
         every instance of a pool needs the same key (or remove {FINGERPRINT_KEY} from redis after changing it on all)"
    )
}

/// Keys derived from the pool's shared key, one per purpose.
#[derive(Clone)]
pub(crate) struct PoolKeys {
    /// Seals codes into the digests challenges keep.
    pub sealer: CodeSealer,
    /// Encrypts queued mails.
    pub mail: Zeroizing<[u8; 32]>,
    /// Authenticates the records read back from Redis.
    pub records: RecordKey,
    /// Names the key in Redis (`mailotp:keyfp`) without revealing it: 32 hex digits.
    pub fingerprint: String,
}

impl PoolKeys {
    /// HKDF-SHA256 of the shared key, with a label per purpose.
    pub(crate) fn derive(key: &PoolKey) -> PoolKeys {
        let hk = Hkdf::<Sha256>::new(Some(b"mailotp pool"), key.expose());
        let expand = |label: &[u8]| {
            let mut out = Zeroizing::new([0u8; 32]);
            hk.expand(label, &mut out[..])
                .expect("32 bytes is a valid HKDF-SHA256 length");
            out
        };
        PoolKeys {
            sealer: CodeSealer::from_key(expand(b"code digest")),
            mail: expand(b"mail queue"),
            records: RecordKey::from_key(expand(b"record mac")),
            fingerprint: hex::encode(&expand(b"key fingerprint")[..16]),
        }
    }
}

/// The shared Redis connection of one instance, with health reporting.
#[derive(Clone)]
pub(crate) struct Redis {
    conn: ConnectionManager,
    health: Arc<Health>,
    key: Arc<KeyCheck>,
}

/// Whether the pool key's fingerprint in Redis is ours.
struct KeyCheck {
    fingerprint: String,
    /// Set once Redis said the fingerprint is ours (or took it).
    matched: AtomicBool,
    /// A mismatch is logged once.
    mismatch_logged: AtomicBool,
}

/// KEYS[1] fingerprint; ARGV[1] ours. Returns the pool's, writing ours
/// (without expiry) when there is none yet.
const CLAIM_FINGERPRINT: &str = r"
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
";

/// A connection manager that connects lazily (an instance starts while Redis
/// is down) and fails a call fast instead of retrying for long: a request
/// waits at most about `response_timeout`, then gets no answer.
fn manager(url: &str, response_timeout: Duration) -> Result<ConnectionManager, PoolError> {
    let client = redis::Client::open(url).map_err(|e| PoolError::Url { reason: e.to_string() })?;
    let config = ConnectionManagerConfig::new()
        .set_number_of_retries(0)
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(response_timeout));
    ConnectionManager::new_lazy_with_config(client, config).map_err(|e| PoolError::Url { reason: e.to_string() })
}

impl Redis {
    /// A handle on `config`'s Redis that reports to `health`; connects on
    /// first use, and checks the pool key's `fingerprint` before its first call.
    pub(crate) fn connect(config: &RedisConfig, fingerprint: &str, health: Arc<Health>) -> Result<Redis, PoolError> {
        Ok(Redis {
            conn: manager(&config.url, RESPONSE_TIMEOUT)?,
            health,
            key: Arc::new(KeyCheck {
                fingerprint: fingerprint.to_owned(),
                matched: AtomicBool::new(false),
                mismatch_logged: AtomicBool::new(false),
            }),
        })
    }

    /// A second connection for blocking reads (`XREADGROUP BLOCK`), which
    /// would hold up every other call on a shared one.
    fn blocking_twin(&self, config: &RedisConfig, block: Duration) -> Result<Redis, PoolError> {
        Ok(Redis {
            conn: manager(&config.url, block + RESPONSE_TIMEOUT)?,
            health: Arc::clone(&self.health),
            key: Arc::clone(&self.key),
        })
    }

    /// Runs one Redis call; a failure marks the backend down and becomes
    /// [`BackendUnavailable`], a success marks it up. Until the pool
    /// key's fingerprint matched, it is checked first.
    pub(crate) async fn run<T, F, Fut>(&self, what: &'static str, call: F) -> Result<T, BackendUnavailable>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        if !self.key.matched.load(Ordering::Acquire) {
            match self.pool_key().await {
                Ok(None) => {}
                Ok(Some(theirs)) => return Err(self.mismatched(&theirs)),
                Err(error) => return self.report(what, Err(error)),
            }
        }
        let result = call(self.conn.clone()).await;
        self.report(what, result)
    }

    /// Health and the log for the outcome of a call.
    fn report<T>(&self, what: &'static str, result: Result<T, RedisError>) -> Result<T, BackendUnavailable> {
        match result {
            Ok(value) => {
                if self.health.up(Backend::State) {
                    tracing::warn!("redis reachable again: answering requests");
                }
                Ok(value)
            }
            Err(error) => {
                if self.health.down(Backend::State) {
                    tracing::error!(%error, "redis unreachable: answering nothing until it is back");
                }
                Err(BackendUnavailable {
                    reason: format!("redis {what}: {error}"),
                })
            }
        }
    }

    /// Reads (or, in a new pool, writes) the pool key's fingerprint; `Some`
    /// with the pool's when it is not ours.
    async fn pool_key(&self) -> Result<Option<String>, RedisError> {
        let ours = &self.key.fingerprint;
        let theirs: String = Script::new(CLAIM_FINGERPRINT)
            .key(FINGERPRINT_KEY)
            .arg(ours)
            .invoke_async(&mut self.conn.clone())
            .await?;
        if theirs == *ours {
            self.key.matched.store(true, Ordering::Release);
            return Ok(None);
        }
        Ok(Some(theirs))
    }

    /// The pool uses another key: this instance answers nothing, as while
    /// Redis is down (another instance, with the right key, answers).
    fn mismatched(&self, theirs: &str) -> BackendUnavailable {
        let reason = mismatch(theirs, &self.key.fingerprint);
        self.health.down(Backend::State);
        if !self.key.mismatch_logged.swap(true, Ordering::Relaxed) {
            tracing::error!(%reason, "this instance's pool key is not the pool's: answering nothing");
        }
        BackendUnavailable { reason }
    }
}

/// What `auth` needs, kept in Redis for the whole pool.
pub(crate) struct Shared {
    /// Open challenges.
    pub challenges: Arc<dyn ChallengeStore>,
    /// Throttles and lockout.
    pub limits: Arc<dyn Limiter>,
    /// The mail queue (this instance delivers from it too).
    pub mail: MailQueue,
}

/// Starts the Redis backends of `config` on `life`: the store, the limiter,
/// the shared mail queue with this instance's delivery, and the watcher.
/// An instance whose pool key differs from the pool's refuses to start; one
/// that cannot reach Redis now checks the key once it can.
pub(crate) async fn start(
    config: &RedisConfig,
    email: &EmailConfig,
    lockout: Lockout,
    health: &Arc<Health>,
    life: &Lifecycle,
) -> Result<Shared, PoolError> {
    let keys = PoolKeys::derive(&config.key);
    let redis = Redis::connect(config, &keys.fingerprint, Arc::clone(health))?;
    match redis.pool_key().await {
        Ok(None) => tracing::info!(fingerprint = %keys.fingerprint, "pool key matches the pool's in redis"),
        Ok(Some(theirs)) => {
            return Err(PoolError::KeyMismatch {
                theirs,
                ours: keys.fingerprint,
            })
        }
        Err(error) => tracing::warn!(%error, "cannot check the pool key in redis now; checking before its first use"),
    }
    let outbox = mail::RedisOutbox::new(
        redis.clone(),
        config,
        &keys.mail,
        email.challenge_validity,
        email.queue_limit,
    )?;
    let settings = ChallengeSettings::from(email);
    let challenges = store::RedisStore::new(redis.clone(), &keys, settings, email.throttling, outbox.queue_args());
    challenges.watch(life);
    let limits = limiter::RedisLimiter::new(redis.clone(), lockout);
    outbox.start(life);
    let mail = crate::mail::start_with(outbox, email, life)?;
    Ok(Shared {
        challenges,
        limits,
        mail,
    })
}

/// `mailotp check --connect`: whether Redis answers at `config`'s URL and
/// holds our key's fingerprint (or none yet: this only reads it).
pub(crate) async fn check_connection(config: &RedisConfig) -> Result<(), PoolError> {
    let mut conn = manager(&config.url, Duration::from_secs(3))?;
    let theirs: Option<String> = redis::cmd("GET")
        .arg(FINGERPRINT_KEY)
        .query_async(&mut conn)
        .await
        .map_err(|e| PoolError::Unreachable { reason: e.to_string() })?;
    let ours = PoolKeys::derive(&config.key).fingerprint;
    match theirs {
        Some(theirs) if theirs != ours => Err(PoolError::KeyMismatch { theirs, ours }),
        _ => Ok(()),
    }
}

/// Wall-clock time in milliseconds since the Unix epoch.
fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Milliseconds of a duration, as Redis TTLs take them (at least 1).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}
