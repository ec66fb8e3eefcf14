//! `[state]`: where challenges, limits and the mail queue live — in this
//! process (`memory`, the default) or in Redis shared by a pool of instances.
//!
//! Checks the section and reads the pool's shared key; connects to nothing
//! (`redis::check_connection` does that).

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use zeroize::Zeroizing;

use super::validate::Validator;
use super::{read_bytes, ConfigError};

/// Length of the pool's shared key in bytes.
pub(crate) const POOL_KEY_LEN: usize = 32;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawState {
    #[serde(default = "default_backend")]
    pub backend: String,
    pub redis_url: Option<String>,
    pub secret_file: Option<PathBuf>,
}

fn default_backend() -> String {
    "memory".to_owned()
}

impl Default for RawState {
    fn default() -> RawState {
        RawState {
            backend: default_backend(),
            redis_url: None,
            secret_file: None,
        }
    }
}

/// `[state]`.
#[derive(Debug, Clone, Default)]
pub(crate) enum StateConfig {
    /// Everything in this process (one instance).
    #[default]
    Memory,
    /// Shared through Redis with the other instances of the pool.
    Redis(RedisConfig),
}

/// `[state] backend = "redis"`.
#[derive(Clone)]
pub(crate) struct RedisConfig {
    /// `redis_url`, e.g. `redis://:password@10.0.0.5:6379/0`; may hold a password.
    pub url: String,
    /// The pool's shared key from `secret_file`: codes are digested and
    /// queued mails encrypted under keys derived from it.
    pub key: PoolKey,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry the Redis password.
        f.write_str("RedisConfig { url: [redacted], key: [redacted] }")
    }
}

/// The pool's shared key; its Debug never shows it.
#[derive(Clone)]
pub(crate) struct PoolKey(Zeroizing<[u8; POOL_KEY_LEN]>);

impl PoolKey {
    /// Wraps key bytes.
    pub(crate) fn new(bytes: [u8; POOL_KEY_LEN]) -> PoolKey {
        PoolKey(Zeroizing::new(bytes))
    }

    /// The bytes, for key derivation only.
    pub(crate) fn expose(&self) -> &[u8; POOL_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for PoolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PoolKey([redacted])")
    }
}

impl Validator<'_> {
    pub(super) fn state(&self, raw: Option<RawState>) -> Result<StateConfig, ConfigError> {
        let raw = raw.unwrap_or_default();
        match raw.backend.as_str() {
            "memory" => {
                for (key, set) in [
                    ("redis_url", raw.redis_url.is_some()),
                    ("secret_file", raw.secret_file.is_some()),
                ] {
                    if set {
                        return Err(self.err(format!("state.{key}"), "only used with backend = \"redis\""));
                    }
                }
                Ok(StateConfig::Memory)
            }
            "redis" => {
                let url = raw
                    .redis_url
                    .filter(|u| !u.is_empty())
                    .ok_or_else(|| self.err("state.redis_url", "required with backend = \"redis\""))?;
                if !["redis://", "rediss://", "unix://", "redis+unix://"]
                    .iter()
                    .any(|s| url.starts_with(s))
                {
                    return Err(self.err(
                        "state.redis_url",
                        "must start with redis://, rediss:// or unix:// (e.g. \"redis://127.0.0.1:6379/0\")",
                    ));
                }
                let file = raw.secret_file.ok_or_else(|| {
                    self.err(
                        "state.secret_file",
                        "required with backend = \"redis\": the same 32 random bytes on every instance (openssl rand -out pool.key 32)",
                    )
                })?;
                let key = self.pool_key(&self.path(&file))?;
                Ok(StateConfig::Redis(RedisConfig { url, key }))
            }
            other => Err(self.err(
                "state.backend",
                format!("`{other}` is not a supported backend (supported: \"memory\", \"redis\")"),
            )),
        }
    }

    /// 32 raw bytes, or 64 hex digits (`openssl rand -hex 32`) with an optional newline.
    fn pool_key(&self, path: &std::path::Path) -> Result<PoolKey, ConfigError> {
        let bytes = Zeroizing::new(read_bytes(path)?);
        let mut key = [0u8; POOL_KEY_LEN];
        if bytes.len() == POOL_KEY_LEN {
            key.copy_from_slice(&bytes);
            return Ok(PoolKey::new(key));
        }
        let text = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        if text.len() == 2 * POOL_KEY_LEN && hex::decode_to_slice(text, &mut key).is_ok() {
            return Ok(PoolKey::new(key));
        }
        Err(self.err(
            "state.secret_file",
            format!(
                "{} holds {} bytes; the pool key must be exactly {POOL_KEY_LEN} random bytes (or {} hex digits)",
                path.display(),
                bytes.len(),
                2 * POOL_KEY_LEN
            ),
        ))
    }
}
