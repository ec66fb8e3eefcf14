//! The deny ("this wasn't me") records of the challenge store in Redis:
//! `mailotp:d:{digest of the token}` holds the State (`t`), user (`u`),
//! Calling-Station-Id (`i`, `=` before it when there is one), NAS (`n`),
//! when it was asked (`a`, Unix s) and its end (`e`, Unix ms), MAC'd (`m`)
//! like the link records; `x` marks it used. Kept an hour past its end, for
//! "410 Gone". A record that fails its MAC is an unknown token.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::opening::DenyArgs;
use super::scripts::close_all_of_user;
use super::{challenges_of, RedisStore};
use crate::backend::BackendUnavailable;
use crate::challenge::{DenyRecord, DenyStatus, LinkToken, Transaction, LINK_MEMORY};
use crate::redis::record::bad_record;
use crate::redis::{millis, now_unix_ms, KEY_PREFIX};

/// KEYS[1] deny record. 1 when this call used it, 0 when it was used or gone.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'x') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'x', '1')
return 1
",
    )
});

/// KEYS[1] the user's list; ARGV prefix, user, State. Closes all of the
/// user's challenges; 1 when the State's was among them.
static CLOSE_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        r"
local p = ARGV[1]
local was = 0
if redis.call('HGET', p .. 'c:' .. ARGV[3], 'u') == ARGV[2] then was = 1 end
",
        close_all_of_user!(),
        "return was
"
    ))
});

/// The fields a deny record's MAC covers, in order.
fn fields(values: &[Vec<u8>; 6]) -> [(&'static str, &[u8]); 6] {
    let [t, u, i, n, a, e] = values;
    [("t", t), ("u", u), ("i", i), ("n", n), ("a", a), ("e", e)]
}

impl RedisStore {
    fn deny_key(&self, token: &LinkToken) -> String {
        format!("{KEY_PREFIX}d:{}", hex::encode(self.sealer.seal_deny(&token.0)))
    }

    /// The deny record of `token` as OPEN writes it: its fields with their
    /// MAC, kept an hour past `valid`.
    pub(super) fn deny_args(&self, token: &LinkToken, record: &DenyRecord, valid: Duration) -> DenyArgs {
        let key = self.deny_key(token);
        let values: [Vec<u8>; 6] = [
            record.tx.to_string().into_bytes(),
            record.user.clone().into_bytes(),
            record
                .client_ip
                .as_ref()
                .map_or_else(Vec::new, |ip| format!("={ip}").into_bytes()),
            record.nas.clone().into_bytes(),
            record.asked_unix.to_string().into_bytes(),
            (now_unix_ms() + millis(valid)).to_string().into_bytes(),
        ];
        let mac = self.records.mac(&key, &fields(&values));
        let mut pairs: Vec<(&'static str, Vec<u8>)> = fields(&values)
            .iter()
            .map(|(field, value)| (*field, value.to_vec()))
            .collect();
        pairs.push(("m", mac.to_vec()));
        DenyArgs {
            key,
            pairs,
            ttl_ms: millis(valid + LINK_MEMORY),
        }
    }

    pub(super) async fn deny_record(&self, token: &LinkToken, take: bool) -> Result<DenyStatus, BackendUnavailable> {
        let key = self.deny_key(token);
        let name = &key;
        let read: Vec<Option<Vec<u8>>> = self
            .redis
            .run("read deny link", |mut c| async move {
                redis::cmd("HMGET")
                    .arg(name)
                    .arg(&["t", "u", "i", "n", "a", "e", "m", "x"])
                    .query_async(&mut c)
                    .await
            })
            .await?;
        if read.first().is_none_or(Option::is_none) {
            return Ok(DenyStatus::Unknown);
        }
        let mut read = read.into_iter().map(Option::unwrap_or_default);
        let values: [Vec<u8>; 6] = std::array::from_fn(|_| read.next().unwrap_or_default());
        let (mac, used) = (read.next().unwrap_or_default(), read.next().unwrap_or_default());
        let Some(record) = self
            .records
            .verify(&key, &fields(&values), &mac)
            .then(|| parse(&values))
            .flatten()
        else {
            bad_record(&key, "deny mac");
            return Ok(DenyStatus::Unknown);
        };
        let end: u64 = std::str::from_utf8(&values[5])
            .ok()
            .and_then(|e| e.parse().ok())
            .unwrap_or(0);
        if !used.is_empty() || end <= now_unix_ms() {
            return Ok(DenyStatus::Gone);
        }
        if take {
            let script = &*TAKE;
            let took: i64 = self
                .redis
                .run("use deny link", |mut c| async move {
                    script.key(name).invoke_async(&mut c).await
                })
                .await?;
            if took != 1 {
                return Ok(DenyStatus::Gone);
            }
        }
        Ok(DenyStatus::Open(record))
    }

    pub(super) async fn close_all_of(&self, user: &str, tx: &Transaction) -> Result<bool, BackendUnavailable> {
        let script = &*CLOSE_USER;
        let was: i64 = self
            .redis
            .run("close user's challenges", |mut c| async move {
                script
                    .key(challenges_of(user))
                    .arg(KEY_PREFIX)
                    .arg(user)
                    .arg(tx.to_string())
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(was == 1)
    }
}

/// A checked record's values.
fn parse(values: &[Vec<u8>; 6]) -> Option<DenyRecord> {
    let text = |v: &[u8]| String::from_utf8(v.to_vec()).ok();
    Some(DenyRecord {
        tx: Transaction::from_state(&values[0])?,
        user: text(&values[1])?,
        client_ip: match values[2].as_slice() {
            [] => None,
            [b'=', ip @ ..] => Some(text(ip)?),
            _ => return None,
        },
        nas: text(&values[3])?,
        asked_unix: text(&values[4])?.parse().ok()?,
    })
}
