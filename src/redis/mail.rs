//! The pool's outbox: a Redis stream (`mailotp:mail`) with one consumer
//! group, so every instance's delivery worker delivers and each job goes to
//! one of them. Jobs this instance read or took over wait in a hand-off for
//! its worker, whose outcome report acknowledges them.
//!
//! A job is encrypted (XChaCha20-Poly1305 under a key derived from the pool
//! key) before it leaves the process: a read of Redis hands out no codes. The
//! instance that read a job keeps it claimed (`XCLAIM … JUSTID` every few
//! seconds) while it delivers or waits to retry; a job whose instance died
//! goes idle and is taken over by another (`XAUTOCLAIM`, idle over
//! [`TAKEOVER_IDLE`], looked for every [`KEEP_INTERVAL`]: within 15 s). A job
//! is acknowledged and deleted once delivered or given up (finished jobs in
//! batches, see [`Acks`]), so a death between
//! the SMTP server's "250" and that can send it twice, and so can a holder cut
//! off from Redis for longer than [`TAKEOVER_IDLE`]; nothing else can. The
//! stream expires a while after the last job was queued. Reading and claiming
//! do not report to health: the request path and the watcher do.
//!
//! A job that does not open under this instance's key (another key, or not a
//! job at all: Redis is not trusted) is left for the others, never
//! acknowledged or deleted: it stays pending, made idle at once so that an
//! instance that can open it takes it over on its next look, and it is
//! logged and counted once per instance. The sealing binds the stream's key
//! name (associated data), so a job does not open elsewhere.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{RedisError, Script, Value};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use zeroize::{Zeroize, Zeroizing};

use super::record::count_bad_record;
use super::{millis, now_unix_ms, PoolError, Redis, KEY_PREFIX};
use crate::challenge::Transaction;
use crate::config::RedisConfig;
use crate::lifecycle::Lifecycle;
use crate::mail::outbox::{Handoff, Outbox, Outcome};
use crate::mail::{AskedBy, MailError, MailJob};
use crate::otp::Otp;

/// A job idle this long belongs to an instance presumed dead.
pub(crate) const TAKEOVER_IDLE: Duration = Duration::from_secs(10);
/// How often held jobs are re-claimed and idle ones looked for.
pub(crate) const KEEP_INTERVAL: Duration = Duration::from_secs(3);
/// How long one read waits for new jobs.
const READ_BLOCK: Duration = Duration::from_secs(1);
/// Jobs taken at once.
const BATCH: usize = 16;
const GROUP: &str = "delivery";
/// Associated data of every sealed job, followed by the stream's key name: a
/// ciphertext of something else under the same key does not open as a job.
/// v3 added who asked and the deny link: a v2 instance leaves such a job for
/// a v3 one, and the other way round, instead of mailing it without them.
const AAD: &[u8] = b"mailotp queued mail v3\0";
/// Foreign jobs remembered, so each is logged once.
const FOREIGN_REMEMBERED: usize = 1024;

/// KEYS stream; ARGV limit, ttl ms, sealed job. 0 when the queue is full.
const PUSH: &str = r"
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('XADD', KEYS[1], '*', 'job', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";

/// How a sealed job is added to the stream, as [`PUSH`] does it: the
/// stream's key, at most `limit` jobs waiting, the stream kept `ttl_ms`
/// after the last one. The challenge store's OPEN does the same.
#[derive(Debug, Clone)]
pub(crate) struct QueueArgs {
    pub(crate) stream: String,
    pub(crate) limit: usize,
    pub(crate) ttl_ms: u64,
}

/// Finished jobs waiting to be acknowledged (group commit): a finished
/// job's id joins `waiting`; the report that finds no flush running becomes
/// the flusher and acknowledges and deletes all that wait, a batch per
/// round trip, until none is left. The other reports return at once, so a
/// send slot waits for no acknowledgement but, now and then, a batch's.
#[derive(Default)]
struct Acks {
    waiting: Mutex<Vec<String>>,
    flushing: AtomicBool,
}

/// What is encrypted into the stream.
#[derive(Serialize, Deserialize)]
struct Plain {
    to: String,
    user: String,
    otp: String,
    link: Option<String>,
    deny_link: Option<String>,
    tx: String,
    expires_unix_ms: u64,
    client_ip: Option<String>,
    nas: String,
    asked_unix: i64,
    until_unix: i64,
    /// Absent in jobs of instances before languages: the default language.
    #[serde(default)]
    language: Option<String>,
}

/// The pool's outbox.
pub(crate) struct RedisOutbox {
    redis: Redis,
    reader: Redis,
    cipher: XChaCha20Poly1305,
    stream: String,
    /// [`AAD`] and the stream's name.
    aad: Vec<u8>,
    consumer: String,
    limit: usize,
    stream_ttl: Duration,
    push: Script,
    /// Jobs this instance delivers, by transaction: their stream ids. At
    /// most `limit`.
    held: Mutex<HashMap<Transaction, String>>,
    /// Held jobs not yet taken by the delivery worker.
    ready: Handoff,
    /// Stream ids of jobs this instance cannot open (already logged).
    foreign: Mutex<HashSet<String>>,
    /// Finished jobs' stream ids, acknowledged in batches.
    acks: Acks,
    /// Where the next look for idle jobs starts (`XAUTOCLAIM`'s cursor), so
    /// that jobs left for others do not hide the ones after them.
    cursor: Mutex<String>,
}

impl std::fmt::Debug for RedisOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOutbox").field("consumer", &self.consumer).finish()
    }
}

impl RedisOutbox {
    /// An outbox on `redis` that seals jobs with `key`; `validity` bounds how
    /// long the stream outlives its last job, `limit` how many jobs wait in
    /// it and how many this instance holds. Nothing is read before
    /// [`RedisOutbox::start`].
    pub(crate) fn new(
        redis: Redis,
        config: &RedisConfig,
        key: &Zeroizing<[u8; 32]>,
        validity: Duration,
        limit: usize,
    ) -> Result<Arc<RedisOutbox>, PoolError> {
        let mut id = [0u8; 6];
        rand::thread_rng().fill_bytes(&mut id);
        let stream = format!("{KEY_PREFIX}mail");
        Ok(Arc::new(RedisOutbox {
            reader: redis.blocking_twin(config, READ_BLOCK)?,
            redis,
            cipher: XChaCha20Poly1305::new(key[..].into()),
            aad: [AAD, stream.as_bytes()].concat(),
            stream,
            consumer: format!("{}-{}", std::process::id(), hex::encode(id)),
            limit,
            stream_ttl: validity + Duration::from_secs(60),
            push: Script::new(PUSH),
            held: Mutex::new(HashMap::new()),
            ready: Handoff::default(),
            foreign: Mutex::new(HashSet::new()),
            cursor: Mutex::new("0-0".to_owned()),
            acks: Acks::default(),
        }))
    }

    /// Where and how the challenge store queues a sealed job.
    pub(crate) fn queue_args(&self) -> QueueArgs {
        QueueArgs {
            stream: self.stream.clone(),
            limit: self.limit,
            ttl_ms: millis(self.stream_ttl),
        }
    }

    fn seal(&self, job: &MailJob) -> Result<Vec<u8>, MailError> {
        let left = job.expires.saturating_duration_since(Instant::now());
        let plain = Plain {
            to: job.to.to_string(),
            user: job.user.clone(),
            otp: job.otp.expose().to_owned(),
            link: job.link.as_deref().cloned(),
            deny_link: job.deny_link.as_deref().cloned(),
            tx: job.tx.to_string(),
            expires_unix_ms: now_unix_ms() + millis(left),
            client_ip: job.asked.client_ip.clone(),
            nas: job.asked.nas.clone(),
            asked_unix: job.asked.at_unix,
            until_unix: job.asked.until_unix,
            language: job.language.clone(),
        };
        let text = Zeroizing::new(toml::to_string(&plain).map_err(|e| MailError::Build { reason: e.to_string() })?);
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: text.as_bytes(),
                    aad: &self.aad,
                },
            )
            .map_err(|_| MailError::Build {
                reason: "cannot encrypt the job".to_owned(),
            })?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    /// The job in a stream entry; `None` (logged) when it does not open
    /// under our key or does not parse.
    fn open(&self, sealed: &[u8]) -> Option<MailJob> {
        if sealed.len() < 24 {
            return None;
        }
        let (nonce, body) = sealed.split_at(24);
        let text = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: &self.aad,
                },
            )
            .ok()
            .map(Zeroizing::new)?;
        let plain: Plain = toml::from_str(std::str::from_utf8(&text).ok()?).ok()?;
        let left = Duration::from_millis(plain.expires_unix_ms.saturating_sub(now_unix_ms()));
        Some(MailJob {
            to: plain.to.parse().ok()?,
            user: plain.user.clone(),
            otp: Otp::fixed(&plain.otp),
            link: plain.link.clone().map(Zeroizing::new),
            deny_link: plain.deny_link.clone().map(Zeroizing::new),
            asked: AskedBy {
                client_ip: plain.client_ip.clone(),
                nas: plain.nas.clone(),
                at_unix: plain.asked_unix,
                until_unix: plain.until_unix,
            },
            language: plain.language.clone(),
            tx: Transaction::from_state(plain.tx.as_bytes())?,
            expires: Instant::now() + left,
        })
    }
}

impl Drop for Plain {
    fn drop(&mut self) {
        self.otp.zeroize();
        if let Some(link) = &mut self.link {
            link.zeroize();
        }
        if let Some(link) = &mut self.deny_link {
            link.zeroize();
        }
    }
}

#[async_trait]
impl Outbox for RedisOutbox {
    async fn enqueue(&self, job: MailJob) -> Result<(), MailError> {
        let sealed = self.seal(&job)?;
        let (script, stream, limit, ttl) = (&self.push, &self.stream, self.limit, millis(self.stream_ttl));
        let queued: i64 = self
            .redis
            .run("queue mail", |mut c| async move {
                script
                    .key(stream)
                    .arg(limit)
                    .arg(ttl)
                    .arg(sealed)
                    .invoke_async(&mut c)
                    .await
            })
            .await
            .map_err(MailError::Unavailable)?;
        if queued == 1 {
            Ok(())
        } else {
            Err(MailError::QueueFull { limit })
        }
    }

    /// The store's OPEN adds it to the stream (see [`QueueArgs`]).
    fn sealed_for_store(&self, job: &MailJob) -> Result<Option<Vec<u8>>, MailError> {
        self.seal(job).map(Some)
    }

    async fn take(&self) -> MailJob {
        self.ready.next().await
    }

    fn take_ready(&self) -> Option<MailJob> {
        self.ready.ready()
    }

    /// A finished job is acknowledged and deleted (a failure leaves it to be
    /// taken over); one to retry stays held and re-claimed.
    async fn report(&self, job: &MailJob, outcome: Outcome) {
        if !outcome.is_final() {
            return;
        }
        let id = self.held.lock().expect("held lock poisoned").remove(&job.tx);
        if let Some(id) = id {
            self.done(&id).await;
        }
    }

    fn pending(&self) -> usize {
        self.held.lock().expect("held lock poisoned").len()
    }
}

impl RedisOutbox {
    /// Starts reading new jobs for this instance's delivery worker, and
    /// keeping the held ones and taking over those of dead instances, until
    /// shutdown.
    pub(crate) fn start(self: &Arc<RedisOutbox>, life: &Lifecycle) {
        life.spawn(Arc::clone(self).read(life.token()));
        life.spawn(Arc::clone(self).keep(life.token()));
    }

    /// How many more jobs this instance may hold, at most a batch.
    fn room(&self) -> usize {
        self.limit.saturating_sub(self.pending()).min(BATCH)
    }

    async fn ensure_group(&self, conn: &mut ConnectionManager) -> Result<(), RedisError> {
        let created: Result<(), RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(conn)
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(e),
            _ => {
                // MKSTREAM made a key without TTL; give it one.
                redis::cmd("PEXPIRE")
                    .arg(&self.stream)
                    .arg(millis(self.stream_ttl))
                    .arg("NX")
                    .query_async(conn)
                    .await
            }
        }
    }

    /// New jobs, as they are queued by any instance.
    async fn read(self: Arc<RedisOutbox>, shutdown: CancellationToken) {
        let mut conn = self.reader.conn.clone();
        let mut ready = false;
        while !shutdown.is_cancelled() {
            let room = self.room();
            if room == 0 || !ready {
                ready = self.ensure_group(&mut conn).await.is_ok();
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(if ready { 0 } else { 1000 })) => {}
                }
                continue;
            }
            let mut read = redis::cmd("XREADGROUP");
            read.arg("GROUP").arg(GROUP).arg(&self.consumer).arg("COUNT").arg(room);
            read.arg("BLOCK")
                .arg(millis(READ_BLOCK))
                .arg("STREAMS")
                .arg(&self.stream)
                .arg(">");
            let reply: Result<Option<StreamReadReply>, RedisError> = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = read.query_async(&mut conn) => r,
            };
            match reply {
                Ok(Some(reply)) => {
                    for entry in reply.keys.into_iter().flat_map(|k| k.ids) {
                        self.hold(&entry).await;
                    }
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::debug!(%error, "reading the shared mail queue failed");
                    ready = false;
                }
            }
        }
    }

    /// The job in an entry; `None` when it does not open under our key, and
    /// then the entry is left for the other instances.
    async fn open_entry(&self, entry: &StreamId) -> Option<MailJob> {
        let sealed = match entry.map.get("job") {
            Some(Value::BulkString(bytes)) => bytes.as_slice(),
            _ => &[][..],
        };
        let job = self.open(sealed);
        if job.is_none() {
            self.leave(&entry.id).await;
        }
        job
    }

    /// Leaves a job we cannot open pending, idle as if its holder had died,
    /// so that an instance that can open it takes it over on its next look.
    async fn leave(&self, id: &str) {
        let first = {
            let mut foreign = self.foreign.lock().expect("foreign lock poisoned");
            if foreign.len() >= FOREIGN_REMEMBERED {
                foreign.clear();
            }
            foreign.insert(id.to_owned())
        };
        if first {
            count_bad_record();
            tracing::warn!(entry = %id, "leaving a queued mail to the other instances: it does not open under this instance's key (is state.secret_file the same on every instance?)");
        }
        let idle: Result<(), RedisError> = redis::cmd("XCLAIM")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(0)
            .arg(id)
            .arg("IDLE")
            .arg(millis(TAKEOVER_IDLE))
            .arg("JUSTID")
            .query_async(&mut self.redis.conn.clone())
            .await;
        if let Err(error) = idle {
            tracing::debug!(%error, "cannot hand a foreign mail back now; it goes idle by itself");
        }
    }

    /// Holds one entry and hands it to the delivery worker (which drops it
    /// when its challenge has expired); one we cannot open is left for the
    /// others.
    async fn hold(&self, entry: &StreamId) {
        let Some(job) = self.open_entry(entry).await else {
            return;
        };
        {
            let mut held = self.held.lock().expect("held lock poisoned");
            let full = held.len() >= self.limit;
            match held.entry(job.tx) {
                // Our own job, gone idle while Redis was unreachable: still ours.
                Entry::Occupied(mut ours) => {
                    ours.insert(entry.id.clone());
                    return;
                }
                Entry::Vacant(_) if full => {
                    // Left pending: another instance (or this one) takes it over later.
                    let error = MailError::QueueFull { limit: self.limit };
                    tracing::warn!(tx = %job.logged_tx(), %error, "cannot take a queued mail now");
                    return;
                }
                Entry::Vacant(new) => new.insert(entry.id.clone()),
            };
        }
        self.ready.push(job);
    }

    /// Acknowledges and deletes a job (see [`Acks`]): when another report
    /// is flushing already, it takes this one with its next batch and this
    /// returns at once. A failure leaves the jobs to be taken over.
    async fn done(&self, id: &str) {
        self.acks
            .waiting
            .lock()
            .expect("acks lock poisoned")
            .push(id.to_owned());
        while !self.acks.flushing.swap(true, Ordering::AcqRel) {
            loop {
                let batch = std::mem::take(&mut *self.acks.waiting.lock().expect("acks lock poisoned"));
                if batch.is_empty() {
                    break;
                }
                self.acknowledge(&batch).await;
            }
            self.acks.flushing.store(false, Ordering::Release);
            // One pushed after the last take, while the flag was still set,
            // would wait for the next report: take it now.
            if self.acks.waiting.lock().expect("acks lock poisoned").is_empty() {
                break;
            }
        }
    }

    /// XACK and XDEL of `ids`, in one round trip.
    async fn acknowledge(&self, ids: &[String]) {
        let stream = &self.stream;
        let _ = self
            .redis
            .run("acknowledge mail", |mut c| async move {
                redis::pipe()
                    .atomic()
                    .cmd("XACK")
                    .arg(stream)
                    .arg(GROUP)
                    .arg(ids)
                    .ignore()
                    .cmd("XDEL")
                    .arg(stream)
                    .arg(ids)
                    .ignore()
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
    }

    /// Every [`KEEP_INTERVAL`] re-claims the held jobs and takes over those
    /// of dead instances.
    async fn keep(self: Arc<RedisOutbox>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(KEEP_INTERVAL);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(error) = self.refresh_and_take_over().await {
                        tracing::debug!(%error, "keeping the shared mail queue failed");
                    }
                }
            }
        }
    }

    async fn refresh_and_take_over(&self) -> Result<(), RedisError> {
        let mut conn = self.redis.conn.clone();
        let held: Vec<String> = self
            .held
            .lock()
            .expect("held lock poisoned")
            .values()
            .cloned()
            .collect();
        if !held.is_empty() {
            redis::cmd("XCLAIM")
                .arg(&self.stream)
                .arg(GROUP)
                .arg(&self.consumer)
                .arg(0)
                .arg(&held)
                .arg("JUSTID")
                .query_async::<()>(&mut conn)
                .await?;
        }
        let room = self.room();
        if room == 0 {
            return Ok(());
        }
        let cursor = self.cursor.lock().expect("cursor lock poisoned").clone();
        let claimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(millis(TAKEOVER_IDLE))
            .arg(cursor)
            .arg("COUNT")
            .arg(room)
            .query_async(&mut conn)
            .await?;
        *self.cursor.lock().expect("cursor lock poisoned") = claimed.next_stream_id.clone();
        for entry in &claimed.claimed {
            if !self.foreign.lock().expect("foreign lock poisoned").contains(&entry.id) {
                tracing::info!(entry = %entry.id, "taking over a queued mail of an instance that stopped");
            }
            self.hold(entry).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
