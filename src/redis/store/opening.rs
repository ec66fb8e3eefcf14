//! One OPEN call (see [`super::scripts::OPEN`]): the new challenge's record
//! with its MAC, its link record, its deny record and its sealed mail job,
//! all written in one round trip, and what the reply says.

use std::time::Duration;

use super::{challenge_fields, challenge_key, challenges_of, link, mail_window, written, RedisStore, Tried};
use crate::backend::BackendUnavailable;
use crate::challenge::{NewChallenge, MAX_OPEN_PER_USER};
use crate::limits::Throttled;
use crate::redis::{millis, now_unix_ms, KEY_PREFIX};

/// The deny record OPEN writes: its key, (field, value) pairs with the MAC,
/// how long it is kept (ms).
pub(super) struct DenyArgs {
    pub(super) key: String,
    pub(super) pairs: Vec<(&'static str, Vec<u8>)>,
    pub(super) ttl_ms: u64,
}

impl RedisStore {
    /// One OPEN: a new challenge with its mail counted (and queued, and its
    /// deny record kept, when given), the throttle or full queue that refused
    /// it, or the challenge that blocks, checked.
    pub(super) async fn try_open(
        &self,
        user: &str,
        origin: &str,
        new: NewChallenge<'_>,
        link: Option<&link::LinkArgs>,
        client_ip: Option<&str>,
    ) -> Result<Tried, BackendUnavailable> {
        let NewChallenge {
            tx,
            code,
            validity,
            max_attempts,
            policy,
            ..
        } = new;
        let settings = **self.settings.load();
        let digest = self.sealer.seal(&tx, code.expose().as_bytes());
        let expires = (now_unix_ms() + millis(validity)).to_string();
        let (policy_arg, max_attempts) = (policy.unwrap_or(""), max_attempts.max(1));
        let attempts_arg = max_attempts.to_string();
        let covered = challenge_fields([
            user.as_bytes(),
            &digest,
            expires.as_bytes(),
            origin.as_bytes(),
            policy_arg.as_bytes(),
            attempts_arg.as_bytes(),
        ]);
        let mac = self.records.mac(&challenge_key(&tx.to_string()), &covered);
        let mut fields: Vec<(&'static str, Vec<u8>)> = covered.iter().map(|(f, v)| (*f, v.to_vec())).collect();
        fields.push(("m", mac.to_vec()));
        let deny = new.deny.map(|(token, record)| self.deny_args(token, record, validity));
        let (script, t, expires_arg, deny, attempts_arg) =
            (&self.open, self.throttling, &expires, deny.as_ref(), &attempts_arg);
        let (queue, mail) = (&self.queue, new.mail);
        let reply: Option<Vec<Vec<u8>>> = self
            .redis
            .run("open challenge", |mut c| async move {
                let mut call = script.key(challenges_of(user));
                call.key(link.map_or("", |l| l.key.as_str()))
                    .key(mail_window("u", user))
                    .key(mail_window("ip", client_ip.unwrap_or("")))
                    .key(deny.map_or("", |d| d.key.as_str()))
                    .key(if mail.is_some() { queue.stream.as_str() } else { "" })
                    .arg(KEY_PREFIX)
                    .arg(tx.to_string())
                    .arg(user)
                    .arg(&digest[..])
                    .arg(millis(validity))
                    .arg(millis(settings.blocking.min(validity)))
                    .arg(MAX_OPEN_PER_USER)
                    .arg(&mac[..])
                    .arg(expires_arg)
                    .arg(origin)
                    .arg(t.per_user_per_hour.unwrap_or(0))
                    .arg(t.per_user_in_five_minutes.unwrap_or(0))
                    .arg(t.per_client_ip_per_hour.unwrap_or(0))
                    .arg(if client_ip.is_some() { "1" } else { "0" });
                match link {
                    Some(link) => call
                        .arg(&link.pending[..])
                        .arg(&link.opened_unix)
                        .arg(&link.mac[..])
                        .arg(link::LinkArgs::memory_ms()),
                    None => call.arg("").arg("").arg("").arg(""),
                };
                call.arg(queue.limit).arg(queue.ttl_ms).arg(mail.unwrap_or_default());
                call.arg(policy_arg).arg(attempts_arg);
                call.arg(deny.map_or(0, |d| d.ttl_ms));
                for (field, value) in deny.iter().flat_map(|d| &d.pairs) {
                    call.arg(*field).arg(&value[..]);
                }
                call.invoke_async(&mut c).await
            })
            .await?;
        let tried = self.tried(user, reply.as_deref());
        if matches!(tried, Tried::Opened) {
            let written = written::Written {
                user: user.to_owned(),
                digest,
                expires,
                origin: origin.to_owned(),
                fields,
                pending: link.map(|l| l.pending.clone()).unwrap_or_default(),
                max_attempts,
                policy: policy.map(str::to_owned),
            };
            let until = tokio::time::Instant::now().into_std() + validity;
            self.written.remember(tx, written, until);
        }
        Ok(tried)
    }

    /// What OPEN's reply says (see [`super::scripts::OPEN`]).
    fn tried(&self, user: &str, reply: Option<&[Vec<u8>]>) -> Tried {
        let Some([mark, rest @ ..]) = reply else {
            return Tried::Opened;
        };
        match mark.as_slice() {
            b"q" => return Tried::QueueFull,
            b"t" => {
                return Tried::Throttled(match rest.first().map(Vec::as_slice) {
                    Some(b"1") => Throttled::UserHour,
                    Some(b"2") => Throttled::UserFiveMinutes,
                    _ => Throttled::ClientIpHour,
                })
            }
            _ => {}
        }
        match self.checked(user, rest) {
            Some(open) => Tried::Blocked {
                tx: open.tx,
                mine: mark.as_slice() == b"=",
                left: Duration::from_millis(open.expires_unix_ms.saturating_sub(now_unix_ms())),
            },
            None => Tried::Forged(rest.first().cloned().unwrap_or_default()),
        }
    }
}
