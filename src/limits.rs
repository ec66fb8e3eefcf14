//! limits: the abuse controls — e-mail throttling (Curity's per-user and
//! per-client-address windows) and user lockout after failures in a row.
//!
//! [`Limiter`] is the seam `auth` asks about lockout, with plain values only,
//! so a shared store (Redis) stands behind it for a pool of instances;
//! [`MemoryLimiter`] is the in-process one. The challenge store does the
//! rest with its challenges: it counts the e-mail toward the throttles when
//! it opens one (the in-memory store through [`MemoryLimiter::count_mail`];
//! in Redis, within the same script), refuses an answer from a locked user
//! and resets the failures on success. Only users whose PIN was right
//! (throttling) or who exist (lockout) get state here, so a stranger sending
//! random names cannot grow it. Nothing here logs or sees a secret.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use tokio::time::Instant;

use crate::backend::BackendUnavailable;
use crate::lifecycle::Lifecycle;

const HOUR: Duration = Duration::from_secs(3600);
const FIVE_MINUTES: Duration = Duration::from_secs(300);
/// How often stale windows and expired locks are dropped.
const SWEEP_INTERVAL: Duration = Duration::from_secs(300);

/// `[email.throttling]`: how many e-mails may go out. `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Throttling {
    /// E-mails to one user in any hour.
    pub per_user_per_hour: Option<u32>,
    /// E-mails to one user in any five minutes.
    pub per_user_in_five_minutes: Option<u32>,
    /// E-mails triggered from one client address (Calling-Station-Id) in any hour.
    pub per_client_ip_per_hour: Option<u32>,
}

/// `[users] lockout_after` / `lockout_time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    /// Failed PINs or codes in a row that lock the user; 0 never locks.
    pub after: u32,
    /// How long the lock lasts.
    pub duration: Duration,
}

/// A user's lock and counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct UserLimits {
    /// How long the lock still lasts; `None` when not locked.
    pub locked_for: Option<Duration>,
    /// Failed PINs or codes in a row.
    pub failures: u64,
    /// E-mails counted in the last five minutes.
    pub mails_5_min: u64,
    /// E-mails counted in the last hour.
    pub mails_hour: u64,
}

/// Which throttle said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// `max_emails_per_hour`.
    UserHour,
    /// `max_emails_in_five_minutes`.
    UserFiveMinutes,
    /// `max_emails_per_client_ip_per_hour`.
    ClientIpHour,
}

impl Throttled {
    /// The limit's name, for the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Throttled::UserHour => "max_emails_per_hour",
            Throttled::UserFiveMinutes => "max_emails_in_five_minutes",
            Throttled::ClientIpHour => "max_emails_per_client_ip_per_hour",
        }
    }
}

/// Lockout counters, as the PIN check asks them. The challenge store does
/// the rest in the same step as the challenge (one round trip in Redis): it
/// counts the e-mail toward the throttles when it opens a challenge, refuses
/// an answer from a locked user and resets the failures on success (see
/// [`MemoryLimiter::count_mail`] and `ChallengeStore`).
#[async_trait]
pub trait Limiter: Send + Sync + 'static {
    /// Whether `user` is locked now.
    async fn is_locked(&self, user: &str) -> Result<bool, BackendUnavailable>;

    /// Counts a failed PIN or code; `true` when this failure locked the user.
    async fn failed(&self, user: &str) -> Result<bool, BackendUnavailable>;

    /// Locks `user` for the lockout time at once (the user said "this
    /// wasn't me").
    async fn lock(&self, user: &str) -> Result<(), BackendUnavailable>;

    /// Starts `user`'s failures in a row from zero: a login succeeded
    /// without a challenge to consume (an exempt policy).
    async fn reset_failures(&self, user: &str) -> Result<(), BackendUnavailable>;
}

#[derive(Debug, Default)]
struct Failures {
    in_a_row: u32,
    locked_until: Option<Instant>,
}

/// Limits kept in this process's memory.
#[derive(Debug)]
pub struct MemoryLimiter {
    throttling: Throttling,
    lockout: Lockout,
    user_mails: DashMap<String, VecDeque<Instant>>,
    ip_mails: DashMap<String, VecDeque<Instant>>,
    failures: DashMap<String, Failures>,
}

impl MemoryLimiter {
    /// A limiter whose sweeper runs on `life` until shutdown.
    pub fn start(throttling: Throttling, lockout: Lockout, life: &Lifecycle) -> Arc<MemoryLimiter> {
        let limiter = Arc::new(MemoryLimiter {
            throttling,
            lockout,
            user_mails: DashMap::new(),
            ip_mails: DashMap::new(),
            failures: DashMap::new(),
        });
        let sweeper = Arc::clone(&limiter);
        let stop = life.clone();
        life.spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => sweeper.sweep(Instant::now()),
                }
            }
        });
        limiter
    }

    fn sweep(&self, now: Instant) {
        for windows in [&self.user_mails, &self.ip_mails] {
            windows.retain(|_, sent| {
                forget_older(sent, now, HOUR);
                !sent.is_empty()
            });
        }
        self.failures
            .retain(|_, f| f.in_a_row > 0 && f.locked_until.is_none_or(|until| until > now));
    }
}

fn forget_older(sent: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while sent.front().is_some_and(|t| now.duration_since(*t) >= window) {
        sent.pop_front();
    }
}

fn within(sent: &VecDeque<Instant>, now: Instant, window: Duration) -> usize {
    sent.iter().filter(|t| now.duration_since(**t) < window).count()
}

fn reached(limit: Option<u32>, count: usize) -> bool {
    limit.is_some_and(|max| count >= max as usize)
}

impl MemoryLimiter {
    /// Counts one e-mail to `user` triggered from `client_ip`, unless a limit
    /// is reached; then nothing is counted and the limit is named.
    pub fn count_mail(&self, user: &str, client_ip: Option<&str>) -> Result<(), Throttled> {
        let now = Instant::now();
        let t = self.throttling;
        if t == Throttling::default() {
            // No limit: nothing to count toward.
            return Ok(());
        }
        // Both windows are held while checking and counting, so two requests
        // racing for the last allowed mail cannot both get it.
        let mut user_sent = self.user_mails.entry(user.to_owned()).or_default();
        forget_older(&mut user_sent, now, HOUR);
        if reached(t.per_user_per_hour, user_sent.len()) {
            return Err(Throttled::UserHour);
        }
        if reached(t.per_user_in_five_minutes, within(&user_sent, now, FIVE_MINUTES)) {
            return Err(Throttled::UserFiveMinutes);
        }
        let ip_sent = match (client_ip, t.per_client_ip_per_hour) {
            (Some(ip), Some(max)) => {
                let mut sent = self.ip_mails.entry(ip.to_owned()).or_default();
                forget_older(&mut sent, now, HOUR);
                if sent.len() >= max as usize {
                    return Err(Throttled::ClientIpHour);
                }
                Some(sent)
            }
            _ => None,
        };
        if let Some(mut sent) = ip_sent {
            sent.push_back(now);
        }
        user_sent.push_back(now);
        Ok(())
    }

    /// A successful login: the failures in a row start again from zero.
    pub fn succeeded(&self, user: &str) {
        self.failures.remove(user);
    }
}

impl MemoryLimiter {
    /// The user's lock and counters (`mailotp ctl status`).
    pub(crate) fn view(&self, user: &str) -> UserLimits {
        let now = Instant::now();
        let (locked_for, failures) = self.failures.get(user).map_or((None, 0), |f| {
            let left = f.locked_until.map(|until| until.saturating_duration_since(now));
            (left.filter(|l| !l.is_zero()), u64::from(f.in_a_row))
        });
        let count = |window| {
            self.user_mails
                .get(user)
                .map_or(0, |sent| within(&sent, now, window) as u64)
        };
        UserLimits {
            locked_for,
            failures,
            mails_5_min: count(FIVE_MINUTES),
            mails_hour: count(HOUR),
        }
    }

    /// Clears the lock and the failures (with `throttles` the user's e-mail
    /// counts too); `true` when the user was locked.
    pub(crate) fn unlock(&self, user: &str, throttles: bool) -> bool {
        let now = Instant::now();
        let was_locked = self
            .failures
            .remove(user)
            .is_some_and(|(_, f)| f.locked_until.is_some_and(|until| until > now));
        if throttles {
            self.user_mails.remove(user);
        }
        was_locked
    }
}

#[async_trait]
impl Limiter for MemoryLimiter {
    async fn is_locked(&self, user: &str) -> Result<bool, BackendUnavailable> {
        let now = Instant::now();
        Ok(self
            .failures
            .get(user)
            .and_then(|f| f.locked_until)
            .is_some_and(|until| until > now))
    }

    async fn failed(&self, user: &str) -> Result<bool, BackendUnavailable> {
        if self.lockout.after == 0 {
            return Ok(false);
        }
        let now = Instant::now();
        let mut f = self.failures.entry(user.to_owned()).or_default();
        if f.locked_until.is_some_and(|until| until <= now) {
            // The lock ran out: the next failures count from zero.
            *f = Failures::default();
        }
        f.in_a_row += 1;
        let locks = f.in_a_row == self.lockout.after;
        if locks {
            f.locked_until = Some(now + self.lockout.duration);
        }
        Ok(locks)
    }

    async fn lock(&self, user: &str) -> Result<(), BackendUnavailable> {
        let mut f = self.failures.entry(user.to_owned()).or_default();
        // Counted as a full row, so the sweeper keeps it until it ends.
        f.in_a_row = f.in_a_row.max(1);
        f.locked_until = Some(Instant::now() + self.lockout.duration);
        Ok(())
    }

    async fn reset_failures(&self, user: &str) -> Result<(), BackendUnavailable> {
        self.succeeded(user);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(throttling: Throttling, after: u32) -> Arc<MemoryLimiter> {
        let lockout = Lockout {
            after,
            duration: Duration::from_secs(60),
        };
        MemoryLimiter::start(throttling, lockout, &Lifecycle::new(Duration::from_secs(1)))
    }

    #[tokio::test(start_paused = true)]
    async fn five_minute_window_holds_exactly_its_number() {
        let l = limiter(
            Throttling {
                per_user_in_five_minutes: Some(2),
                ..Throttling::default()
            },
            0,
        );
        assert_eq!(l.count_mail("alice", None), Ok(()));
        assert_eq!(l.count_mail("alice", None), Ok(()));
        assert_eq!(l.count_mail("alice", None), Err(Throttled::UserFiveMinutes));
        assert_eq!(l.count_mail("bob", None), Ok(()));
        tokio::time::advance(FIVE_MINUTES).await;
        assert_eq!(l.count_mail("alice", None), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn hourly_and_client_address_windows() {
        let l = limiter(
            Throttling {
                per_user_per_hour: Some(3),
                per_client_ip_per_hour: Some(2),
                ..Throttling::default()
            },
            0,
        );
        assert_eq!(l.count_mail("a", Some("192.0.2.1")), Ok(()));
        assert_eq!(l.count_mail("b", Some("192.0.2.1")), Ok(()));
        assert_eq!(l.count_mail("c", Some("192.0.2.1")), Err(Throttled::ClientIpHour));
        assert_eq!(l.count_mail("c", None), Ok(()), "no address: not counted per address");
        assert_eq!(l.count_mail("a", None), Ok(()));
        assert_eq!(l.count_mail("a", None), Ok(()));
        assert_eq!(l.count_mail("a", None), Err(Throttled::UserHour));
        tokio::time::advance(HOUR).await;
        assert_eq!(l.count_mail("a", Some("192.0.2.1")), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_in_a_row_lock_until_the_time_runs_out() {
        let l = limiter(Throttling::default(), 3);
        assert!(!l.failed("alice").await.unwrap());
        assert!(!l.failed("alice").await.unwrap());
        l.succeeded("alice");
        assert!(!l.failed("alice").await.unwrap());
        assert!(!l.failed("alice").await.unwrap());
        assert!(!l.is_locked("alice").await.unwrap());
        assert!(l.failed("alice").await.unwrap(), "the third in a row locks");
        assert!(l.is_locked("alice").await.unwrap());
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(!l.is_locked("alice").await.unwrap());
        assert!(!l.failed("alice").await.unwrap(), "counting starts again");
    }

    #[tokio::test(start_paused = true)]
    async fn lockout_after_zero_never_locks() {
        let l = limiter(Throttling::default(), 0);
        for _ in 0..20 {
            assert!(!l.failed("alice").await.unwrap());
        }
        assert!(!l.is_locked("alice").await.unwrap());
    }
}
