//! Assembles a pingora server from a validated config: one proxy service per
//! listener, all reading one routing snapshot, and a reloader that swaps it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};

use crate::access_log::AccessLog;
use crate::config::Config;
use crate::discovery::{DiscoveredTargets, DiscoveryService, DiscoveryStatus};
use crate::listener::tls::CertResolver;
use crate::metrics::Metrics;
use crate::reload::Reloader;
use crate::routing::{Routing, SharedRouting};
use crate::settings::Protocol;
use crate::shared_state::{SharedState, SharedStateError, SharedStateService};
use crate::upgrade::Start;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Tls(crate::listener::tls::TlsError),
    #[error("{0}")]
    Engine(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the access log {target}: {source}")]
    AccessLog {
        target: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    SharedState(SharedStateError),
}

/// A server ready to run, with the handle to its routing snapshot.
pub struct Tether {
    pub server: Server,
    pub routing: SharedRouting,
    /// Each listener's address as bound (a config's port 0 replaced by the port
    /// picked), in config order.
    pub listeners: Vec<(Protocol, SocketAddr)>,
    /// The admin API's address as bound.
    pub admin: Option<SocketAddr>,
    /// Where the listening sockets pass on an upgrade.
    upgrade_socket: Option<PathBuf>,
    /// How long websockets stay after an upgrade (a bound on the stop).
    upgrade_grace: std::time::Duration,
    /// The way out, which writes out the access log.
    exit: Arc<crate::shutdown::Exit>,
    /// Ports picked for port-0 listeners, held until the process exits (see
    /// [`reserve_port`]).
    _reserved: Vec<socket2::Socket>,
}

impl Tether {
    /// Builds the services of a fresh start (no upgrade socket).
    pub fn build(config: &Config) -> Result<Tether, ServerError> {
        Self::build_with(config, &Start::default())
    }

    /// Builds the services. Listener addresses are checked up front so that a port in
    /// use is a clear error rather than a failure deep inside the engine. On an
    /// upgrade ([`Start::upgrade`]) this waits (up to about 6 s, pingora's limit) for
    /// the running tether, sent SIGQUIT, to hand over its listening sockets.
    pub fn build_with(config: &Config, start: &Start) -> Result<Tether, ServerError> {
        let (reserved, bound) = crate::listener::bind::addresses(&config.listeners, start)
            .map_err(|(addr, source)| ServerError::Bind { addr, source })?;
        let threads = config.load_balancer.threads;
        let grace = config.load_balancer.upgrade_grace;
        let mut conf = ServerConf {
            threads,
            // Work stealing gained nothing in measurements and moves tasks between
            // cores; keep each connection on its thread.
            work_stealing: false,
            // After this pingora shuts down its runtimes, which may never end
            // (src/shutdown.rs): tether's stop always ends the process before.
            grace_period_seconds: Some(crate::shutdown::pingora_grace_period(grace)),
            graceful_shutdown_timeout_seconds: Some(5),
            ..ServerConf::default()
        };
        if let Some(path) = &start.upgrade_socket {
            conf.upgrade_sock = path.to_string_lossy().into_owned();
        }
        let opt = pingora::server::configuration::Opt {
            upgrade: start.upgrade,
            ..Default::default()
        };
        let mut server = Server::new_with_opt_and_conf(opt, conf);
        let phases = server.watch_execution_phase();
        if start.upgrade {
            tracing::info!(
                "waiting on {} for the running tether's listening sockets (send it SIGQUIT)",
                server.configuration.upgrade_sock
            );
        }
        // On an upgrade pingora exits with status 1 when no sockets come.
        server.bootstrap();

        crate::listener::tls::install_provider();
        let shared = match &config.load_balancer.shared_state {
            Some(spec) => Some(SharedState::new(spec.clone()).map_err(ServerError::SharedState)?),
            None => None,
        };
        let discovered: DiscoveredTargets = Arc::default();
        let routing: SharedRouting = Arc::new(ArcSwap::from_pointee(Routing::build_with(
            config,
            None,
            &discovered.load(),
            shared.clone(),
        )));
        if let Some(shared) = shared {
            server.add_service(background_service(
                "shared state",
                SharedStateTask(SharedStateService(shared)),
            ));
        }
        let access_log = match &config.load_balancer.access_log {
            Some(target) => Some(
                AccessLog::start(target.clone(), &config.load_balancer.name).map_err(|source| {
                    ServerError::AccessLog {
                        target: match target {
                            crate::access_log::LogTarget::File(path) => path.display().to_string(),
                            crate::access_log::LogTarget::Stdout => "(stdout)".to_string(),
                        },
                        source,
                    }
                })?,
            ),
            None => {
                // logrotate's `kill -USR1` must not stop a tether that logs nothing
                // (SIGUSR1's default action ends the process).
                let ignored = Arc::new(std::sync::atomic::AtomicBool::new(false));
                if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGUSR1, ignored) {
                    tracing::warn!("cannot ignore SIGUSR1: {e}");
                }
                None
            }
        };
        let mut listener_stats = Vec::new();
        let mut resolvers = Vec::new();
        let mut mtls = Vec::new();
        for (i, (l, &addr)) in config.listeners.iter().zip(&bound).enumerate() {
            // Two listeners may share a port on different addresses: then the metrics
            // label names the address too, so that no two series have the same labels.
            let shared = bound.iter().filter(|b| b.port() == addr.port()).count() > 1;
            let built = crate::listener::bind::service(
                (i, l, addr, shared),
                config,
                routing.clone(),
                access_log.clone(),
            )
            .map_err(|e| match e {
                crate::listener::bind::BindError::Tls(e) => ServerError::Tls(e),
                crate::listener::bind::BindError::Engine(e) => ServerError::Engine(e),
                crate::listener::bind::BindError::TrustStore(e) => {
                    ServerError::Engine(e.to_string())
                }
            })?;
            if let Some(verifier) = &built.mtls {
                mtls.push((i, built.label.clone(), verifier.clone()));
            }
            listener_stats.push((built.label, built.stats));
            if let Some(resolver) = built.resolver {
                resolvers.push((i, resolver));
            }
            server.add_service(built.service);
        }
        if !resolvers.is_empty() {
            server.add_service(background_service(
                "certificate watch",
                CertWatch(resolvers.iter().map(|(_, r)| r.clone()).collect()),
            ));
        }
        if !mtls.is_empty() {
            server.add_service(background_service(
                "trust store watch",
                TrustStoreWatch(mtls.iter().map(|(_, _, v)| v.clone()).collect()),
            ));
        }
        // JWKS of `jwt_validation` actions, fetched and refreshed off the data path
        // (idle without any: a reload may add one).
        server.add_service(background_service("jwks refresh", JwksTask));
        server.add_service(background_service(
            "target lifecycle",
            crate::lifecycle::LifecycleService::new(routing.clone()),
        ));
        let reloader = Reloader::new(config, discovered.clone(), resolvers, routing.clone())
            .with_trust_stores(mtls.iter().map(|(i, _, v)| (*i, v.clone())).collect());
        let discovery_status = DiscoveryStatus::default();
        let metrics = Metrics {
            load_balancer: Arc::from(config.load_balancer.name.as_str()),
            listeners: listener_stats,
            routing: routing.clone(),
            discovery: discovery_status.clone(),
            reloads: reloader.stats(),
            access_log: access_log.clone(),
            mtls: mtls
                .iter()
                .map(|(_, label, v)| (label.clone(), v.refusals()))
                .collect(),
        };
        // The listeners as bound (a port 0 replaced by the port picked).
        let listeners: Vec<(Protocol, SocketAddr)> = config
            .listeners
            .iter()
            .zip(&bound)
            .map(|(l, addr)| (l.protocol, *addr))
            .collect();
        let mut admin = None;
        let exit = crate::shutdown::Exit::new(access_log);
        server.add_service(background_service(
            "shutdown",
            crate::shutdown::ShutdownService::new(routing.clone(), grace, phases, exit.clone()),
        ));
        if let Some(addr) = config.load_balancer.admin {
            let service = crate::admin::AdminService::bind(
                addr,
                start.upgrade,
                reloader.clone(),
                listeners.clone(),
                discovery_status.clone(),
                metrics,
            )
            .map_err(|source| ServerError::Bind { addr, source })?;
            admin = Some(service.addr);
            server.add_service(background_service("admin", service));
        }
        let discovering: Vec<_> = config
            .target_groups
            .iter()
            .filter_map(|g| g.discovery.clone().map(|d| (g.name.clone(), d)))
            .collect();
        if !discovering.is_empty() {
            let rebuilder = reloader.clone();
            server.add_service(background_service(
                "discovery",
                DiscoveryService {
                    groups: discovering,
                    discovered,
                    rebuild: Arc::new(move || rebuilder.rebuild()),
                    status: discovery_status,
                },
            ));
        }
        server.add_service(background_service("config reload", SighupReload(reloader)));
        Ok(Tether {
            server,
            routing,
            listeners,
            admin,
            upgrade_socket: start.upgrade_socket.clone(),
            upgrade_grace: grace,
            exit,
            _reserved: reserved,
        })
    }

    /// The bound addresses, one per line: `listener <index> <protocol> <address>`,
    /// then `admin <address>` when there is an admin API.
    pub fn addresses(&self) -> String {
        let mut out = String::new();
        for (i, (protocol, addr)) in self.listeners.iter().enumerate() {
            out.push_str(&format!("listener {i} {} {addr}\n", protocol.as_str()));
        }
        if let Some(addr) = self.admin {
            out.push_str(&format!("admin {addr}\n"));
        }
        out
    }

    /// Serves until a signal stops the process: SIGQUIT hands the listening sockets
    /// to a new tether waiting on the upgrade socket, then stops gracefully; SIGTERM
    /// stops gracefully; SIGINT, or a second signal, at once (src/shutdown.rs has
    /// the details and the bounds).
    pub fn run(self) -> ! {
        let signals = crate::shutdown::StopSignals {
            exit: self.exit.clone(),
            upgrade_socket: self.upgrade_socket.clone(),
            upgrade_grace: self.upgrade_grace,
        };
        match signals.start() {
            Ok(stop) => self.server.run(RunArgs {
                shutdown_signal: Box::new(stop),
            }),
            Err(e) => {
                eprintln!("tether: cannot watch the stop signals: {e}");
                self.exit.now(1)
            }
        }
        self.exit.now(0)
    }
}

/// Reloads on SIGHUP.
struct SighupReload(Reloader);

#[async_trait]
impl BackgroundService for SighupReload {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("no SIGHUP reload: {e}");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    let _ = self.0.reload();
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Reloads certificates when their files change (checked every two seconds); a
/// file that fails to load keeps the running certificates and says why.
/// The shared store's connection, PINGs and queued writes, on a runtime of their own.
struct SharedStateTask(SharedStateService);

#[async_trait]
impl BackgroundService for SharedStateTask {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        self.0
            .run(async move {
                let _ = shutdown.changed().await;
            })
            .await;
    }
}

/// Reloads a trust store whose files change (a bad file keeps the running one).
struct TrustStoreWatch(Vec<Arc<crate::listener::mtls::MtlsVerifier>>);

fn modified_files(files: &[PathBuf]) -> Vec<Option<std::time::SystemTime>> {
    files
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

#[async_trait]
impl BackgroundService for TrustStoreWatch {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut seen: Vec<_> = self.0.iter().map(|v| modified_files(&v.files())).collect();
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            for (verifier, last) in self.0.iter().zip(seen.iter_mut()) {
                let now = modified_files(&verifier.files());
                if now == *last {
                    continue;
                }
                *last = now;
                match verifier.reload(&verifier.spec()) {
                    Ok(()) => tracing::info!("trust store reloaded: {:?}", verifier.files()),
                    Err(e) => {
                        tracing::error!("trust store reload refused, keeping the running one: {e}")
                    }
                }
            }
        }
    }
}

/// The `jwt_validation` actions' JWKS: fetched, re-read and refreshed until shutdown.
struct JwksTask;

#[async_trait]
impl BackgroundService for JwksTask {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        crate::jwt::fetch::run(async move {
            let _ = shutdown.changed().await;
        })
        .await;
    }
}

struct CertWatch(Vec<Arc<CertResolver>>);

fn modified(specs: &[crate::listener::tls::CertSpec]) -> Vec<Option<std::time::SystemTime>> {
    specs
        .iter()
        .flat_map(|s| [&s.cert, &s.key])
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

#[async_trait]
impl BackgroundService for CertWatch {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut seen: Vec<_> = self.0.iter().map(|r| modified(&r.specs())).collect();
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            for (resolver, last) in self.0.iter().zip(seen.iter_mut()) {
                let specs = resolver.specs();
                let now = modified(&specs);
                if now == *last {
                    continue;
                }
                *last = now;
                match resolver.reload(&specs) {
                    Ok(()) => tracing::info!(
                        "certificates reloaded: {:?}",
                        specs.iter().map(|s| &s.cert).collect::<Vec<_>>()
                    ),
                    Err(e) => tracing::error!(
                        "certificate reload refused, keeping the running certificates: {e}"
                    ),
                }
            }
        }
    }
}
