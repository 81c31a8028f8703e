//! tether: a sticky-session, websocket-aware HTTP load balancer that stands in for an
//! AWS Application Load Balancer. See the README for the config reference.
#![deny(rust_2018_idioms)]
#![deny(unsafe_code)]

pub mod admin;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod exchange;
pub mod forwarded;
pub mod headers;
pub mod health;
pub mod http1;
pub mod http2;
pub mod lifecycle;
pub mod reload;
pub mod routing;
pub mod rules;
pub mod server;
pub mod settings;
pub mod socketio;
pub mod sticky;
pub mod target_group;
pub mod tls;
pub mod websocket;
