//! Assembles a pingora server from a validated config: one proxy service per
//! listener, all reading one routing snapshot, and a reloader that swaps it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};

use crate::config::Config;
use crate::proxy::Proxy;
use crate::routing::{Routing, SharedRouting};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// A server ready to run, with the handle to its routing snapshot.
pub struct Tether {
    pub server: Server,
    pub routing: SharedRouting,
}

impl Tether {
    /// Builds the services. Listener addresses are checked up front so that a port in
    /// use is a clear error rather than a failure deep inside the engine.
    pub fn build(config: &Config) -> Result<Tether, ServerError> {
        for l in &config.listeners {
            TcpListener::bind(l.addr).map_err(|source| ServerError::Bind {
                addr: l.addr,
                source,
            })?;
        }
        let threads = config.load_balancer.threads;
        let conf = ServerConf {
            threads,
            // The default pool (128) is too small past ~150 client connections and
            // forces new upstream connections; size it for peak concurrency.
            upstream_keepalive_pool_size: 1024,
            // Work stealing gained nothing in measurements and moves tasks between
            // cores; keep each connection on its thread.
            work_stealing: false,
            grace_period_seconds: Some(0),
            graceful_shutdown_timeout_seconds: Some(5),
            ..ServerConf::default()
        };
        let mut server = Server::new_with_opt_and_conf(None, conf);
        server.bootstrap();

        let routing: SharedRouting = Arc::new(ArcSwap::from_pointee(Routing::build(config, None)));
        for (i, l) in config.listeners.iter().enumerate() {
            let proxy = Proxy::new(i, l.addr, l.protocol, routing.clone());
            let mut service = pingora::proxy::http_proxy_service_with_name(
                &server.configuration,
                proxy,
                &format!("listener {} {}", l.protocol.as_str(), l.addr),
            );
            service.add_tcp(&l.addr.to_string());
            service.threads = Some(threads);
            server.add_service(service);
        }
        server.add_service(background_service(
            "target lifecycle",
            crate::lifecycle::LifecycleService::new(routing.clone()),
        ));
        let reloader = Reloader {
            path: config.path.clone(),
            listeners: config
                .listeners
                .iter()
                .map(|l| (l.addr, l.protocol))
                .collect(),
            routing: routing.clone(),
        };
        if let Some(addr) = config.load_balancer.admin {
            TcpListener::bind(addr).map_err(|source| ServerError::Bind { addr, source })?;
            server.add_service(background_service(
                "admin",
                crate::admin::AdminService {
                    addr,
                    reloader: reloader.clone(),
                },
            ));
        }
        server.add_service(background_service("config reload", SighupReload(reloader)));
        Ok(Tether { server, routing })
    }

    /// Serves until a signal stops the process (SIGTERM graceful, SIGINT fast).
    pub fn run(self) -> ! {
        self.server.run_forever()
    }
}

/// Reloads the config file. A config that does not validate, or that changes the
/// listeners (which need a restart), is refused and the running routing is kept.
#[derive(Clone)]
pub struct Reloader {
    path: PathBuf,
    listeners: Vec<(std::net::SocketAddr, crate::config::Protocol)>,
    pub routing: SharedRouting,
}

impl Reloader {
    /// Returns the new config's summary, or why it was refused.
    pub fn reload(&self) -> Result<String, String> {
        let refused = |why: String| {
            tracing::error!("reload refused, keeping the running config: {why}");
            Err(why)
        };
        let config = match Config::load(&self.path) {
            Ok(c) => c,
            Err(e) => return refused(e.to_string()),
        };
        let listeners: Vec<_> = config
            .listeners
            .iter()
            .map(|l| (l.addr, l.protocol))
            .collect();
        if listeners != self.listeners {
            return refused(format!(
                "{}: listeners changed (address, port or protocol); restart to change them",
                self.path.display()
            ));
        }
        let current = self.routing.load();
        self.routing
            .store(Arc::new(Routing::build(&config, Some(&current))));
        let summary = config.summary();
        tracing::info!("reloaded {summary}");
        Ok(summary)
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
