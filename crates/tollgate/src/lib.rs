//! Tollgate: a self-hosted API gateway that serves the contract of Tencent Cloud API Gateway.
//!
//! The binary is a thin layer over this library: [`config`] reads and validates a file,
//! [`snapshot`] compiles it into the runtime model, [`server`] accepts connections and hands
//! each request to [`pipeline::Gateway`], which routes it ([`route`]) and serves it from a
//! backend ([`backend`]). Every error a client can get from the gateway itself is in
//! [`error::GatewayError`].

pub mod access_log;
pub mod auth;
pub mod backend;
pub mod balance;
pub mod clock;
pub mod config;
pub mod counters;
pub mod discovery;
pub mod error;
pub mod log_throttle;
pub mod oauth;
pub mod pipeline;
pub mod route;
pub mod server;
pub mod snapshot;
pub mod tls;

/// Returns the JSON Schema of the configuration file, as kept in `schema/`.
pub fn config_schema() -> String {
    let schema = schemars::schema_for!(config::Config);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    text.push('\n');
    text
}
