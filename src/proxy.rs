//! The pingora `ProxyHttp` implementation: glue between pingora's hooks and tether's
//! modules (rules, target groups, forwarded headers). Logic lives in those modules.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::header;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora::{ErrorSource, ErrorType};

use crate::config::Protocol;
use crate::forwarded;
use crate::routing::SharedRouting;
use crate::rules::{Action, RedirectInput, RequestInfo};
use crate::target_group::{Outstanding, TargetGroup};

/// One listener's proxy logic.
pub struct Proxy {
    listener: usize,
    port: u16,
    protocol: Protocol,
    routing: SharedRouting,
}

impl Proxy {
    pub fn new(
        listener: usize,
        addr: SocketAddr,
        protocol: Protocol,
        routing: SharedRouting,
    ) -> Self {
        Proxy {
            listener,
            port: addr.port(),
            protocol,
            routing,
        }
    }
}

/// Per-request state.
#[derive(Default)]
pub struct RequestCtx {
    group: Option<Arc<TargetGroup>>,
    /// Counts the request on its target until the context is dropped (websockets
    /// included: the request lives as long as the tunnel).
    outstanding: Option<Outstanding>,
}

fn client_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// A response made by the load balancer itself: current `Date`, no engine
/// placeholders.
fn lb_response(status: u16, content_type: &str, body_len: usize) -> Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(status, Some(5))?;
    resp.insert_header(header::SERVER, "tether")?;
    resp.insert_header(
        header::DATE,
        httpdate::fmt_http_date(std::time::SystemTime::now()),
    )?;
    resp.insert_header(header::CONTENT_TYPE, content_type)?;
    resp.insert_header(header::CONTENT_LENGTH, body_len.to_string())?;
    Ok(resp)
}

/// ALB-style HTML error page.
fn error_page(status: u16) -> Bytes {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or(match status {
            460 => "Client Closed Request",
            463 => "Too Many Forwarded Addresses",
            _ => "Error",
        });
    Bytes::from(format!(
        "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
    ))
}

async fn respond(
    session: &mut Session,
    status: u16,
    content_type: &str,
    body: Bytes,
    extra: Option<(header::HeaderName, String)>,
) -> Result<()> {
    let mut resp = lb_response(status, content_type, body.len())?;
    if let Some((name, value)) = extra {
        resp.insert_header(name, value)?;
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), body.is_empty() || head_only)
        .await?;
    if !body.is_empty() && !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// Ends the request with an LB error and closes the connection.
async fn reject(session: &mut Session, status: u16) -> Result<bool> {
    session.set_keepalive(None);
    respond(session, status, "text/html", error_page(status), None).await?;
    Ok(true)
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    fn init_downstream_modules(&self, _modules: &mut HttpModules) {
        // No response compression module: tether passes bodies through untouched.
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let routing = self.routing.load();
        // ALB idle timeout: a client silent this long (between requests, in a body, or
        // on a websocket) is closed.
        session.set_read_timeout(Some(routing.idle_timeout));
        session.set_keepalive(Some(routing.idle_timeout.as_secs()));

        let req = session.req_header();
        if req.method == http::Method::TRACE {
            return reject(session, 405).await;
        }
        if forwarded::forwarded_for_count(req.headers.get_all("x-forwarded-for").iter())
            > forwarded::MAX_FORWARDED_FOR
        {
            return reject(session, 463).await;
        }

        let host = req
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()));
        let info = RequestInfo {
            method: req.method.as_str(),
            path: req.uri.path(),
            query: req.uri.query(),
            host,
            headers: &req.headers,
            source_ip: client_ip(session),
        };
        let Some(rules) = routing.listeners.get(self.listener) else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "listener has no rules",
            ));
        };
        let (action, _priority) = rules.evaluate(&info);
        match action {
            Action::Forward(forward) => {
                ctx.group = Some(forward.pick().clone());
                Ok(false)
            }
            Action::FixedResponse(fixed) => {
                let body = Bytes::from(fixed.body.clone());
                respond(session, fixed.status, &fixed.content_type, body, None).await?;
                Ok(true)
            }
            Action::Redirect(redirect) => {
                let location = redirect.location(&RedirectInput {
                    protocol: self.protocol.as_str(),
                    host: info.host.unwrap_or(""),
                    port: self.port,
                    path: info.path,
                    query: info.query.unwrap_or(""),
                });
                let status = redirect.status;
                let body = error_page(status);
                respond(
                    session,
                    status,
                    "text/html",
                    body,
                    Some((header::LOCATION, location)),
                )
                .await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let Some(group) = ctx.group.as_ref() else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "no target group chosen",
            ));
        };
        let Some(target) = group.select(None) else {
            return Err(Error::explain(
                ErrorType::HTTPStatus(503),
                format!("target group {} has no registered targets", group.name),
            ));
        };
        let mut peer = HttpPeer::new(target.addr, false, String::new());
        let idle = self.routing.load().idle_timeout;
        peer.options.connection_timeout = Some(group.connect_timeout);
        peer.options.read_timeout = Some(idle);
        peer.options.write_timeout = Some(idle);
        ctx.outstanding = Some(Outstanding::new(target.clone()));
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(ip) = client_ip(session) {
            let xff = forwarded::append_forwarded_for(
                upstream.headers.get_all("x-forwarded-for").iter(),
                ip,
            );
            upstream.insert_header("x-forwarded-for", xff)?;
        }
        let proto = match self.protocol {
            Protocol::Http => "http",
            Protocol::Https => "https",
        };
        upstream.insert_header("x-forwarded-proto", proto)?;
        upstream.insert_header("x-forwarded-port", self.port.to_string())?;
        let trace = forwarded::trace_id(upstream.headers.get("x-amzn-trace-id"));
        upstream.insert_header("x-amzn-trace-id", trace)?;
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        _ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = match (e.etype(), e.esource()) {
            (ErrorType::HTTPStatus(code), _) => *code,
            (ErrorType::ConnectTimedout, _) => 504,
            (ErrorType::ReadTimedout | ErrorType::WriteTimedout, ErrorSource::Upstream) => 504,
            (ErrorType::ReadTimedout, ErrorSource::Downstream) => 408,
            (_, ErrorSource::Upstream) => 502,
            (
                ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed,
                ErrorSource::Downstream,
            ) => 0, // the client is gone (ALB logs 460)
            (_, ErrorSource::Downstream) => 400,
            (_, ErrorSource::Internal | ErrorSource::Unset) => 500,
        };
        if code > 0 {
            session.set_keepalive(None);
            let already = session
                .response_written()
                .is_some_and(|r| !r.status.is_informational() || r.status == 101);
            if !already {
                if let Err(err) = respond(session, code, "text/html", error_page(code), None).await
                {
                    tracing::debug!("cannot send {code} to the client: {err}");
                }
            }
        }
        FailToProxy {
            error_code: if code == 0 { 460 } else { code },
            can_reuse_downstream: false,
        }
    }
}
