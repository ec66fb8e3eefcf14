//! The answer to a State. For a State this instance opened, one round trip:
//! the code is compared here, in constant time, against the digest this
//! instance wrote (module `written`), and [`super::scripts::ANSWER`] reads
//! the lock and consumes or counts the attempt only if the record in Redis
//! is still exactly that one. Otherwise (another instance's State, or a
//! record altered in Redis) the record is read, checked, then acted on: two
//! round trips, as before. Redis never decides an Accept.

use std::time::Duration;

use super::written::Written;
use super::READ_FIELDS;
use super::{accepted, challenge_key, challenges_of, limiter, Link, OpenChallenge, RedisStore, CONFIRMED, KEY_PREFIX};
use crate::backend::BackendUnavailable;
use crate::challenge::{Answer, CodeMatch, Origin, Transaction};
use crate::redis::now_unix_ms;

/// What ANSWER is asked to do when the record is the one written here.
#[derive(Clone, Copy)]
enum Act {
    /// The code is right: consume.
    Consume,
    /// The code is wrong for the State: count an attempt.
    Wrong,
    /// A link challenge: consume if confirmed, else report it pending.
    Link,
}

impl RedisStore {
    pub(super) async fn answer_state(
        &self,
        state: &Transaction,
        user: &str,
        origin: &Origin,
        code: &[u8],
    ) -> Result<Answer, BackendUnavailable> {
        let written = self
            .written
            .get(state)
            .filter(|w| w.user == user && w.origin == origin.encode())
            .filter(|w| self.attempts.count(state) < w.max_attempts);
        let Some(written) = written else {
            return self.read_then_answer(state, user, origin, code).await;
        };
        let act = if !written.pending.is_empty() {
            Act::Link
        } else if self.sealer.matches(state, code, &written.digest) {
            Act::Consume
        } else {
            Act::Wrong
        };
        let reply = self.run_answer(state, user, &written, act).await?;
        let Some((verdict, others)) = reply.split_first() else {
            return Ok(Answer::Unknown);
        };
        let end: u64 = written.expires.parse().unwrap_or(0);
        let left = Duration::from_millis(end.saturating_sub(now_unix_ms()));
        Ok(match verdict.as_slice() {
            b"l" => Answer::Locked,
            b"a" => Answer::Accepted {
                policy: written.policy.clone(),
            },
            b"p" => Answer::LinkPending { left },
            b"w0" | b"w1" => {
                let others: Vec<OpenChallenge> = others
                    .chunks_exact(READ_FIELDS)
                    .filter_map(|record| self.checked(user, record))
                    .collect();
                let limits = (written.max_attempts, left);
                self.wrong_answer(user, state, (origin, code), &others, (verdict == b"w1", limits))
                    .await?
            }
            // Not the record written here: read and check it first.
            b"r" => self.read_then_answer(state, user, origin, code).await?,
            _ => Answer::Unknown,
        })
    }

    /// One ANSWER call for the record `written` under `state`.
    async fn run_answer(
        &self,
        state: &Transaction,
        user: &str,
        written: &Written,
        act: Act,
    ) -> Result<Vec<Vec<u8>>, BackendUnavailable> {
        let script = &self.answer;
        let confirmed = self.mark(&challenge_key(&state.to_string()), CONFIRMED);
        let act = match act {
            Act::Consume => "a",
            Act::Wrong => "w",
            Act::Link => "k",
        };
        self.redis
            .run("answer challenge", |mut c| async move {
                let mut call = script.key(challenges_of(user));
                call.key(limiter::key("f", user))
                    .key(limiter::key("l", user))
                    .arg(KEY_PREFIX)
                    .arg(user)
                    .arg(state.to_string())
                    .arg(&written.pending)
                    .arg(confirmed)
                    .arg(act)
                    .arg(written.max_attempts);
                for (field, value) in &written.fields {
                    call.arg(*field).arg(&value[..]);
                }
                call.invoke_async(&mut c).await
            })
            .await
    }

    /// The code was not the State's: the code of another of the user's code
    /// challenges from `origin` (an older mail arriving last) still logs in;
    /// else it is one wrong answer (`void`: Redis counted the last one),
    /// counted here too against the State's own limits.
    async fn wrong_answer(
        &self,
        user: &str,
        state: &Transaction,
        (origin, code): (&Origin, &[u8]),
        others: &[OpenChallenge],
        (void, limits): (bool, (u8, Duration)),
    ) -> Result<Answer, BackendUnavailable> {
        if let CodeMatch::Matched(other) = self.matching(others, origin, code) {
            let consumed = self.consume_pair(user, &other, &other).await?;
            let this = others.iter().find(|o| o.tx == other);
            return Ok(match this {
                Some(this) if consumed => accepted(this),
                _ => Answer::Unknown,
            });
        }
        self.counted_wrong(user, state, void, limits).await
    }

    /// The answer for a State this instance did not write (or whose record
    /// changed): the user's challenges read with the lock and checked, then
    /// the consume or the attempt.
    async fn read_then_answer(
        &self,
        state: &Transaction,
        user: &str,
        origin: &Origin,
        code: &[u8],
    ) -> Result<Answer, BackendUnavailable> {
        let Some(open) = self.read(user, true).await? else {
            return Ok(Answer::Locked);
        };
        let Some(this) = open.iter().find(|o| o.tx == *state) else {
            return Ok(Answer::Unknown);
        };
        if this.origin != origin.encode().as_bytes() {
            return Ok(Answer::Unknown);
        }
        match this.link {
            Link::Pending => {
                let left = this.expires_unix_ms.saturating_sub(now_unix_ms());
                return Ok(Answer::LinkPending {
                    left: Duration::from_millis(left),
                });
            }
            Link::Confirmed => {
                let consumed = self.consume_pair(user, state, state).await?;
                return Ok(if consumed { accepted(this) } else { Answer::Unknown });
            }
            Link::None => {}
        }
        if self.attempts.count(state) >= this.max_attempts {
            // Void by this instance's count, whatever Redis says now.
            return Ok(Answer::Unknown);
        }
        if let CodeMatch::Matched(matched) = self.matching(&open, origin, code) {
            return Ok(if self.consume_pair(user, state, &matched).await? {
                accepted(this)
            } else {
                Answer::Unknown
            });
        }
        Ok(self.wrong(user, this).await?.unwrap_or(Answer::Unknown))
    }
}
