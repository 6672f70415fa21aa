//! The host side of the WIT world's imports: one module per interface.
//!
//! [`Imports`] is the per-call state those interfaces need. It lives in the
//! call's `Store`, so it is made fresh for every request and dropped with it.

pub mod auth;
pub mod config;
pub mod kv;
pub mod log;

use std::collections::BTreeMap;
use std::sync::Arc;

use self::log::GuestLog;

/// Per-call state behind the `kv`, `log`, `auth` and `config` imports.
pub struct Imports {
    /// Where this call's log lines (and stdout/stderr) go.
    pub log: Arc<GuestLog>,
    /// The droplet's resolved `[config]` table, shared by all its calls.
    pub config: Arc<BTreeMap<String, String>>,
}

/// `fp:droplet/types` holds only the request and response records; it has
/// no functions to implement.
impl crate::runtime::bindings::fp::droplet::types::Host for Imports {}
