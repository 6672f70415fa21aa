//! The droplet host: serves many WebAssembly droplets from one process.
//!
//! A request is routed ([`router`]) to its droplet ([`droplets`]), checked
//! against the droplet's policy and run in a fresh instance under its budget
//! ([`dispatch`], [`runtime`]); the droplet reaches the host through the
//! imports in [`imports`]. Every failure becomes one documented status and
//! JSON body ([`error`]).

pub mod admin;
pub mod app;
pub mod cache;
pub mod client;
pub mod contract;
pub mod dispatch;
pub mod droplets;
pub mod error;
pub mod imports;
pub mod jwt;
pub mod kv;
pub mod manifest;
pub mod prometheus;
pub mod registry;
pub mod router;
pub mod runtime;
pub mod scaffold;
pub mod server;
pub mod telemetry;
pub mod watch;
