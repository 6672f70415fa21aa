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

use tokio::time::Instant;

use self::log::GuestLog;
use crate::jwt::{VerifiedClaims, Verifier};
use crate::kv::{KvBackend, Limits};

/// Per-call state behind the `kv`, `log`, `auth` and `config` imports.
pub struct Imports {
    /// Where this call's log lines (and stdout/stderr) go.
    pub log: Arc<GuestLog>,
    /// The droplet's resolved `[config]` table, shared by all its calls.
    pub config: Arc<BTreeMap<String, String>>,
    /// The droplet's key-value namespace.
    pub kv: KvAccess,
    /// This request's caller and the host's verifier.
    pub auth: AuthAccess,
}

/// What the `kv` import may reach for one call.
pub struct KvAccess {
    /// The store.
    pub backend: Arc<dyn KvBackend>,
    /// The droplet's namespace, chosen by the host.
    pub namespace: Arc<str>,
    /// Quota and value limit.
    pub limits: Limits,
    /// The call's deadline: a kv call still waiting then answers `unavailable`.
    pub deadline: Instant,
}

/// What the `auth` import knows for one call.
pub struct AuthAccess {
    /// The verified claims of the request's bearer token, if valid.
    pub caller: Option<Arc<VerifiedClaims>>,
    /// The host's verifier, if keys are configured.
    pub verifier: Option<Arc<Verifier>>,
}

/// `fp:droplet/types` holds only the request and response records; it has
/// no functions to implement.
impl crate::runtime::bindings::fp::droplet::types::Host for Imports {}
