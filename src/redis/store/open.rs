//! The open-challenge count of the whole pool, for the
//! `mailotp_open_challenges` gauge.
//!
//! The scripts that open and close challenges keep `mailotp:open`, a sorted
//! set of open States scored by their end of validity (Redis server time),
//! so a count is one cheap call: drop the expired, take the size. No SCAN, and
//! no read of any challenge. The watcher counts once a second (that call is
//! also its health probe) and `open_count` returns the last count, so a
//! scrape of `/metrics` never waits on Redis. The count is for metrics only:
//! nothing decides on it, so a forged entry misleads a graph, not a login.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::RedisStore;
use crate::lifecycle::Lifecycle;
use crate::redis::WATCH_INTERVAL;

/// The sorted set of open States.
pub(super) const OPEN_SET: &str = "mailotp:open";

/// KEYS[1] the open set. Drops the States whose time is over; returns how
/// many are left.
pub(super) const COUNT_OPEN: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
";

impl RedisStore {
    /// Counts the pool's open challenges every second until shutdown; the
    /// call reports to health like any other, so health follows Redis even
    /// when no request comes (a proxy probing with Status-Server).
    pub(crate) fn watch(self: &Arc<Self>, life: &Lifecycle) {
        let (store, stop) = (Arc::clone(self), life.clone());
        life.spawn(async move {
            let mut tick = tokio::time::interval(WATCH_INTERVAL);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => store.count_open().await,
                }
            }
        });
    }

    /// One count; while Redis cannot answer, the last count stays.
    async fn count_open(&self) {
        let script = &self.count_open;
        let counted = self
            .redis
            .run("count open challenges", |mut c| async move {
                script.key(OPEN_SET).invoke_async::<usize>(&mut c).await
            })
            .await;
        if let Ok(open) = counted {
            self.open_now.store(open, Ordering::Relaxed);
        }
    }
}
