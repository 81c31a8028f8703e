//! The refresher: fetches each JWKS endpoint (hyper's HTTP/1.1 client, rustls with
//! the system's roots for `https://`) and reads each `jwks_file`, off the data path,
//! and publishes what it gets in the key set. A fetch that fails keeps the keys in
//! force, logs a warning and is counted; the data path never waits on any of this.
//!
//! When: at once for a new key set; then every [`REFRESH_INTERVAL`]; after a failure
//! with keys in force, [`RETRY_AFTER_FAILURE`]; without keys yet, from 2 s doubling
//! up to a minute; and soon after a token names an unknown `kid`, at most once per
//! [`UNKNOWN_KID_MIN_INTERVAL`]. A `jwks_file` is read again when its modification
//! time or length changes (looked at every second), and on reload.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;

use super::keys::{self, parse_jwks, JwksError, JwksSource, KeySet, MAX_JWKS_BYTES};
use super::stats;

/// How often an endpoint's JWKS is fetched again while fetches succeed.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(300);

/// After a failed fetch, with keys in force: the next try.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// A token naming a `kid` no key has asks for a fetch, at most once per this long
/// per JWKS: made-up `kid`s cannot make tether hammer the identity provider.
pub const UNKNOWN_KID_MIN_INTERVAL: Duration = Duration::from_secs(5);

/// A fetch's whole time: connect, TLS handshake, request and body.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Without keys yet: the first retry, doubled after each failure up to the last.
const FIRST_RETRY: Duration = Duration::from_secs(2);
const LONGEST_RETRY: Duration = Duration::from_secs(60);

/// How often the key sets are looked at (files' modification times, due fetches).
const TICK: Duration = Duration::from_secs(1);

/// Why a fetch (or a file read) gave no JWKS.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("invalid JWKS URL {0}")]
    Url(String),
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("the endpoint answered {0}, not 200")]
    Status(u16),
    #[error("the response body failed or is over 150 KB: {0}")]
    Body(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot read the file: {0}")]
    File(std::io::Error),
    #[error(transparent)]
    Jwks(#[from] JwksError),
}

/// Keeps every live key set fresh until `stop` completes.
pub async fn run(stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        let sets = keys::live();
        let idle = sets.is_empty();
        let round = async {
            for set in sets {
                refresh(&set, Instant::now()).await;
            }
        };
        tokio::select! {
            _ = round => {}
            _ = &mut stop => return,
        }
        // Without key sets (no `jwt_validation` in the config) nothing ticks: a
        // reload that adds one wakes the refresher.
        let tick = async {
            if idle {
                std::future::pending::<()>().await
            } else {
                tokio::time::sleep(TICK).await
            }
        };
        tokio::select! {
            _ = tick => {}
            _ = keys::wake().notified() => {}
            _ = &mut stop => return,
        }
    }
}

/// Whether an endpoint is due for a fetch at `now`.
fn due(state: &keys::RefreshState, has_keys: bool, wanted: bool, now: Instant) -> bool {
    let Some(last) = state.last_attempt else {
        return true;
    };
    let since = now.saturating_duration_since(last);
    if wanted && since >= UNKNOWN_KID_MIN_INTERVAL {
        return true;
    }
    let wait = match (has_keys, state.failures) {
        (true, 0) => REFRESH_INTERVAL,
        (true, _) => RETRY_AFTER_FAILURE,
        (false, n) => FIRST_RETRY
            .saturating_mul(1 << n.saturating_sub(1).min(5))
            .min(LONGEST_RETRY),
    };
    since >= wait
}

/// Fetches or reads `set`'s JWKS if it is due, and publishes it.
async fn refresh(set: &Arc<KeySet>, now: Instant) {
    let result = match set.source() {
        JwksSource::Endpoint(url) => {
            let is_due = due(
                &set.refresh.lock(),
                !set.snapshot().is_empty(),
                set.refresh_wanted(),
                now,
            );
            if !is_due {
                return;
            }
            set.take_refresh_wanted();
            match tokio::time::timeout(FETCH_TIMEOUT, fetch(url)).await {
                Ok(Ok(body)) => parse_jwks(&body).map_err(FetchError::from),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(FetchError::Timeout(FETCH_TIMEOUT)),
            }
        }
        JwksSource::File(path) => {
            let stamp = std::fs::metadata(path)
                .and_then(|m| Ok((m.modified()?, m.len())))
                .ok();
            {
                let state = set.refresh.lock();
                if state.last_attempt.is_some() && state.file_stamp == stamp {
                    return;
                }
            }
            set.refresh.lock().file_stamp = stamp;
            match tokio::fs::read(path).await {
                Ok(bytes) => parse_jwks(&bytes).map_err(FetchError::from),
                Err(e) => Err(FetchError::File(e)),
            }
        }
    };
    let mut state = set.refresh.lock();
    state.last_attempt = Some(now);
    match result {
        Ok(jwks) => {
            state.failures = 0;
            stats().count_fetch(true);
            let n = jwks.len();
            if set.offer(jwks) {
                tracing::info!("JWKS {}: {n} key(s) in force", set.source());
            }
        }
        Err(e) => {
            state.failures = state.failures.saturating_add(1);
            stats().count_fetch(false);
            let kept = set.snapshot().len();
            tracing::warn!(
                "JWKS {}: {e}; keeping the {kept} key(s) in force",
                set.source()
            );
        }
    }
}

/// GETs `url` (`https://`, or `http://` on loopback as the config allows) and
/// returns its body, at most [`MAX_JWKS_BYTES`].
async fn fetch(url: &str) -> Result<Bytes, FetchError> {
    let uri: http::Uri = url.parse().map_err(|_| FetchError::Url(url.to_string()))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(FetchError::Url(url.to_string())),
    };
    let (Some(authority), Some(host)) = (uri.authority(), uri.host()) else {
        return Err(FetchError::Url(url.to_string()));
    };
    // `[::1]` as the URL writes it, `::1` as an address.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = http::Request::get(path)
        .header(http::header::HOST, authority.as_str())
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::USER_AGENT, "tether")
        .body(Empty::<Bytes>::new())
        .map_err(|_| FetchError::Url(url.to_string()))?;
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(FetchError::Connect)?;
    if !https {
        return get(TokioIo::new(tcp), request).await;
    }
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| FetchError::Url(url.to_string()))?;
    let config = client_config()
        .ok_or_else(|| FetchError::Tls(std::io::Error::other("no TLS client settings")))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(FetchError::Tls)?;
    get(TokioIo::new(tls), request).await
}

/// One HTTP/1.1 exchange on `io`: the body of a 200.
async fn get<I>(io: I, request: http::Request<Empty<Bytes>>) -> Result<Bytes, FetchError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    // The connection's task ends with the exchange (the sender is dropped).
    tokio::spawn(conn);
    let response = sender.send_request(request).await?;
    if response.status() != http::StatusCode::OK {
        return Err(FetchError::Status(response.status().as_u16()));
    }
    Limited::new(response.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| FetchError::Body(e.to_string()))
}

/// rustls with the system's roots (as targets' HTTPS without `ca_file`), made once;
/// `None` if rustls refused the settings (it does not with ring's defaults).
fn client_config() -> Option<Arc<rustls::ClientConfig>> {
    static CONFIG: std::sync::OnceLock<Option<Arc<rustls::ClientConfig>>> =
        std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .ok()?
            .with_root_certificates(roots)
            .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some(Arc::new(config))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetches_are_due_as_the_schedule_says() {
        let t0 = Instant::now();
        let st = |last: Option<Instant>, failures| keys::RefreshState {
            last_attempt: last,
            failures,
            file_stamp: None,
        };
        let after = |d: Duration| t0 + d;
        // A new set: at once.
        assert!(due(&st(None, 0), false, false, t0));
        // Good keys: every 5 minutes.
        assert!(!due(
            &st(Some(t0), 0),
            true,
            false,
            after(Duration::from_secs(299))
        ));
        assert!(due(&st(Some(t0), 0), true, false, after(REFRESH_INTERVAL)));
        // An unknown kid: soon, but not sooner than the limit.
        assert!(!due(
            &st(Some(t0), 0),
            true,
            true,
            after(Duration::from_secs(4))
        ));
        assert!(due(
            &st(Some(t0), 0),
            true,
            true,
            after(UNKNOWN_KID_MIN_INTERVAL)
        ));
        // Failed with keys: 30 s.
        assert!(!due(
            &st(Some(t0), 1),
            true,
            false,
            after(Duration::from_secs(29))
        ));
        assert!(due(
            &st(Some(t0), 1),
            true,
            false,
            after(RETRY_AFTER_FAILURE)
        ));
        // Failed without keys: 2 s, 4 s, … up to a minute.
        assert!(due(
            &st(Some(t0), 1),
            false,
            false,
            after(Duration::from_secs(2))
        ));
        assert!(!due(
            &st(Some(t0), 2),
            false,
            false,
            after(Duration::from_secs(3))
        ));
        assert!(due(
            &st(Some(t0), 2),
            false,
            false,
            after(Duration::from_secs(4))
        ));
        assert!(!due(
            &st(Some(t0), 30),
            false,
            false,
            after(Duration::from_secs(59))
        ));
        assert!(due(&st(Some(t0), 30), false, false, after(LONGEST_RETRY)));
    }
}
