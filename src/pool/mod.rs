//! pool: several instances as one through Redis (`[state] backend = "redis"`).
//!
//! This module owns the Redis connection, the keys derived from the pool's
//! shared key, and the health of the backend: every Redis call goes through
//! [`Redis::run`], which reports to [`Health`] and logs the transition once,
//! so while Redis is unreachable the instance answers nothing (Access-Request
//! and Status-Server alike) and answers again as soon as a call succeeds. A
//! watcher pings Redis every second so that the way back does not wait for an
//! Access-Request. The stores in [`store`], [`limiter`] and [`mail`] keep every
//! key with a TTL, so nothing needs sweeping. Nothing here logs a code, a key
//! or the Redis URL (it may carry a password).

pub mod limiter;
pub mod mail;
pub mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hkdf::Hkdf;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisError;
use sha2::Sha256;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::challenge::{ChallengeSettings, StoreError};
use crate::config::{EmailConfig, PoolKey, RedisConfig};
use crate::health::{Backend, Health};
use crate::lifecycle::Lifecycle;
use crate::limits::{Limiter, Lockout};
use crate::mail::MailQueue;
use crate::otp::CodeSealer;

/// Every key this program writes starts with this, so a Redis can be shared
/// with other applications.
pub const KEY_PREFIX: &str = "mailotp:";
/// How long one Redis call may take before the backend counts as down.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the watcher pings Redis.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The Redis backend could not be set up.
#[derive(Debug, Error)]
pub enum PoolError {
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
}

/// Keys derived from the pool's shared key, one per purpose.
#[derive(Clone)]
pub struct PoolKeys {
    /// Seals codes into the digests challenges keep.
    pub sealer: CodeSealer,
    /// Encrypts queued mails.
    pub mail: Zeroizing<[u8; 32]>,
}

impl PoolKeys {
    /// HKDF-SHA256 of the shared key, with a label per purpose.
    pub fn derive(key: &PoolKey) -> PoolKeys {
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
        }
    }
}

/// The shared Redis connection of one instance, with health reporting.
#[derive(Clone)]
pub struct Redis {
    conn: ConnectionManager,
    health: Arc<Health>,
}

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
    /// A handle on `config`'s Redis that reports to `health`; connects on first use.
    pub fn connect(config: &RedisConfig, health: Arc<Health>) -> Result<Redis, PoolError> {
        Ok(Redis {
            conn: manager(&config.url, RESPONSE_TIMEOUT)?,
            health,
        })
    }

    /// A second connection for blocking reads (`XREADGROUP BLOCK`), which
    /// would hold up every other call on a shared one.
    fn blocking_twin(&self, config: &RedisConfig, block: Duration) -> Result<Redis, PoolError> {
        Ok(Redis {
            conn: manager(&config.url, block + RESPONSE_TIMEOUT)?,
            health: Arc::clone(&self.health),
        })
    }

    /// Runs one Redis call; a failure marks the backend down and becomes
    /// [`StoreError::Unavailable`], a success marks it up.
    pub async fn run<T, F, Fut>(&self, what: &'static str, call: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        match call(self.conn.clone()).await {
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
                Err(StoreError::Unavailable {
                    reason: format!("redis {what}: {error}"),
                })
            }
        }
    }

    /// Pings Redis every second until shutdown, so that health follows
    /// Redis even when no request comes (a proxy probing with Status-Server).
    pub fn watch(&self, life: &Lifecycle) {
        let (redis, stop) = (self.clone(), life.clone());
        life.spawn(async move {
            let mut tick = tokio::time::interval(WATCH_INTERVAL);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {
                        let _ = redis.run("ping", |mut c| async move { redis::cmd("PING").query_async::<()>(&mut c).await }).await;
                    }
                }
            }
        });
    }
}

/// What `auth` needs, kept in Redis for the whole pool.
pub struct Shared {
    /// Open challenges.
    pub challenges: Arc<store::RedisStore>,
    /// Throttles and lockout.
    pub limits: Arc<dyn Limiter>,
    /// The mail queue (this instance delivers from it too).
    pub mail: MailQueue,
}

/// Starts the Redis backends of `config` on `life`: the store, the limiter,
/// the shared mail queue with this instance's delivery, and the watcher.
pub fn start(
    config: &RedisConfig,
    email: &EmailConfig,
    lockout: Lockout,
    health: &Arc<Health>,
    life: &Lifecycle,
) -> Result<Shared, PoolError> {
    let redis = Redis::connect(config, Arc::clone(health))?;
    let keys = PoolKeys::derive(&config.key);
    let settings = ChallengeSettings {
        validity: email.challenge_validity,
        blocking: email.blocking_timeout,
        max_attempts: email.max_attempts,
    };
    let challenges = store::RedisStore::new(redis.clone(), keys.sealer.clone(), settings);
    let limits = limiter::RedisLimiter::new(redis.clone(), email.throttling, lockout);
    let queue = mail::RedisMail::new(
        redis.clone(),
        config,
        &keys.mail,
        email.challenge_validity,
        email.queue_limit,
    )?;
    let (mail, finished) = crate::mail::start_shared(email, life, queue.clone())?;
    queue.start(mail.clone(), finished, life);
    redis.watch(life);
    Ok(Shared {
        challenges,
        limits,
        mail,
    })
}

/// `mailotp check --connect`: whether Redis answers a PING at `config`'s URL.
pub async fn check_connection(config: &RedisConfig) -> Result<(), PoolError> {
    let mut conn = manager(&config.url, Duration::from_secs(3))?;
    redis::cmd("PING")
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| PoolError::Unreachable { reason: e.to_string() })
}

/// Milliseconds of a duration, as Redis TTLs take them (at least 1).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}
