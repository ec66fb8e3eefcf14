//! What `mailotp ctl status` reads of the challenge store in Redis: a user's
//! open challenges, checked as the answer path checks them, with their
//! wrong attempts. Changes nothing.

use std::time::Duration;

use super::{challenge_key, Link, RedisStore};
use crate::backend::BackendUnavailable;
use crate::challenge::OpenChallenge;
use crate::redis::now_unix_ms;

impl RedisStore {
    /// The user's open challenges that pass their check, oldest first.
    pub(crate) async fn open_of(&self, user: &str) -> Result<Vec<OpenChallenge>, BackendUnavailable> {
        let open = self.digests(user).await?;
        if open.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = open.iter().map(|o| challenge_key(&o.tx.to_string())).collect();
        let attempts: Vec<Option<u64>> = self
            .redis
            .run("read attempts", |mut c| async move {
                let mut pipe = redis::pipe();
                for key in &keys {
                    pipe.cmd("HGET").arg(key).arg("a");
                }
                pipe.query_async(&mut c).await
            })
            .await?;
        let now = now_unix_ms();
        Ok(open
            .iter()
            .zip(attempts)
            .map(|(o, a)| OpenChallenge {
                tx: o.tx,
                left: Duration::from_millis(o.expires_unix_ms.saturating_sub(now)),
                attempts_left: u64::from(o.max_attempts).saturating_sub(a.unwrap_or(0)),
                link_confirmed: match o.link {
                    Link::None => None,
                    Link::Pending => Some(false),
                    Link::Confirmed => Some(true),
                },
            })
            .collect())
    }
}
