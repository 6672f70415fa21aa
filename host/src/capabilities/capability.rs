//! [`Capability`]: what a host capability is, so that adding one is one
//! file and one line in the registry ([`super::registry`]).
//!
//! A capability has three halves, as Spin's factors do, without their
//! crate-per-capability weight:
//! - the **host-wide** half is the type implementing the trait (its
//!   settings and shared handles: the kv backend, the token verifier),
//!   built once at start-up;
//! - the **grant** is what one droplet version's manifest makes of it,
//!   checked and prepared once at load ([`Capability::grant`]): the kv
//!   quota, the parsed outbound allowlist, the resolved `[config]`;
//! - the **access** is its per-call state ([`Capability::for_call`]),
//!   kept in the call's store and dropped with it, so nothing outlives the
//!   request.

use wasmtime::component::Linker;
use wasmtime_wasi_http::WasiHttpView;

use super::call_context::CallContext;
use crate::droplets::manifest::{Manifest, ManifestError};

/// What every capability may ask of the call's store data: `wasi:http`'s
/// view (the outbound capability is wasmtime-wasi-http's send hook, which
/// reaches its state through it), sendable across the async workers.
pub trait StoreData: WasiHttpView + Send + 'static {}

impl<T: WasiHttpView + Send + 'static> StoreData for T {}

/// One host capability: the WIT interfaces a droplet may be granted.
pub trait Capability: Send + Sync + 'static {
    /// The word a manifest's `capabilities = [...]` grants it by; `None`:
    /// every droplet has it (the response-body hand-over).
    const GRANT: Option<&'static str>;
    /// The interfaces it provides, unversioned (`fp:droplet/kv`): a
    /// component that imports one is refused at load unless its manifest
    /// grants the capability.
    const INTERFACES: &'static [&'static str];

    /// What one droplet version's manifest makes of it, prepared at load
    /// and shared by all that version's calls.
    type Grant: Default + Send + Sync + 'static;
    /// Its per-call state.
    type Access: Send + 'static;

    /// Registers its interfaces with the linker; `access` reaches this
    /// call's [`Capability::Access`] in the store's data.
    fn link<T: StoreData>(
        linker: &mut Linker<T>,
        access: fn(&mut T) -> &mut Self::Access,
    ) -> wasmtime::Result<()>;

    /// Whether `manifest` grants it. By default: its word is in the
    /// manifest's `capabilities` list, or there is no list and the
    /// capability is one of the defaults.
    fn granted(manifest: &Manifest) -> bool {
        match (Self::GRANT, &manifest.capabilities) {
            (None, _) => true,
            (Some(word), None) => DEFAULT_GRANTS.contains(&word),
            (Some(word), Some(list)) => list.iter().any(|named| named == word),
        }
    }

    /// Why a component importing `import` cannot serve under a manifest
    /// that does not grant it, with what to write to grant it.
    fn refusal(import: &str) -> String {
        format!(
            "it imports {import}, which its manifest does not grant: add \"{}\" to `capabilities = [...]`",
            Self::GRANT.unwrap_or_default()
        )
    }

    /// Checks the manifest's options for it and prepares its grant; the
    /// error names the field.
    fn grant(&self, manifest: &Manifest) -> Result<Self::Grant, ManifestError>;

    /// Builds its state for one call.
    fn for_call(&self, grant: &Self::Grant, call: &CallContext<'_>) -> Self::Access;
}

/// What a manifest without a `capabilities` list grants.
pub const DEFAULT_GRANTS: [&str; 4] = ["kv", "log", "config", "auth"];

/// One registered capability, as the load-time check and `/capabilities`
/// see it.
#[derive(Clone, Copy)]
pub struct GrantRule {
    /// Its word in manifests, if it needs a grant.
    pub word: Option<&'static str>,
    /// Its interfaces, unversioned.
    pub interfaces: &'static [&'static str],
    /// Whether a manifest grants it.
    pub granted: fn(&Manifest) -> bool,
    /// Why an import of it is refused.
    pub refusal: fn(&str) -> String,
}

impl GrantRule {
    /// The rule of capability `C`.
    pub const fn of<C: Capability>() -> Self {
        Self {
            word: C::GRANT,
            interfaces: C::INTERFACES,
            granted: C::granted,
            refusal: C::refusal,
        }
    }
}
