//! The droplet host: serves many WebAssembly droplets from one process.
//!
//! A connection is accepted by [`server`]; each request goes through
//! [`service`] (trace id, routing by [`router`], the one error edge, access
//! log) to a host endpoint ([`endpoints`]), the admin API ([`admin`]), a
//! droplet's contract endpoint ([`contract`]) or the droplet call
//! ([`dispatch`]): [`policy`] decides who may call, the capabilities in
//! [`imports`] build the call's state, and [`runtime`] runs it in a fresh
//! instance, scheduled by [`scheduler`]. The droplets and their versions
//! live in [`droplets`]; kv storage in [`kv`]. `CONTRIBUTING.md` has the map.

pub mod access_log;
pub mod admin;
pub mod app;
pub mod bindings;
pub mod body;
pub mod cache;
pub mod client;
pub mod connection;
pub mod contract;
pub mod database;
pub mod deadline;
pub mod dispatch;
pub mod droplets;
pub mod endpoints;
pub mod error;
pub mod fleet;
pub mod fs;
pub mod guest_http;
pub mod headers;
pub mod hermetic;
pub mod imports;
pub mod internal;
pub mod json_log;
pub mod jwt;
pub mod kv;
pub mod log_tail;
pub mod log_writer;
pub mod manifest;
pub mod outbound;
pub mod policy;
pub mod prometheus;
pub mod registry;
pub mod router;
pub mod runtime;
pub mod scaffold;
pub mod scheduler;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod telemetry;
pub mod watch;
