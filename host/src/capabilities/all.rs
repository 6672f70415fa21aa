//! The host side of the WIT world's imports: one module per interface, each
//! a self-contained capability.
//!
//! A capability has two halves. Its host-wide half (settings and shared
//! handles, such as the kv backend) lives in [`Capabilities`], built once
//! at start-up. Its per-call half (such as the droplet's kv namespace and
//! the call's deadline) is made by the capability's `for_call` from the
//! [`CallContext`] — the droplet's version and manifest and the request —
//! and lives in [`Imports`], inside the call's `Store`, so it is fresh for
//! every request and dropped with it. Each module implements its
//! interface's generated `Host` trait on its own per-call state, and
//! [`add_to_linker`] registers each interface with one line.
//!
//! Adding a capability: its WIT interface, its module here (settings,
//! `for_call`, `Host` impl), one field in [`Capabilities`] and [`Imports`],
//! one line in [`Capabilities::for_call`] and in [`add_to_linker`], its SDK
//! module, its tests (see `CONTRIBUTING.md`).

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use super::call_context::CallContext;
use super::outbound::access as outbound;
use super::response_body as body;
use super::{auth, config, kv, log};
use crate::bindings::fp::droplet as wit;

/// The host-wide half of every capability, built once from the host's
/// settings.
pub struct Capabilities {
    /// `fp:droplet/kv`: the backend and its limits.
    pub kv: kv::KvCapability,
    /// `fp:droplet/auth`: the host's token verifier.
    pub auth: auth::AuthCapability,
    /// `fp:droplet/response-body`: the host-wide budget of response bytes.
    pub body: body::BodyCapability,
    /// `wasi:http/outgoing-handler`: the process's outbound client.
    pub outbound: outbound::OutboundCapability,
}

impl Capabilities {
    /// The per-call state of every capability, for one call.
    pub fn for_call(&self, call: CallContext<'_>) -> Imports {
        Imports {
            log: log::for_call(&call),
            config: config::for_call(&call),
            kv: self.kv.for_call(&call),
            body: self.body.for_call(),
            outbound: self.outbound.for_call(&call),
            auth: self.auth.for_call(call.caller),
        }
    }
}

/// Per-call state behind the `kv`, `log`, `auth`, `config` and
/// `response-body` imports.
pub struct Imports {
    /// Where this call's log lines (and stdout/stderr) go.
    pub log: Arc<log::GuestLog>,
    /// The droplet's resolved `[config]` table, shared by all its calls.
    pub config: config::ConfigAccess,
    /// The droplet's key-value namespace.
    pub kv: kv::KvAccess,
    /// This request's caller and the host's verifier.
    pub auth: auth::AuthAccess,
    /// The response body handed over so far.
    pub body: body::ResponseBody,
    /// The droplet's allowlist and caps for outbound HTTP.
    pub outbound: outbound::OutboundAccess,
}

/// A store's data that carries a call's [`Imports`].
pub trait HasImports: Send + 'static {
    /// This call's imports.
    fn imports(&mut self) -> &mut Imports;
}

/// Registers every interface of the world's imports: one line each.
pub fn add_to_linker<T: HasImports>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wit::types::add_to_linker::<T, HasSelf<Imports>>(linker, |state| state.imports())?;
    wit::log::add_to_linker::<T, HasSelf<Arc<log::GuestLog>>>(linker, |state| {
        &mut state.imports().log
    })?;
    wit::config::add_to_linker::<T, HasSelf<config::ConfigAccess>>(linker, |state| {
        &mut state.imports().config
    })?;
    wit::kv::add_to_linker::<T, HasSelf<kv::KvAccess>>(linker, |state| &mut state.imports().kv)?;
    wit::auth::add_to_linker::<T, HasSelf<auth::AuthAccess>>(linker, |state| {
        &mut state.imports().auth
    })?;
    body::add_to_linker(linker, |state| &mut state.imports().body)?;
    Ok(())
}

/// `fp:droplet/types` holds only the request and response records; it has
/// no functions to implement.
impl wit::types::Host for Imports {}
