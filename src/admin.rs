//! The admin API (hyper), off the data path, on `[load_balancer] admin`:
//!
//! - `GET /`: the status page (HTML, refreshing itself from `GET /status`);
//! - `GET /status`: listeners, rules, target health and discovery, as JSON;
//! - `GET /targets`: every group's targets with state and reason, as JSON (what
//!   `tether targets` prints, like `aws elbv2 describe-target-health`);
//! - `POST /reload`: reload the config file (as SIGHUP does);
//! - `GET /metrics`: the metrics, in ALB's CloudWatch names, in Prometheus's text
//!   format ([`crate::metrics`]);
//! - `GET /healthz`: 200 while the process serves.
//!
//! Reads are open; writes need the admin token when one is set ([`auth`]).

mod auth;
pub mod status;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde::{Deserialize, Serialize};

use crate::discovery::DiscoveryStatus;
use crate::metrics::Metrics;
use crate::reload::Reloader;
use crate::routing::Routing;
use crate::settings::Protocol;
use crate::target_group::{Target, TargetGroup};

/// One target, as `describe-target-health` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TargetHealth {
    pub id: String,
    pub port: u16,
    pub state: String,
    pub reason: String,
    pub description: String,
    /// In-flight requests plus open websockets.
    pub connections: u64,
    /// Open websockets (counted in `connections` too).
    #[serde(default)]
    pub websockets: u64,
    /// Requests sent to the target since it was registered.
    #[serde(default)]
    pub requests: u64,
    /// The ECS task behind the target, when discovered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_arn: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupHealth {
    pub name: String,
    pub fail_open: bool,
    pub targets: Vec<TargetHealth>,
}

fn target_health(t: &Target) -> TargetHealth {
    let (state, reason) = t.state();
    TargetHealth {
        id: t.addr.ip().to_string(),
        port: t.addr.port(),
        state: state.to_string(),
        reason: reason.code().to_string(),
        description: reason.description().to_string(),
        connections: t.connections(),
        websockets: t.websockets(),
        requests: t.requests(),
        task_arn: t.label(),
    }
}

fn group_health(g: &TargetGroup) -> GroupHealth {
    GroupHealth {
        name: g.name.clone(),
        fail_open: g.in_use && g.fails_open() && !g.targets().is_empty(),
        targets: g.all_targets().iter().map(|t| target_health(t)).collect(),
    }
}

/// Every group's target health.
pub fn describe(routing: &Routing) -> Vec<GroupHealth> {
    routing.groups.iter().map(|g| group_health(g)).collect()
}

/// The table `tether targets` prints.
pub fn render(groups: &[GroupHealth]) -> String {
    let mut rows = vec![[
        "TARGET GROUP".to_string(),
        "TARGET".to_string(),
        "PORT".to_string(),
        "STATE".to_string(),
        "REASON".to_string(),
        "CONNECTIONS".to_string(),
        "TASK".to_string(),
        "DESCRIPTION".to_string(),
    ]];
    for g in groups {
        let group = if g.fail_open {
            format!("{} (fail-open)", g.name)
        } else {
            g.name.clone()
        };
        for t in &g.targets {
            rows.push([
                group.clone(),
                t.id.clone(),
                t.port.to_string(),
                t.state.clone(),
                t.reason.clone(),
                t.connections.to_string(),
                t.task_arn.clone().unwrap_or_default(),
                t.description.clone(),
            ]);
        }
    }
    let widths: Vec<usize> = (0..8)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, v)| format!("{v:<w$}", w = widths[c]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

fn json(value: &impl Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(value) {
        Ok(json) => reply(StatusCode::OK, "application/json", json),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            e.to_string(),
        ),
    }
}

/// A write goes ahead only if [`auth::authorize_write`] says so.
fn refuse_write(req: &Request<Incoming>, admin: &AdminService) -> Option<Response<Full<Bytes>>> {
    let config = admin.reloader.config();
    let authorization = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let refusal = auth::authorize_write(
        admin.addr,
        config.load_balancer.admin_token.as_ref(),
        authorization,
    )
    .err()?;
    tracing::warn!(
        "admin API: {} {} refused: {refusal}",
        req.method(),
        req.uri().path()
    );
    Some(match refusal {
        auth::Refusal::Unauthorized => {
            let mut r = reply(
                StatusCode::UNAUTHORIZED,
                "text/plain",
                format!("{refusal}\n"),
            );
            r.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"tether admin\""),
            );
            r
        }
        auth::Refusal::NoTokenOffLoopback => {
            reply(StatusCode::FORBIDDEN, "text/plain", format!("{refusal}\n"))
        }
    })
}

async fn handle(
    req: Request<Incoming>,
    admin: Arc<AdminService>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/") => {
            let mut r = reply(StatusCode::OK, "text/html; charset=utf-8", status::PAGE);
            // The page holds no secret, but it must not be framed by another site.
            r.headers_mut().insert(
                http::header::X_FRAME_OPTIONS,
                http::HeaderValue::from_static("DENY"),
            );
            r
        }
        (&Method::GET, "/status") => {
            let routing = admin.reloader.routing.load();
            json(&status::snapshot(
                &admin.reloader.config().load_balancer.name,
                &routing,
                &admin.listeners,
                &admin.discovery.snapshot(),
                std::time::SystemTime::now(),
            ))
        }
        (&Method::GET, "/healthz") => reply(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            crate::metrics::CONTENT_TYPE,
            admin.metrics.render(),
        ),
        (&Method::GET, "/targets") => json(&describe(&admin.reloader.routing.load())),
        (&Method::POST, "/reload") => match refuse_write(&req, &admin) {
            Some(refused) => refused,
            None => match admin.reloader.reload() {
                Ok(summary) => reply(StatusCode::OK, "text/plain", format!("{summary}\n")),
                Err(e) => reply(StatusCode::BAD_REQUEST, "text/plain", format!("{e}\n")),
            },
        },
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    })
}

pub struct AdminService {
    /// The admin listener, bound when the server was built (so that a port in use
    /// fails the start, and port 0 is known before serving); taken by `start`.
    listener: parking_lot::Mutex<Option<std::net::TcpListener>>,
    pub addr: SocketAddr,
    reloader: Reloader,
    /// The listeners as bound, in config order (for the status page).
    listeners: Vec<(Protocol, SocketAddr)>,
    discovery: DiscoveryStatus,
    metrics: Metrics,
}

impl AdminService {
    /// Binds the admin address (port 0: any free port; see [`AdminService::addr`]).
    /// `listeners` are the proxy's listeners as bound; `discovery` what the
    /// discovery loops last saw. The socket has `SO_REUSEPORT`, so that the new
    /// process of an upgrade (`upgrade`) binds it while the old one still serves;
    /// outside an upgrade a plain bind first makes a port in use an error, as for
    /// the listeners.
    pub fn bind(
        addr: SocketAddr,
        upgrade: bool,
        reloader: Reloader,
        listeners: Vec<(Protocol, SocketAddr)>,
        discovery: DiscoveryStatus,
        metrics: Metrics,
    ) -> std::io::Result<AdminService> {
        if !upgrade && addr.port() != 0 {
            drop(std::net::TcpListener::bind(addr)?);
        }
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        let listener = std::net::TcpListener::from(socket);
        listener.set_nonblocking(true)?;
        Ok(AdminService {
            addr: listener.local_addr()?,
            listener: parking_lot::Mutex::new(Some(listener)),
            reloader,
            listeners,
            discovery,
            metrics,
        })
    }
}

#[async_trait]
impl BackgroundService for AdminService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(listener) = self.listener.lock().take() else {
            return;
        };
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("admin API cannot listen on {}: {e}", self.addr);
                return;
            }
        };
        let me = Arc::new(AdminService {
            listener: parking_lot::Mutex::new(None),
            addr: self.addr,
            reloader: self.reloader.clone(),
            listeners: self.listeners.clone(),
            discovery: self.discovery.clone(),
            metrics: self.metrics.clone(),
        });
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // Out of descriptors (or another accept error): back off
                        // instead of retrying at once, which would spin a core.
                        tracing::debug!("admin API accept: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.changed() => return,
            };
            let me = me.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(req, me.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}

/// Asks a running tether's admin API for target health (`tether targets`).
pub async fn fetch_targets(addr: SocketAddr) -> Result<Vec<GroupHealth>, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot reach the admin API on {addr}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::get("/targets")
        .header(http::header::HOST, addr.to_string())
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| format!("unexpected answer from {addr}: {e}"))
}
