//! tether: a sticky-session, websocket-aware HTTP load balancer that stands in for an
//! AWS Application Load Balancer. See the README for the config reference.
//!
//! The library exists for the `tether` binary, its integration tests and its
//! benchmarks: `config`, `server` and `demo` are what the binary runs; the data-path
//! modules (`rules`, `sticky`, `target_group`, `http1`, …) are public for the criterion
//! benchmarks. The rest is private.
#![deny(rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod access_log;
pub mod admin;
mod alb_regex;

pub mod config;
pub mod demo;
pub mod discovery;
mod drain;
pub mod exchange;
mod forwarded;
pub mod headers;
pub mod health;
pub mod http1;
mod http2;
pub mod jwt;
mod lifecycle;
pub mod listener;
pub mod log_limit;
pub mod metrics;
mod observe;
mod reload;
pub mod routing;
pub mod rules;
pub mod server;
pub mod settings;
pub mod shared_state;
mod shutdown;
pub mod socketio;
pub mod stats;
pub mod sticky;
pub mod target;
pub mod target_group;
pub use listener::tls;
mod tls_session;
mod transform;
pub mod upgrade;
mod websocket;
