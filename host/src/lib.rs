//! The droplet host: serves many WebAssembly droplets from one process.
//!
//! The folders are the layers a request goes down through, and each layer
//! only calls the ones below it:
//!
//! - [`http`]: the edge — connections, the hyper service, routing, the
//!   host's own endpoints, the access log; beside it [`jobs`], the calls
//!   no request waits for (schedules and queue consumers);
//! - [`admin`] and [`dispatch`]: what a routed request becomes — the admin
//!   API and dashboard, or a droplet call (and its in-process twin);
//! - [`droplets`]: the table of current versions and everything that
//!   changes it (manifests, loading, the deployment store, the fleet);
//! - [`guest`]: running a component — engine, linker, one call in a fresh
//!   instance, its scheduling and deadline;
//! - [`capabilities`]: the host imports a guest may be granted, one module
//!   each behind one trait;
//! - [`storage`] and [`identity`]: kv backends and the database; tokens and
//!   who may call what;
//! - [`ops`]: what every layer may use — logs, metrics, telemetry,
//!   shutdown.
//!
//! [`app`] builds all of it once at start-up; [`error`] is the one error
//! every handler answers with; [`bindings`] is the WIT world's generated
//! vocabulary, shared by the guest runtime and the capabilities.
//! `CONTRIBUTING.md` has the map.

pub mod admin;
pub mod app;
pub mod bindings;
pub mod capabilities;
pub mod dispatch;
pub mod droplets;
pub mod error;
pub mod guest;
pub mod http;
pub mod identity;
pub mod jobs;
pub mod ops;
pub mod storage;
#[cfg(test)]
pub mod testing;
