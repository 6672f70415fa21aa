//! End-to-end tests: the real `droplet` binary on a loopback port, real
//! components built from `examples/`, real HTTP.
//!
//! Run them with `cargo xtask test`, which builds the example droplets first.

mod pg;
mod support;

mod admin;
mod auth;
mod browser;
mod conformance;
mod conformance_python;
mod contract;
mod dashboard;
mod fleet;
mod hostile;
mod jobs;
mod kv;
mod kv_conformance;
mod kv_shared_reads;
mod limits;
mod loading;
mod operator;
mod outbound;
mod proxy;
mod queue_conformance;
mod replay;
mod rollout;
mod rollout_fleet;
mod sdk;
mod serving;
mod shutdown;
mod streaming;
mod swap;
