//! app: builds a running server from a [`Config`] — sockets, stores, mail
//! queue, the decision — and runs it until SIGTERM or SIGINT, then drains.
//! Everything that is wired together lives here, so `cli` stays about the
//! command line and each module stays about its own concern.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use sd_notify::NotifyState;
use tokio::net::{TcpListener, UdpSocket};

use crate::auth::{AuthSettings, Authenticator, Handler};
use crate::challenge::{ChallengeStore, MemoryState, MemoryStore, OperatorState};
use crate::config::{Config, ConfigError, LoadOptions, Source, StateConfig};
use crate::health::Health;
use crate::lifecycle::Lifecycle;
use crate::limits::{Limiter, MemoryLimiter};
use crate::mail::status::{DeliveryLog, MemoryDeliveries};
use crate::mail::MailQueue;
use crate::redis::PoolError;
use crate::server::{Clients, Context};
use crate::users::HashThreads;

/// Why the server could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum Error {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}{purpose}: {source}")]
    Listen {
        /// The address from the configuration.
        addr: SocketAddr,
        /// What the listener was for (empty for RADIUS).
        purpose: &'static str,
        /// Why the kernel refused.
        source: std::io::Error,
    },
    /// The configuration, users file or templates (also on reload).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The shared state in Redis.
    #[error(transparent)]
    State(#[from] PoolError),
    /// The configured control socket could not be made.
    #[error(transparent)]
    Control(#[from] crate::control::SocketError),
    /// Signals, systemd notification or a socket's address.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// `[radsec]`'s certificate, key or CA (on reload).
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A task of the server panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

/// Binds `count` UDP sockets to `addr` with SO_REUSEPORT, so that the kernel
/// spreads requests over them and each gets a receive loop of its own (one
/// per core: cheap requests are answered on the loop that received them).
/// `[::]` is IPv6-only so `0.0.0.0` can share the port.
fn bind(addr: SocketAddr, receive_buffer: Option<usize>, count: usize) -> std::io::Result<Vec<UdpSocket>> {
    // SO_REUSEPORT would also let a second server started on the same port
    // share it silently; a plain socket is refused by one that holds it, so
    // probe with one first (this also resolves port 0 once for the group).
    let probe = udp_socket(addr, None, false)?;
    let addr = probe.local_addr()?.as_socket().unwrap_or(addr);
    drop(probe);
    (0..count.max(1))
        .map(|_| {
            let socket = udp_socket(addr, receive_buffer, true)?;
            UdpSocket::from_std(socket.into())
        })
        .collect()
}

fn udp_socket(addr: SocketAddr, receive_buffer: Option<usize>, reuse_port: bool) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if let Some(bytes) = receive_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    socket.set_reuse_port(reuse_port)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Runs the server on `config` until SIGTERM or SIGINT; SIGHUP reloads it.
/// `options` are the command line's, kept for reloads.
pub(crate) async fn run(config: Config, options: LoadOptions) -> Result<(), Error> {
    let life = Lifecycle::new(config.server.shutdown_grace);
    raise_open_files_limit();
    for warning in config
        .cleartext_warnings()
        .into_iter()
        .chain(config.template_warnings())
    {
        tracing::warn!("{warning}");
    }
    if config.source == Source::Embedded {
        tracing::warn!("running on the embedded default configuration: client 127.0.0.1 (its secret is in README) does not need Message-Authenticator, users are the demo users, mail goes to ./outbox/");
    }
    let running = start(&config, options, &life).await?;
    let per_address = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut sockets = Vec::new();
    for addr in &config.server.listen {
        let group = bind(*addr, config.server.receive_buffer, per_address).map_err(|source| Error::Listen {
            addr: *addr,
            purpose: "",
            source,
        })?;
        let local = group[0].local_addr()?;
        tracing::info!(address = %local, sockets = group.len(), "listening on {local}");
        sockets.extend(group);
    }
    if let Some(metrics) = config.metrics {
        let addr = metrics.listen;
        let listener = crate::exporter::bind(addr).await.map_err(|source| Error::Listen {
            addr,
            purpose: " for metrics",
            source,
        })?;
        let exporter = crate::exporter::serve(
            listener,
            Arc::clone(&running.ctx),
            running.hash_threads.clone(),
            metrics.http,
            life.clone(),
        );
        life.spawn(exporter);
    }
    let (reload_tx, mut reloads) = tokio::sync::mpsc::channel(1);
    let control = crate::control::Control {
        ctx: Arc::clone(&running.ctx),
        state: Arc::clone(&running.operator),
        deliveries: Arc::clone(&running.deliveries),
        reload: reload_tx,
    };
    crate::control::start(&config.control, control, &life).await?;
    if let Some(radsec) = &running.radsec {
        let listeners = radsec.bind().await.map_err(|(addr, source)| Error::Listen {
            addr,
            purpose: " for radsec",
            source,
        })?;
        for listener in &listeners {
            tracing::info!("radsec listening on {}", listener.local_addr()?);
        }
        let ctx = Arc::clone(&running.ctx);
        life.spawn(crate::radsec::serve(listeners, Arc::clone(radsec), ctx, life.clone()));
    }
    let ctx = Arc::clone(&running.ctx);
    let server = life.spawn(crate::server::serve(sockets, ctx, life.clone()));
    systemd(&[NotifyState::Ready]);
    let mut signals = Signals::new()?;
    loop {
        // A reload asked on the control socket is a SIGHUP with an answer.
        let asked = tokio::select! {
            signal = signals.next() => match signal {
                Signal::Stop => break,
                Signal::Reload => None,
            },
            Some(asked) = reloads.recv() => Some(asked),
        };
        systemd(&[NotifyState::Reloading, NotifyState::monotonic_usec_now()?]);
        let result = running.reload(&config.source).await;
        systemd(&[NotifyState::Ready]);
        if let Some(asked) = asked {
            let _ = asked.send(result);
        }
    }
    systemd(&[NotifyState::Stopping]);
    tracing::info!("stopping: answering requests in progress");
    life.stop();
    server.await?;
    if !life.drain().await {
        tracing::warn!(grace_s = life.grace().as_secs(), "stopped before all work finished");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Raises the soft limit on open files to the hard limit: every connection
/// and mail costs a descriptor, and the usual soft limit of 1024 is a
/// fraction of what the hard limit (or the unit's `LimitNOFILE`) allows.
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft >= hard {
        tracing::debug!(open_files = soft, "open files limit already at the hard limit");
        return;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => tracing::info!(from = soft, to = hard, "open files limit raised to the hard limit"),
        Err(e) => tracing::warn!(limit = soft, error = %e, "cannot raise the open files limit"),
    }
}

/// Tells systemd (Type=notify) how the service is doing; without
/// NOTIFY_SOCKET this does nothing.
fn systemd(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// What a reload swaps, and what it needs to build the new parts.
struct Running {
    ctx: Arc<Context>,
    radsec: Option<Arc<crate::radsec::Radsec>>,
    store: Arc<dyn ChallengeStore>,
    hash_threads: HashThreads,
    health: Arc<Health>,
    life: Lifecycle,
    options: LoadOptions,
    /// The deny page's wording, when `[link]` serves it.
    deny_page: Option<Arc<ArcSwap<crate::config::template::Template>>>,
    /// What `mailotp ctl` reads and clears.
    operator: Arc<dyn OperatorState>,
    /// What became of each mail.
    deliveries: Arc<dyn DeliveryLog>,
}

/// Builds stores, mail queue, link pages and the decision from `config`.
async fn start(config: &Config, options: LoadOptions, life: &Lifecycle) -> Result<Running, Error> {
    // Backends report here; the handler consults it before answering Status-Server.
    let health = Arc::new(Health::default());
    let hash_threads = HashThreads::new(config.server.hash_workers);
    let users = crate::users::open_reporting(&config.users, hash_threads.clone(), Arc::clone(&health), life)?;
    let email = &config.email;
    let State {
        store,
        limits,
        mail,
        operator,
        deliveries,
    } = start_state(config, &health, life).await?;
    mail.record_deliveries(Arc::clone(&deliveries));
    let denied = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut deny_page = None;
    if let Some(link) = &email.pages {
        let listener = TcpListener::bind(link.listen).await.map_err(|source| Error::Listen {
            addr: link.listen,
            purpose: " for link pages",
            source,
        })?;
        tracing::info!("link page server on http://{}", listener.local_addr()?);
        let pages = crate::link::Pages {
            store: Arc::clone(&store),
            limits: Arc::clone(&limits),
            deny_locks: config.users.deny_locks,
            timezone: email.timezone.clone(),
            denied: Arc::clone(&denied),
            deny_page: Arc::clone(deny_page.insert(Arc::new(ArcSwap::from_pointee(link.deny_page.clone())))),
        };
        life.spawn(crate::link::serve(listener, pages, link.http, life.clone()));
    }
    let auth = Authenticator {
        users: ArcSwap::from_pointee(users),
        challenges: Arc::clone(&store),
        limits,
        mail,
        settings: ArcSwap::from_pointee(AuthSettings::from(email)),
        denied,
        policies: ArcSwap::from_pointee(config.policies.clone()),
    };
    let clients = Clients::new(config.clients.clone());
    let handler = Handler {
        auth,
        health: Arc::clone(&health),
    };
    let mut ctx = Context::new(clients, handler, config.server.max_in_flight);
    ctx.drop_log_interval = config.server.drop_log_interval;
    ctx.pin_shares = crate::server::PinShares::new(config.server.pin_queue_per_client);
    ctx.results = Some(Arc::clone(&operator));
    let radsec = config.radsec.as_ref().map(crate::radsec::Radsec::new).transpose()?;
    Ok(Running {
        ctx: Arc::new(ctx),
        radsec: radsec.map(Arc::new),
        store,
        hash_threads,
        health,
        life: life.clone(),
        options,
        deny_page,
        operator,
        deliveries,
    })
}

/// What the state of the server is kept in: in this process, or in Redis.
struct State {
    store: Arc<dyn ChallengeStore>,
    limits: Arc<dyn Limiter>,
    mail: MailQueue,
    /// What `mailotp ctl` reads and clears.
    operator: Arc<dyn OperatorState>,
    /// What became of each mail, for `mailotp ctl status`.
    deliveries: Arc<dyn DeliveryLog>,
}

/// Challenges, limits, the mail queue and the operator's view of them: in
/// this process, or in Redis.
async fn start_state(config: &Config, health: &Arc<Health>, life: &Lifecycle) -> Result<State, Error> {
    let (email, lockout) = (&config.email, config.users.lockout);
    Ok(match &config.state {
        StateConfig::Redis(redis) => {
            let shared = crate::redis::start(redis, email, lockout, health, life).await?;
            tracing::info!("state in redis: challenges, limits and the mail queue are shared with the pool");
            let (operator, deliveries) = crate::redis::control::start(redis, email, health, life)?;
            State {
                store: shared.challenges,
                limits: shared.limits,
                mail: shared.mail,
                operator,
                deliveries,
            }
        }
        StateConfig::Memory => {
            let limits = MemoryLimiter::start(email.throttling, lockout, life);
            let store = MemoryStore::start(email.into(), Arc::clone(&limits), life);
            let mail = crate::mail::start(email, life)?;
            let operator = Arc::new(MemoryState::new(Arc::clone(&store), Arc::clone(&limits)));
            State {
                store,
                limits,
                mail,
                operator,
                deliveries: Arc::new(MemoryDeliveries::default()),
            }
        }
    })
}

impl Running {
    /// SIGHUP: reads the configuration and users again and swaps clients,
    /// users, code settings, policies, mail templates, messages, the deny
    /// page's wording and the RadSec certificates. Open challenges stay. A bad file changes nothing: the
    /// error is logged (and returned, for `mailotp ctl reload`) and the old
    /// one keeps serving.
    async fn reload(&self, source: &Source) -> Result<(), String> {
        let Source::File(path) = source else {
            let why = "the embedded default configuration has nothing to reload";
            tracing::warn!("reload ignored: {why}");
            return Err(why.to_owned());
        };
        let (path, options) = (path.clone(), self.options);
        let loaded = tokio::task::spawn_blocking(move || Config::load(&path, options)).await;
        let result = match loaded {
            Ok(Ok(config)) => self.swap(&config),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(()) => {
                tracing::info!("configuration reloaded");
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "reload refused; the previous configuration keeps serving");
                Err(e.to_string())
            }
        }
    }

    fn swap(&self, config: &Config) -> Result<(), Error> {
        let users = crate::users::open_reporting(
            &config.users,
            self.hash_threads.clone(),
            Arc::clone(&self.health),
            &self.life,
        )?;
        if let (Some(radsec), Some(config)) = (&self.radsec, &config.radsec) {
            radsec.reload(config)?;
        }
        let auth = &self.ctx.handler.auth;
        self.ctx.clients.store(Arc::new(Clients::new(config.clients.clone())));
        auth.users.store(Arc::new(users));
        auth.settings.store(Arc::new(AuthSettings::from(&config.email)));
        auth.policies.store(Arc::new(config.policies.clone()));
        auth.mail.update_messages(&config.email);
        if let (Some(page), Some(link)) = (&self.deny_page, &config.email.pages) {
            page.store(Arc::new(link.deny_page.clone()));
        }
        self.store.set_settings((&config.email).into());
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Stop,
    Reload,
}

/// SIGTERM and SIGINT stop, SIGHUP reloads.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop,
            _ = self.int.recv() => Signal::Stop,
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}
