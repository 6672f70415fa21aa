//! End-to-end tests: the real `droplet` binary on a loopback port, real
//! components built from `examples/`, real HTTP.
//!
//! Run them with `cargo xtask test`, which builds the example droplets first.

mod support;

mod admin;
mod auth;
mod contract;
mod hostile;
mod kv;
mod limits;
mod loading;
mod operator;
mod serving;
mod shutdown;
mod swap;
