//! The reload policy: what a reload may change, what it may not (listeners and
//! discovery need a restart), and putting a new config in force. SIGHUP, the admin
//! API's `POST /reload` and discovery's target changes all go through [`Reloader`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{Config, ConfigError};
use crate::discovery::DiscoveredTargets;
use crate::listener::mtls::{MtlsVerifier, TrustStoreError};
use crate::listener::tls::{CertResolver, TlsError};
use crate::routing::{Routing, SharedRouting};
use crate::settings::Protocol;
use crate::stats::ReloadStats;

/// Why a reload was refused. The running config stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file does not validate.
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{}: listeners changed (address, port or protocol); restart to change them", .0.display())]
    ListenersChanged(PathBuf),
    #[error("{}: target group discovery changed; restart to change it", .0.display())]
    DiscoveryChanged(PathBuf),
    /// ALPN is fixed when HTTPS listeners start.
    #[error("{}: http2_enabled changed; restart to change it", .0.display())]
    Http2Changed(PathBuf),
    /// The admin API is bound at start; its address decides whether writes need a
    /// token, so a reload that moves it would leave the check out of step.
    #[error("{}: the admin address changed; restart to change it", .0.display())]
    AdminChanged(PathBuf),
    /// The writer thread holds the file open from the start.
    #[error("{}: access_log changed; restart or upgrade to change it", .0.display())]
    AccessLogChanged(PathBuf),
    /// Replicas share pins through the store they started with.
    #[error("{}: shared_state changed; restart to change it", .0.display())]
    SharedStateChanged(PathBuf),
    /// The client certificate verifier is made at start.
    #[error("{}: a listener's mutual_authentication mode changed; restart to change it", .0.display())]
    MutualAuthChanged(PathBuf),
    /// A listener's new trust store does not load.
    #[error(transparent)]
    TrustStore(#[from] TrustStoreError),
    /// A listener's new certificate files do not load.
    #[error(transparent)]
    Certificates(#[from] TlsError),
}

/// Reloads the config file. A config that does not validate, or that changes the
/// listeners (which need a restart), is refused and the running routing is kept.
#[derive(Clone)]
pub struct Reloader {
    /// The config in force (reloads replace it).
    config: Arc<ArcSwap<Config>>,
    /// Targets found by discovery, by group.
    discovered: DiscoveredTargets,
    /// One rebuild at a time, so that a reload and a discovery change cannot store
    /// snapshots out of order.
    rebuilding: Arc<parking_lot::Mutex<()>>,
    /// HTTPS listeners' certificate resolvers, by listener index.
    resolvers: Vec<(usize, Arc<CertResolver>)>,
    path: PathBuf,
    listeners: Vec<(SocketAddr, Protocol)>,
    pub routing: SharedRouting,
    /// Reloads by result, for `GET /metrics`.
    stats: Arc<ReloadStats>,
    /// HTTPS listeners' client certificate verifiers (mutual TLS), by listener index.
    trust_stores: Vec<(usize, Arc<MtlsVerifier>)>,
}

impl Reloader {
    /// A reloader for `config`, in force with `routing`.
    pub fn new(
        config: &Config,
        discovered: DiscoveredTargets,
        resolvers: Vec<(usize, Arc<CertResolver>)>,
        routing: SharedRouting,
    ) -> Reloader {
        Reloader {
            config: Arc::new(ArcSwap::from_pointee(config.clone())),
            discovered,
            rebuilding: Arc::default(),
            resolvers,
            path: config.path.clone(),
            listeners: config
                .listeners
                .iter()
                .map(|l| (l.addr, l.protocol))
                .collect(),
            routing,
            stats: Arc::default(),
            trust_stores: Vec::new(),
        }
    }

    /// The same reloader, reloading these listeners' trust stores too.
    pub fn with_trust_stores(mut self, trust_stores: Vec<(usize, Arc<MtlsVerifier>)>) -> Self {
        self.trust_stores = trust_stores;
        self
    }

    /// The reload counts.
    pub fn stats(&self) -> Arc<ReloadStats> {
        self.stats.clone()
    }

    /// Reads the config file and puts it in force; returns its summary, or why it
    /// was refused (the running config is then kept, and the refusal logged).
    pub fn reload(&self) -> Result<String, ReloadError> {
        let result = self.try_reload();
        match &result {
            Ok(_) => self.stats.record("success"),
            Err(e) => {
                tracing::error!("reload refused, keeping the running config: {e}");
                self.stats.record(match e {
                    ReloadError::Config(_) => "invalid_config",
                    _ => "refused",
                });
            }
        }
        result
    }

    fn try_reload(&self) -> Result<String, ReloadError> {
        let config = Config::load(&self.path)?;
        let listeners: Vec<_> = config
            .listeners
            .iter()
            .map(|l| (l.addr, l.protocol))
            .collect();
        if listeners != self.listeners {
            return Err(ReloadError::ListenersChanged(self.path.clone()));
        }
        if discovery_of(&config) != discovery_of(&self.config.load()) {
            return Err(ReloadError::DiscoveryChanged(self.path.clone()));
        }
        if config.load_balancer.http2_enabled != self.config.load().load_balancer.http2_enabled {
            return Err(ReloadError::Http2Changed(self.path.clone()));
        }
        if config.load_balancer.admin != self.config.load().load_balancer.admin {
            return Err(ReloadError::AdminChanged(self.path.clone()));
        }
        if config.load_balancer.access_log != self.config.load().load_balancer.access_log {
            return Err(ReloadError::AccessLogChanged(self.path.clone()));
        }
        if config.load_balancer.shared_state != self.config.load().load_balancer.shared_state {
            return Err(ReloadError::SharedStateChanged(self.path.clone()));
        }
        // Mutual TLS's mode is fixed at start; its trust store reloads.
        let mode = |c: &Config, i: usize| {
            c.listeners
                .get(i)
                .and_then(|l| l.tls.as_ref())
                .map(|t| t.mutual_auth.mode)
        };
        let running = self.config.load();
        if (0..config.listeners.len()).any(|i| mode(&config, i) != mode(&running, i)) {
            return Err(ReloadError::MutualAuthChanged(self.path.clone()));
        }
        let mut trust_stores = Vec::new();
        for (i, verifier) in &self.trust_stores {
            if let Some(tls) = config.listeners.get(*i).and_then(|l| l.tls.as_ref()) {
                trust_stores.push((verifier, verifier.prepare(&tls.mutual_auth)?));
            }
        }
        // New certificates first: a file that fails to load keeps the running ones.
        for (i, resolver) in &self.resolvers {
            let Some(tls) = config.listeners.get(*i).and_then(|l| l.tls.as_ref()) else {
                continue;
            };
            resolver.reload(&tls.certificates)?;
        }
        for (verifier, prepared) in trust_stores {
            verifier.install(prepared);
        }
        let summary = config.summary();
        self.config.store(Arc::new(config));
        self.rebuild();
        tracing::info!("reloaded {summary}");
        Ok(summary)
    }
}

/// Which groups discover their targets, and how.
fn discovery_of(config: &Config) -> Vec<(String, Option<crate::discovery::DiscoverySpec>)> {
    config
        .target_groups
        .iter()
        .map(|g| (g.name.clone(), g.discovery.clone()))
        .collect()
}

impl Reloader {
    /// The config in force (the admin API reads its token from it, so that a reload
    /// rotates the token).
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Rebuilds routing from the config in force and the discovered targets.
    pub fn rebuild(&self) {
        let _one_at_a_time = self.rebuilding.lock();
        let current = self.routing.load();
        let next = Routing::build(&self.config.load(), Some(&current), &self.discovered.load());
        self.routing.store(Arc::new(next));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const LISTENER: &str =
        "[[listener]]\nport = 0\ndefault_action = { fixed_response = { status = 200 } }\n";

    /// A reloader over `first` written to a temp file; the file then holds `second`.
    fn reload(first: &str, second: &str) -> Result<String, ReloadError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tether.toml");
        std::fs::write(&path, first).unwrap();
        let config = Config::load(&path).unwrap();
        let routing = Arc::new(ArcSwap::from_pointee(Routing::build(
            &config,
            None,
            &HashMap::new(),
        )));
        let reloader = Reloader::new(&config, Arc::default(), Vec::new(), routing);
        std::fs::write(&path, second).unwrap();
        reloader.reload()
    }

    #[test]
    fn a_reload_that_changes_the_access_log_is_refused() {
        let with = |lb: &str| format!("[load_balancer]\n{lb}\n{LISTENER}");
        let a = with("access_log = { path = \"a.log\" }");
        let b = with("access_log = { path = \"b.log\" }");
        let none = with("");
        assert!(reload(&a, &a).is_ok());
        for (first, second) in [(&a, &b), (&a, &none), (&none, &a)] {
            let e = reload(first, second).unwrap_err();
            assert!(matches!(e, ReloadError::AccessLogChanged(_)), "{e}");
            assert!(
                e.to_string()
                    .ends_with("access_log changed; restart or upgrade to change it"),
                "{e}"
            );
        }
    }
}
