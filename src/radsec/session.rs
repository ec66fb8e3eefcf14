//! radsec::session: one identified RadSec connection — RADIUS packets framed
//! by their Length field, each screened by `server`'s checks against the
//! connection's own duplicate cache, decided at once or in a task of its own,
//! and answered in whatever order the answers are ready.
//!
//! One writer task owns the sending half; requests hand it their signed
//! bytes, so a slow PIN check never holds up a Status-Server behind it. A
//! Length below 20 or above 4096 ends the connection at once (the stream
//! cannot be trusted after it); a well-framed packet that fails its checks
//! is dropped and counted as on UDP. No request for `idle_timeout` closes it.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::auth::RequestHandler;
use crate::config::Client;
use crate::lifecycle::Lifecycle;
use crate::metrics::DropReason;
use crate::server::{respond, screen_from, Context, DuplicateCache, Screened};
use crate::users::PIN_LANE;
use crate::wire::{HEADER_LEN, MAX_PACKET_LEN};

/// Requests remembered per connection: a proxy may keep 256 identifiers in
/// flight and retransmit for a while, and an older answer is evicted first.
const DUPLICATES_PER_CONNECTION: usize = 1024;
/// Answers waiting for the writer; past it, deciding waits for the peer to
/// read (TCP's own back-pressure).
const ANSWER_QUEUE: usize = 256;

/// Who is on the other end.
pub(super) struct Peer {
    /// The `radsec = true` client its certificate and address matched.
    pub client: Arc<Client>,
    /// Its address and port.
    pub address: SocketAddr,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// The peer closed the connection (or it broke).
    Closed,
    /// No request for `idle_timeout`.
    Idle,
    /// A Length outside 20..=4096.
    Framing,
    /// The server is stopping.
    Shutdown,
}

impl End {
    /// As the log says it.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            End::Closed => "closed by peer",
            End::Idle => "idle_timeout",
            End::Framing => "framing error",
            End::Shutdown => "shutdown",
        }
    }
}

/// What reading one packet found.
#[derive(Debug)]
enum Read {
    /// A whole packet of this many bytes, at the start of the buffer.
    Packet(usize),
    /// The stream ended or broke.
    Closed,
    /// A Length outside 20..=4096.
    BadLength(usize),
}

/// Reads one packet, framed by the Length in its header, into `buf`.
async fn read_packet<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8; MAX_PACKET_LEN]) -> Read {
    if reader.read_exact(&mut buf[..4]).await.is_err() {
        return Read::Closed;
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if !(HEADER_LEN..=MAX_PACKET_LEN).contains(&len) {
        return Read::BadLength(len);
    }
    match reader.read_exact(&mut buf[4..len]).await {
        Ok(_) => Read::Packet(len),
        Err(_) => Read::Closed,
    }
}

/// Serves one connection until it ends; in-flight answers still go out
/// unless the framing broke.
pub(super) async fn run<S, H>(stream: S, peer: Peer, idle: Duration, ctx: &Arc<Context<H>>, life: &Lifecycle) -> End
where
    S: AsyncRead + AsyncWrite + Send + 'static,
    H: RequestHandler,
{
    let (mut reader, writer) = tokio::io::split(stream);
    let (answers, outgoing) = mpsc::channel(ANSWER_QUEUE);
    let writing = life.spawn(write_answers(writer, outgoing));
    let duplicates = Arc::new(DuplicateCache::new(DUPLICATES_PER_CONNECTION));
    let mut buf = Box::new([0u8; MAX_PACKET_LEN]);
    let end = loop {
        let read = tokio::select! {
            _ = life.cancelled() => break End::Shutdown,
            read = tokio::time::timeout(idle, read_packet(&mut reader, &mut buf)) => read,
        };
        let len = match read {
            Err(_) => break End::Idle,
            Ok(Read::Closed) => break End::Closed,
            Ok(Read::BadLength(len)) => {
                ctx.metrics.drop(DropReason::Malformed);
                tracing::warn!(client = %peer.client.name, peer = %peer.address, length = len, "radsec packet length outside 20..=4096: connection closed");
                break End::Framing;
            }
            Ok(Read::Packet(len)) => len,
        };
        duplicates.sweep(Instant::now());
        dispatch(ctx, &duplicates, &peer, &buf[..len], &answers, life).await;
    };
    drop(answers);
    if end == End::Framing {
        // Closing now: answers still being decided go nowhere.
        writing.abort();
    }
    end
}

/// Sends answers as they come until every sender is gone, then closes.
async fn write_answers<W: AsyncWrite>(mut writer: tokio::io::WriteHalf<W>, mut outgoing: mpsc::Receiver<Arc<[u8]>>) {
    while let Some(bytes) = outgoing.recv().await {
        if writer.write_all(&bytes).await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}

/// One framed packet: dropped, resent from the cache, answered here when that
/// needs no waiting, or handed to a task of its own.
async fn dispatch<H: RequestHandler>(
    ctx: &Arc<Context<H>>,
    duplicates: &Arc<DuplicateCache>,
    peer: &Peer,
    packet: &[u8],
    answers: &mpsc::Sender<Arc<[u8]>>,
    life: &Lifecycle,
) {
    match screen_from(ctx, duplicates, &peer.client, packet, peer.address) {
        Screened::Drop(reason) => {
            ctx.metrics.drop(reason);
            tracing::debug!(peer = %peer.address, reason = reason.as_str(), "radsec packet dropped");
        }
        Screened::Resend(bytes) => {
            ctx.metrics.duplicates_answered.fetch_add(1, Ordering::Relaxed);
            let _ = answers.send(bytes).await;
        }
        Screened::Work {
            packet,
            key,
            permit,
            at_once: true,
            ..
        } => {
            if let Some(bytes) = respond(ctx, duplicates, &peer.client, key, packet).await {
                let _ = answers.send(bytes).await;
            }
            drop(permit);
        }
        Screened::Work {
            client,
            packet,
            key,
            permit,
            ..
        } => {
            let packet = packet.to_buf();
            let (ctx, duplicates, answers) = (Arc::clone(ctx), Arc::clone(duplicates), answers.clone());
            let lane: Arc<str> = Arc::from(client.name.as_str());
            life.spawn(PIN_LANE.scope(lane, async move {
                let _permit = permit;
                if let Some(bytes) = respond(&ctx, &duplicates, &client, key, packet.packet()).await {
                    let _ = answers.send(bytes).await;
                }
            }));
        }
    }
}
