//! app: builds a running server from a [`Config`] — sockets, stores, mail
//! queue, the decision — and runs it until SIGTERM or SIGINT, then drains.
//! Everything that is wired together lives here, so `cli` stays about the
//! command line and each module stays about its own concern.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{AuthSettings, Authenticator};
use crate::challenge::{ChallengeSettings, ChallengeStore, MemoryStore};
use crate::cli::CliError;
use crate::config::{Config, Delivery, Source, StateConfig};
use crate::health::Health;
use crate::limits::{Limiter, MemoryLimiter};
use crate::mail::MailQueue;
use crate::server::{Clients, Context};
use crate::users::HashPool;

/// Binds a UDP socket; `[::]` is IPv6-only so `0.0.0.0` can share the port.
fn bind(addr: SocketAddr, receive_buffer: Option<usize>) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if let Some(bytes) = receive_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// Runs the server on `config` until a stop signal.
pub async fn run(config: Config) -> Result<(), CliError> {
    let tasks = TaskTracker::new();
    let shutdown = CancellationToken::new();
    if config.source == Source::Embedded {
        tracing::warn!("running on the embedded default configuration: client 127.0.0.1 (secret testing123) does not need Message-Authenticator, users are the demo users, mail goes to ./outbox/");
    }
    // Backends report here; `server` consults it before answering Status-Server.
    let health = Arc::new(Health::default());
    let pool = HashPool::new(config.server.hash_workers);
    let users = crate::users::open_reporting(&config.users, pool, Arc::clone(&health))?;
    let email = &config.email;
    let (challenges, limits, mail): (Arc<dyn ChallengeStore>, Arc<dyn Limiter>, MailQueue) = match &config.state {
        StateConfig::Redis(redis) => {
            let grace = config.server.shutdown_grace;
            let lockout = config.users.lockout;
            let shared = crate::pool::start(redis, email, lockout, grace, &health, &tasks, shutdown.clone())?;
            tracing::info!("state in redis: challenges, limits and the mail queue are shared with the pool");
            (shared.challenges, shared.limits, shared.mail)
        }
        StateConfig::Memory => {
            let settings = ChallengeSettings {
                validity: email.challenge_validity,
                blocking: email.blocking_timeout,
                max_attempts: email.max_attempts,
            };
            let challenges = MemoryStore::start(settings, &tasks, shutdown.clone());
            let mail = crate::mail::start(email, config.server.shutdown_grace, &tasks, shutdown.clone())?;
            let limits = MemoryLimiter::start(email.throttling, config.users.lockout, &tasks, shutdown.clone());
            (challenges, limits, mail)
        }
    };
    if let Delivery::Link(link) = &email.delivery {
        let listener = TcpListener::bind(link.listen)
            .await
            .map_err(|e| format!("cannot listen on {} for link pages: {e}", link.listen))?;
        tracing::info!("link page server on http://{}", listener.local_addr()?);
        let pages = crate::link::serve(
            listener,
            Arc::clone(&challenges),
            link.max_connections,
            tasks.clone(),
            shutdown.clone(),
        );
        tasks.spawn(pages);
    }
    let auth = Authenticator {
        users: ArcSwap::from_pointee(users),
        challenges,
        limits,
        mail,
        settings: ArcSwap::from_pointee(AuthSettings::from(email)),
    };
    let mut ctx = Context::new(
        Clients::new(config.clients.clone()),
        auth,
        config.server.max_in_flight,
        health,
    );
    ctx.drop_log_interval = config.server.drop_log_interval;
    let ctx = Arc::new(ctx);
    let mut sockets = Vec::new();
    for addr in &config.server.listen {
        let socket = bind(*addr, config.server.receive_buffer).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        tracing::info!(address = %socket.local_addr()?, "listening on {}", socket.local_addr()?);
        sockets.push(socket);
    }
    let server = tokio::spawn(crate::server::serve(sockets, ctx, tasks.clone(), shutdown.clone()));
    wait_for_stop_signal().await?;
    tracing::info!("stopping: answering requests in progress");
    shutdown.cancel();
    server.await?;
    tasks.close();
    if tokio::time::timeout(config.server.shutdown_grace, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_s = config.server.shutdown_grace.as_secs(),
            "stopped before all work finished"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_stop_signal() -> Result<(), CliError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r?,
    }
    Ok(())
}
