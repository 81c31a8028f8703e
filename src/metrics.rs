//! tether's metrics, named after ALB's CloudWatch metrics, for `GET /metrics`.
//!
//! The data path only adds to atomics it already holds ([`crate::stats`]): a
//! listener's counters in its [`ListenerStats`] (reached from the engine's
//! `ListenerInfo`), a target's in its `TargetStats` (reached from the exchange's
//! target). Nothing on the data path
//! looks a metric up by its labels. A scrape walks the routing snapshot and encodes
//! what it finds with `prometheus-client`'s Prometheus text encoder, so a target
//! that leaves its group leaves the exposition with it, and gauges (healthy hosts,
//! open websockets, Socket.IO sessions) are read as they are at that moment.
//!
//! Names are CloudWatch's in Prometheus style with a `tether_` prefix
//! (`HTTPCode_ELB_5XX_Count` → `tether_httpcode_elb_5xx_count_total`); the HELP
//! text starts with the CloudWatch name. Gauges drop CloudWatch's `Count`
//! (`ActiveConnectionCount` → `tether_active_connections`, `HealthyHostCount` →
//! `tether_healthy_hosts`): `promtool` refuses a `_count` suffix on anything but a
//! histogram or summary. Labels are CloudWatch's dimensions:
//! `load_balancer` everywhere, `listener` (`HTTP:80`) for what the load balancer
//! counts, `target_group` and `target` (`ip:port`) for what targets do.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::access_log::AccessLog;
use crate::discovery::DiscoveryStatus;
use crate::health::State;
use crate::routing::SharedRouting;
use crate::settings::Protocol;
use crate::shared_state::LOOKUP_RESULTS;
use crate::stats::{load, ListenerStats, ReloadStats, Stall, RELOAD_RESULTS};
use crate::target_group::{Target, TargetGroup};

/// Everything `GET /metrics` shows.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub load_balancer: Arc<str>,
    /// Each listener's label (`HTTP:80`) and counters, in config order.
    pub listeners: Vec<(String, Arc<ListenerStats>)>,
    pub routing: SharedRouting,
    pub discovery: DiscoveryStatus,
    pub reloads: Arc<ReloadStats>,
    pub access_log: Option<Arc<AccessLog>>,
    /// Each mutual TLS listener's label and client certificate refusals.
    pub mtls: Vec<(String, Arc<crate::listener::mtls::Refusals>)>,
}

impl Metrics {
    /// The listener label: protocol and port, as ALB names a listener.
    pub fn listener_label(protocol: Protocol, port: u16) -> String {
        format!("{}:{port}", protocol.as_str())
    }

    /// The exposition, in Prometheus's text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
            tracing::error!("metrics encoding failed: {e}");
        }
        out
    }
}

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

type Labels = Vec<(&'static str, Cow<'static, str>)>;

/// One metric family under construction: its samples, then encoded at once.
struct Family<T> {
    name: &'static str,
    help: &'static str,
    samples: Vec<(Labels, T)>,
}

impl<T> Family<T> {
    fn new(name: &'static str, help: &'static str) -> Self {
        Family {
            name,
            help,
            samples: Vec::new(),
        }
    }
}

fn encode_counters(
    encoder: &mut DescriptorEncoder<'_>,
    family: Family<u64>,
) -> Result<(), fmt::Error> {
    let mut metric =
        encoder.encode_descriptor(family.name, family.help, None, MetricType::Counter)?;
    for (labels, v) in &family.samples {
        ConstCounter::new(*v).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

fn encode_gauges(
    encoder: &mut DescriptorEncoder<'_>,
    family: Family<i64>,
) -> Result<(), fmt::Error> {
    let mut metric =
        encoder.encode_descriptor(family.name, family.help, None, MetricType::Gauge)?;
    for (labels, v) in &family.samples {
        ConstGauge::new(*v).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

impl Metrics {
    fn lb(&self) -> Labels {
        vec![("load_balancer", Cow::Owned(self.load_balancer.to_string()))]
    }

    fn listener_families(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        type Get = fn(&ListenerStats) -> u64;
        let counters: [(&'static str, &'static str, Get); 15] = [
            ("tether_request_count", "RequestCount: requests the load balancer answered or forwarded.", |s| load(&s.requests)),
            ("tether_new_connection_count", "NewConnectionCount: client connections opened.", |s| load(&s.new_connections)),
            ("tether_rejected_connection_count", "RejectedConnectionCount: client connections refused (tether sets no connection limit, so this stays 0).", |s| load(&s.rejected_connections)),
            ("tether_processed_bytes", "ProcessedBytes: bytes from and to clients (heads and bodies, websocket frames included).", |s| load(&s.processed_bytes)),
            ("tether_httpcode_elb_3xx_count", "HTTPCode_ELB_3XX_Count: 3XX responses of the load balancer's own (redirects).", |s| load(&s.elb[0])),
            ("tether_httpcode_elb_4xx_count", "HTTPCode_ELB_4XX_Count: 4XX responses of the load balancer's own.", |s| load(&s.elb[1])),
            ("tether_httpcode_elb_5xx_count", "HTTPCode_ELB_5XX_Count: 5XX responses of the load balancer's own.", |s| load(&s.elb[2])),
            ("tether_httpcode_elb_502_count", "HTTPCode_ELB_502_Count: 502 responses of the load balancer's own.", |s| load(&s.elb_5xx[0])),
            ("tether_httpcode_elb_503_count", "HTTPCode_ELB_503_Count: 503 responses of the load balancer's own.", |s| load(&s.elb_5xx[1])),
            ("tether_httpcode_elb_504_count", "HTTPCode_ELB_504_Count: 504 responses of the load balancer's own.", |s| load(&s.elb_5xx[2])),
            ("tether_http_fixed_response_count", "HTTP_Fixed_Response_Count: fixed-response actions answered.", |s| load(&s.fixed_responses)),
            ("tether_http_redirect_count", "HTTP_Redirect_Count: redirect actions answered.", |s| load(&s.redirects)),
            ("tether_client_tls_negotiation_error_count", "ClientTLSNegotiationErrorCount: TLS connections refused by the listener's certificate or policy.", |s| load(&s.tls_negotiation_errors)),
            ("tether_desyncmitigationmode_noncompliant_request_count", "DesyncMitigationMode_NonCompliant_Request_Count: requests not compliant with RFC 7230 (acceptable, ambiguous or severe).", |s| load(&s.desync_non_compliant)),
            ("tether_non_sticky_request_count", "NonStickyRequestCount: requests to a sticky target group that got a new target because they carried no usable pin.", |s| load(&s.non_sticky)),
        ];
        for (name, help, get) in counters {
            let mut family = Family::new(name, help);
            for (label, stats) in &self.listeners {
                let mut labels = self.lb();
                labels.push(("listener", Cow::Owned(label.clone())));
                family.samples.push((labels, get(stats)));
            }
            encode_counters(encoder, family)?;
        }
        let mut stalls = Family::new(
            "tether_idle_timeout_closed",
            "Connections and HTTP/2 streams closed because a peer moved no byte within the idle timeout, by what stalled.",
        );
        for (label, stats) in &self.listeners {
            for stall in Stall::ALL {
                let mut labels = self.lb();
                labels.push(("listener", Cow::Owned(label.clone())));
                labels.push(("stalled", Cow::Borrowed(stall.name())));
                stalls.samples.push((labels, stats.stalls(stall)));
            }
        }
        encode_counters(encoder, stalls)?;
        let mut active = Family::new(
            "tether_active_connections",
            "ActiveConnectionCount: client connections open now.",
        );
        for (label, stats) in &self.listeners {
            let mut labels = self.lb();
            labels.push(("listener", Cow::Owned(label.clone())));
            active
                .samples
                .push((labels, stats.active_connections.load(Ordering::Relaxed)));
        }
        encode_gauges(encoder, active)
    }

    fn target_families(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let routing = self.routing.load();
        let groups = &routing.groups;
        let group_labels = |g: &TargetGroup| {
            let mut l = self.lb();
            l.push(("target_group", Cow::Owned(g.name.clone())));
            l
        };
        let target_labels = |g: &TargetGroup, t: &Target| {
            let mut l = group_labels(g);
            l.push(("target", Cow::Owned(t.addr.to_string())));
            l
        };

        type Get = fn(&Target) -> u64;
        let counters: [(&'static str, &'static str, Get); 6] = [
            (
                "tether_request_count_per_target",
                "RequestCountPerTarget: requests sent to the target.",
                |t| t.requests(),
            ),
            (
                "tether_httpcode_target_2xx_count",
                "HTTPCode_Target_2XX_Count: 2XX responses from the target.",
                |t| t.stats.code(0),
            ),
            (
                "tether_httpcode_target_3xx_count",
                "HTTPCode_Target_3XX_Count: 3XX responses from the target.",
                |t| t.stats.code(1),
            ),
            (
                "tether_httpcode_target_4xx_count",
                "HTTPCode_Target_4XX_Count: 4XX responses from the target.",
                |t| t.stats.code(2),
            ),
            (
                "tether_httpcode_target_5xx_count",
                "HTTPCode_Target_5XX_Count: 5XX responses from the target.",
                |t| t.stats.code(3),
            ),
            (
                "tether_target_connection_error_count",
                "TargetConnectionErrorCount: connections to the target that could not be made.",
                |t| load(&t.stats.connection_errors),
            ),
        ];
        for (name, help, get) in counters {
            let mut family = Family::new(name, help);
            for g in groups.iter() {
                for t in g.all_targets() {
                    family.samples.push((target_labels(g, &t), get(&t)));
                }
            }
            encode_counters(encoder, family)?;
        }

        let mut metric = encoder.encode_descriptor(
            "tether_target_response_time_seconds",
            "TargetResponseTime: seconds from the request sent to the target to its response head.",
            None,
            MetricType::Histogram,
        )?;
        for g in groups.iter() {
            for t in g.all_targets() {
                let labels = target_labels(g, &t);
                let (sum, count, buckets) = t.stats.response_time.snapshot();
                metric
                    .encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
            }
        }

        let mut websockets = Family::new(
            "tether_websockets_open",
            "Open websockets (upgraded connections) on the target.",
        );
        for g in groups.iter() {
            for t in g.all_targets() {
                websockets
                    .samples
                    .push((target_labels(g, &t), t.websockets() as i64));
            }
        }
        encode_gauges(encoder, websockets)?;

        let mut healthy = Family::new(
            "tether_healthy_hosts",
            "HealthyHostCount: targets of the group that are healthy.",
        );
        let mut unhealthy = Family::new(
            "tether_unhealthy_hosts",
            "UnHealthyHostCount: registered targets of the group that are not healthy.",
        );
        let mut sessions = Family::new(
            "tether_socketio_sessions_pinned",
            "Socket.IO sessions pinned to a target by their sid (for clients without cookies).",
        );
        for g in groups.iter() {
            let all = g.targets();
            let up = all.iter().filter(|t| t.state().0 == State::Healthy).count() as i64;
            healthy.samples.push((group_labels(g), up));
            unhealthy
                .samples
                .push((group_labels(g), all.len() as i64 - up));
            if let Some(sio) = &g.socketio {
                sessions
                    .samples
                    .push((group_labels(g), sio.sessions.len() as i64));
            }
        }
        encode_gauges(encoder, healthy)?;
        encode_gauges(encoder, unhealthy)?;
        encode_gauges(encoder, sessions)
    }

    fn own_families(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let mut polls = Family::new(
            "tether_discovery_polls",
            "Discovery polls (ECS or a targets file) of the target group.",
        );
        let mut failures = Family::new(
            "tether_discovery_poll_failures",
            "Discovery polls of the target group that failed (the last good targets were kept).",
        );
        for (group, status) in self.discovery.snapshot() {
            let mut labels = self.lb();
            labels.push(("target_group", Cow::Owned(group)));
            polls.samples.push((labels.clone(), status.polls));
            failures.samples.push((labels, status.poll_failures));
        }
        encode_counters(encoder, polls)?;
        encode_counters(encoder, failures)?;

        let mut reloads = Family::new(
            "tether_config_reloads",
            "Config reloads (admin API or SIGHUP) by result: success, invalid_config, refused.",
        );
        for (result, count) in RELOAD_RESULTS.iter().zip(&self.reloads.counts) {
            let mut labels = self.lb();
            labels.push(("result", Cow::Borrowed(*result)));
            reloads.samples.push((labels, load(count)));
        }
        encode_counters(encoder, reloads)?;

        let (dropped, written) = self
            .access_log
            .as_ref()
            .map_or((0, 0), |log| (log.dropped(), log.written()));
        let mut family = Family::new(
            "tether_access_log_lines_dropped",
            "Access log lines dropped because the writer's queue was full or a write failed.",
        );
        family.samples.push((self.lb(), dropped));
        encode_counters(encoder, family)?;
        let mut family = Family::new("tether_access_log_lines", "Access log lines written.");
        family.samples.push((self.lb(), written));
        encode_counters(encoder, family)?;
        self.mtls_families(encoder)?;
        self.jwt_families(encoder)?;
        self.shared_state_families(encoder)
    }

    /// Mutual TLS refusals, when a listener verifies client certificates.
    fn mtls_families(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        if self.mtls.is_empty() {
            return Ok(());
        }
        let mut refused = Family::new(
            "tether_mtls_refused_handshakes",
            "ClientTLSNegotiationErrorCount's mutual TLS part: handshakes refused for the client certificate, by reason, in ALB's connection log names (ClientCertUntrusted, ClientCertExpired, ClientCertNotYetValid, ClientCertCrlHit, ClientCertTypeUnsupported, ClientCertInvalid, UnmappedConnectionError).",
        );
        for (label, refusals) in &self.mtls {
            for (reason, count) in crate::listener::mtls::REFUSAL_REASONS
                .iter()
                .zip(refusals.counts())
            {
                let mut labels = self.lb();
                labels.push(("listener", Cow::Owned(label.clone())));
                labels.push(("reason", Cow::Borrowed(*reason)));
                refused.samples.push((labels, count));
            }
        }
        encode_counters(encoder, refused)
    }

    /// `jwt_validation`'s families: results by reason, the verified-token cache, and
    /// JWKS fetches.
    fn jwt_families(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let stats = crate::jwt::stats();
        let families: [(&'static str, &'static str, &[&'static str], Vec<u64>); 3] = [
            (
                "tether_jwt_validations",
                "Bearer tokens checked by jwt_validation actions, by result: valid, or why the request got 401 (missing, malformed, bad_algorithm, unknown_kid, bad_signature, bad_issuer, expired, not_yet_valid, claim_mismatch).",
                &crate::jwt::RESULTS,
                stats.results().to_vec(),
            ),
            (
                "tether_jwt_cache_lookups",
                "Verified-token cache lookups of jwt_validation actions: hit (the signature was not checked again), miss.",
                &crate::jwt::CACHE_RESULTS,
                stats.cache_lookups().to_vec(),
            ),
            (
                "tether_jwks_fetches",
                "JWKS fetches (jwks_endpoint) and reads (jwks_file): success, failure (the keys in force were kept).",
                &crate::jwt::FETCH_RESULTS,
                stats.fetches().to_vec(),
            ),
        ];
        for (name, help, results, counts) in families {
            let mut family = Family::new(name, help);
            for (result, count) in results.iter().zip(counts) {
                let mut labels = self.lb();
                labels.push(("result", Cow::Borrowed(*result)));
                family.samples.push((labels, count));
            }
            encode_counters(encoder, family)?;
        }
        Ok(())
    }

    /// The shared store's families, when one is configured.
    fn shared_state_families(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let routing = self.routing.load();
        let Some(shared) = &routing.shared else {
            return Ok(());
        };
        let mut lookups = Family::new(
            "tether_shared_state_lookups",
            "Socket.IO sids this replica did not know, looked up in the shared store, by result: hit, miss, error (the store down), timeout (no answer within lookup_timeout).",
        );
        for (result, count) in LOOKUP_RESULTS.iter().zip(shared.lookups()) {
            let mut labels = self.lb();
            labels.push(("result", Cow::Borrowed(*result)));
            lookups.samples.push((labels, count));
        }
        encode_counters(encoder, lookups)?;
        let mut published = Family::new(
            "tether_shared_state_pins_published",
            "Socket.IO sessions this replica published to the shared store.",
        );
        published.samples.push((self.lb(), shared.published()));
        encode_counters(encoder, published)?;
        let mut failures = Family::new(
            "tether_shared_state_write_failures",
            "Writes to the shared store that failed, timed out, or were not sent because it was down.",
        );
        failures.samples.push((self.lb(), shared.write_failures()));
        encode_counters(encoder, failures)?;
        let mut up = Family::new(
            "tether_shared_state_up",
            "1 when the shared store (Redis) answered its last command, else 0.",
        );
        up.samples.push((self.lb(), i64::from(shared.is_up())));
        encode_gauges(encoder, up)
    }
}

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        self.listener_families(&mut encoder)?;
        self.target_families(&mut encoder)?;
        self.own_families(&mut encoder)
    }
}
