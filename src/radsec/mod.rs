//! radsec: RADIUS over TLS (RFC 6614), the second transport in front of the
//! same [`RequestHandler`] as UDP.
//!
//! It owns the TCP listeners, the connection cap (`max_connections`: one
//! more is closed at accept), the TLS handshake and its timeout, and who a
//! connection is: its certificate must chain to `ca_file` and name a
//! `radsec = true` client whose `address` holds the peer, or it is closed
//! before any RADIUS is read, logged and counted. Each accepted connection
//! is a [`session`]: framing, per-connection duplicates, answers in any
//! order. The packet checks, the decision, signing and the log line are
//! `server`'s, shared with UDP; this module knows no users, codes or mail.
//! Certificates swap on SIGHUP ([`Radsec::reload`]); connections already open
//! keep theirs.

mod session;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::auth::RequestHandler;
use crate::config::RadsecConfig;
use crate::http::{is_peer_error, Backoff};
use crate::lifecycle::Lifecycle;
use crate::metrics::Refusal;
use crate::server::Context;
use crate::tls::{self, TlsError};

/// The RadSec listener's settings and TLS state.
pub(crate) struct Radsec {
    /// TLS settings for new connections (swapped on SIGHUP).
    tls: ArcSwap<ServerConfig>,
    /// `[radsec]`.
    config: RadsecConfig,
    /// One permit per open connection (`max_connections`).
    slots: Arc<Semaphore>,
    /// When each kind of refusal was last logged at WARN.
    refusals_logged: std::sync::Mutex<[Option<tokio::time::Instant>; Refusal::ALL.len()]>,
}

/// How often a refusal anyone can cause is logged at WARN, per reason.
const REFUSAL_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl Radsec {
    /// Loads the certificates of `config`.
    pub(crate) fn new(config: &RadsecConfig) -> Result<Radsec, TlsError> {
        Ok(Radsec {
            tls: ArcSwap::new(tls::server_config(config.files())?),
            config: config.clone(),
            slots: Arc::new(Semaphore::new(config.max_connections)),
            refusals_logged: std::sync::Mutex::new([None; Refusal::ALL.len()]),
        })
    }

    /// SIGHUP: reads the certificate, key and CA again for new connections.
    /// Listen addresses and limits need a restart.
    pub(crate) fn reload(&self, config: &RadsecConfig) -> Result<(), TlsError> {
        if config.listen != self.config.listen || config.max_connections != self.config.max_connections {
            tracing::warn!("[radsec] listen and max_connections changes take effect at the next restart");
        }
        self.tls.store(tls::server_config(config.files())?);
        Ok(())
    }

    /// Binds every `listen` address.
    pub(crate) async fn bind(&self) -> Result<Vec<TcpListener>, (SocketAddr, std::io::Error)> {
        let mut listeners = Vec::new();
        for addr in &self.config.listen {
            let listener = TcpListener::bind(addr).await.map_err(|e| (*addr, e))?;
            listeners.push(listener);
        }
        Ok(listeners)
    }
}

/// Serves RadSec on already-bound listeners until shutdown; connections run
/// on `life`.
pub(crate) async fn serve<H: RequestHandler>(
    listeners: Vec<TcpListener>,
    radsec: Arc<Radsec>,
    ctx: Arc<Context<H>>,
    life: Lifecycle,
) {
    let mut loops = tokio::task::JoinSet::new();
    for listener in listeners {
        loops.spawn(accept_loop(
            listener,
            Arc::clone(&radsec),
            Arc::clone(&ctx),
            life.clone(),
        ));
    }
    while loops.join_next().await.is_some() {}
}

async fn accept_loop<H: RequestHandler>(
    listener: TcpListener,
    radsec: Arc<Radsec>,
    ctx: Arc<Context<H>>,
    life: Lifecycle,
) {
    let mut backoff = Backoff::default();
    loop {
        let accepted = tokio::select! {
            _ = life.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff.succeeded("radsec");
                accepted
            }
            Err(e) if is_peer_error(&e) => continue,
            Err(e) => {
                let pause = backoff.failed("radsec", &e);
                tokio::select! {
                    _ = life.cancelled() => return,
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
        };
        let Ok(permit) = Arc::clone(&radsec.slots).try_acquire_owned() else {
            radsec.refuse(&ctx, peer, Refusal::TooMany, "max_connections reached");
            continue;
        };
        let (radsec, ctx, task_life) = (Arc::clone(&radsec), Arc::clone(&ctx), life.clone());
        life.spawn(connection(stream, peer, permit, radsec, ctx, task_life));
    }
}

impl Radsec {
    /// Counts and logs a connection closed before any RADIUS was read.
    /// Refusals anyone can cause (no certificate of ours needed) cost them
    /// one TCP connection each, so that they cannot fill the log they are
    /// logged at most once a second per reason, with the count so far; the
    /// rest at debug level. `unknown-client` needs a certificate from
    /// `ca_file` and is always logged.
    fn refuse<H>(&self, ctx: &Context<H>, peer: SocketAddr, reason: Refusal, detail: &str) {
        ctx.metrics.radsec.refuse(reason);
        if reason == Refusal::UnknownClient || self.refusal_due(reason) {
            let total = ctx.metrics.radsec.refused_for(reason);
            tracing::warn!(%peer, reason = reason.as_str(), total, detail, "radsec connection refused");
        } else {
            tracing::debug!(%peer, reason = reason.as_str(), detail, "radsec connection refused");
        }
    }

    /// Whether a WARN line for `reason` is due, and marks it logged.
    fn refusal_due(&self, reason: Refusal) -> bool {
        let i = reason.index();
        let mut last = self.refusals_logged.lock().expect("refusal log lock poisoned");
        let now = tokio::time::Instant::now();
        let due = last[i].is_none_or(|at| now.duration_since(at) >= REFUSAL_LOG_INTERVAL);
        if due {
            last[i] = Some(now);
        }
        due
    }
}

/// One accepted connection: handshake, identification, then the session.
async fn connection<H: RequestHandler>(
    stream: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    radsec: Arc<Radsec>,
    ctx: Arc<Context<H>>,
    life: Lifecycle,
) {
    let _permit = permit;
    let _ = stream.set_nodelay(true);
    let acceptor = TlsAcceptor::from(radsec.tls.load_full());
    let handshake = tokio::time::timeout(radsec.config.handshake_timeout, acceptor.accept(stream));
    let stream = tokio::select! {
        _ = life.cancelled() => return,
        done = handshake => match done {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                let reason = if is_certificate_error(&e) { Refusal::BadCertificate } else { Refusal::HandshakeFailed };
                return radsec.refuse(&ctx, peer, reason, &e.to_string());
            }
            Err(_) => return radsec.refuse(&ctx, peer, Refusal::HandshakeTimeout, "handshake_timeout passed"),
        },
    };
    let names = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(tls::peer_names)
        .unwrap_or_default();
    let Some(client) = ctx.clients.load().find_radsec(peer.ip(), &names).cloned() else {
        let detail = format!(
            "no radsec = true client with address {} and tls_name in {names:?}",
            peer.ip()
        );
        return radsec.refuse(&ctx, peer, Refusal::UnknownClient, &detail);
    };
    let version = stream.get_ref().1.protocol_version().map(|v| format!("{v:?}"));
    tracing::info!(client = %client.name, %peer, tls = version.as_deref().unwrap_or("?"), "radsec connection open");
    ctx.metrics.radsec.open.fetch_add(1, Ordering::Relaxed);
    let idle = radsec.config.idle_timeout;
    let end = session::run(stream, session::Peer { client, address: peer }, idle, &ctx, &life).await;
    ctx.metrics.radsec.open.fetch_sub(1, Ordering::Relaxed);
    tracing::info!(%peer, why = end.as_str(), "radsec connection closed");
}

/// Whether a handshake failed on the client's certificate (as opposed to
/// a peer that does not speak TLS, or no common parameters).
fn is_certificate_error(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            )
        })
}

#[cfg(test)]
mod tests;
