//! Every capability, registered in one list ([`registry!`] below): the
//! host-wide halves ([`Capabilities`]), what a droplet version's manifest
//! grants ([`Grants`]), one call's state ([`Imports`]), the linker
//! registration ([`add_to_linker`]) and the grant rules the load-time check
//! and `/capabilities` read ([`RULES`]) all come from that list, so a new
//! capability is one file implementing [`Capability`] and one line here.
//!
//! The per-call state is a struct with a field per capability, not a map
//! of trait objects: a call builds it for every request, and reaching a
//! field costs nothing.

use wasmtime::component::{HasSelf, Linker, ResourceTable};

use super::auth::AuthCapability;
use super::call_context::CallContext;
use super::capability::{Capability, GrantRule, StoreData};
use super::config::ConfigCapability;
use super::kv::KvCapability;
use super::log::LogCapability;
use super::outbound::access::OutboundCapability;
use super::outbound::calls::{self, CallsView};
use super::queue::QueueCapability;
use super::response_body::BodyCapability;
use super::streaming::StreamingCapability;
use crate::bindings::fp::droplet as wit;
use crate::droplets::manifest::{Manifest, ManifestError};

/// A store's data that carries a call's [`Imports`].
pub trait HasImports: StoreData {
    /// This call's imports.
    fn imports(&mut self) -> &mut Imports;
    /// The store's resource table and this call's imports, at once.
    fn table_and_imports(&mut self) -> (&mut ResourceTable, &mut Imports);
}

/// What `fp:droplet/calls` reaches: the table and the outbound half.
fn calls_view<T: HasImports>(state: &mut T) -> CallsView<'_> {
    let (table, imports) = state.table_and_imports();
    CallsView {
        table,
        access: &mut imports.outbound,
    }
}

/// Declares the registry from one list of `field: Type` lines.
macro_rules! registry {
    ($($(#[doc = $doc:literal])* $field:ident: $capability:ty,)*) => {
        /// The host-wide half of every capability, built once from the
        /// host's settings.
        pub struct Capabilities {
            $($(#[doc = $doc])* pub $field: $capability,)*
        }

        /// What one droplet version's manifest grants each capability,
        /// prepared at load ([`Capabilities::grant`]).
        #[derive(Default)]
        pub struct Grants {
            $($(#[doc = $doc])* pub $field: <$capability as Capability>::Grant,)*
        }

        /// One call's state of every capability, kept in the call's store.
        pub struct Imports {
            $($(#[doc = $doc])* pub $field: <$capability as Capability>::Access,)*
        }

        impl Capabilities {
            /// Checks `manifest`'s options for every capability and
            /// prepares what its calls share; the error names the field.
            pub fn grant(&self, manifest: &Manifest) -> Result<Grants, ManifestError> {
                Ok(Grants {
                    $($field: self.$field.grant(manifest)?,)*
                })
            }

            /// The per-call state of every capability, for one call.
            pub fn for_call(&self, grants: &Grants, call: &CallContext<'_>) -> Imports {
                Imports {
                    $($field: self.$field.for_call(&grants.$field, call),)*
                }
            }
        }

        /// Registers every capability's interfaces (and the world's
        /// `types`, which has no functions).
        pub fn add_to_linker<T: HasImports>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
            wit::types::add_to_linker::<T, HasSelf<Imports>>(linker, |state| state.imports())?;
            $(<$capability as Capability>::link(linker, |state: &mut T| &mut state.imports().$field)?;)*
            calls::add_to_linker(linker, calls_view::<T>)
        }

        /// Every capability's grant rule, in registry order.
        pub const RULES: &[GrantRule] = &[$(GrantRule::of::<$capability>(),)*];
    };
}

registry! {
    /// `fp:droplet/kv`: the backend and its limits.
    kv: KvCapability,
    /// `fp:droplet/log`: guest log lines and stdout/stderr.
    log: LogCapability,
    /// `fp:droplet/config`: the manifest's `[config]`, resolved.
    config: ConfigCapability,
    /// `fp:droplet/auth`: the caller and the host's token verifier.
    auth: AuthCapability,
    /// `fp:droplet/response-body`: the host-wide budget of response bytes.
    body: BodyCapability,
    /// `wasi:http/outgoing-handler` and `fp:droplet/calls`: the process's
    /// outbound client.
    outbound: OutboundCapability,
    /// `fp:droplet/streaming`: a response sent as it is written, a request
    /// body read as it arrives.
    streaming: StreamingCapability,
    /// `fp:droplet/queue`: jobs sent for later, to the queues
    /// `send_queues` names.
    queue: QueueCapability,
}

/// `fp:droplet/types` holds only the request and response records; it has
/// no functions to implement.
impl wit::types::Host for Imports {}

/// The words of the capabilities `manifest` grants, in registry order.
pub fn granted(manifest: &Manifest) -> Vec<&'static str> {
    RULES
        .iter()
        .filter(|rule| (rule.granted)(manifest))
        .filter_map(|rule| rule.word)
        .collect()
}

/// Checks a component's `imports` against what `manifest` grants; the
/// error names the first interface not granted and the line to add.
///
/// A standard `wasi:http/proxy` component (`standard`) is not refused for
/// importing `wasi:http/outgoing-handler`: every Python and JavaScript
/// toolchain links it whether the app sends requests or not, and
/// `wasmtime serve` loads such components. Its requests are judged when
/// they are made: without `allowed_outbound_hosts` each one fails with
/// `HTTP-request-denied`. Our own world's imports are each a capability
/// the author chose to use, so a missing grant is a mistake to say at load.
pub fn check_imports(
    manifest: &Manifest,
    imports: &[String],
    standard: bool,
) -> Result<(), String> {
    for import in imports {
        let interface = import.split('@').next().unwrap_or(import);
        if standard && OutboundCapability::INTERFACES.contains(&interface) {
            continue;
        }
        let rule = RULES
            .iter()
            .find(|rule| rule.interfaces.contains(&interface));
        if let Some(rule) = rule
            && !(rule.granted)(manifest)
        {
            return Err((rule.refusal)(import));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_need_their_grants() {
        let imports = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let all = imports(&[
            "fp:droplet/types@0.2.0",
            "fp:droplet/kv@0.2.0",
            "fp:droplet/log@0.2.0",
            "wasi:cli/environment@0.2.6",
        ]);
        assert!(
            check_imports(&Manifest::default(), &all, false).is_ok(),
            "no list: the sandboxed imports"
        );
        let only_log = Manifest::parse("capabilities = [\"log\", \"greets\"]", 256).unwrap();
        let err = check_imports(&only_log, &all, false).unwrap_err();
        assert!(
            err.contains("fp:droplet/kv@0.2.0") && err.contains("add \"kv\""),
            "{err}"
        );
        let http = imports(&["wasi:http/outgoing-handler@0.2.12"]);
        let err = check_imports(&Manifest::default(), &http, false).unwrap_err();
        assert!(err.contains("allowed_outbound_hosts"), "{err}");
        assert!(
            check_imports(&Manifest::default(), &http, true).is_ok(),
            "a wasi:http component is judged when it sends"
        );
        let allowed =
            Manifest::parse("allowed_outbound_hosts = [\"https://x.example\"]", 256).unwrap();
        assert!(check_imports(&allowed, &http, false).is_ok());
        assert_eq!(granted(&allowed), ["kv", "log", "config", "auth", "http"]);
        let none = Manifest::parse("capabilities = []", 256).unwrap();
        assert!(granted(&none).is_empty());
        assert!(check_imports(&none, &imports(&["fp:droplet/types@0.2.0"]), false).is_ok());
    }

    #[test]
    fn every_imported_interface_of_the_world_has_one_rule() {
        // The response body needs no grant, but is registered all the same.
        for interface in [
            "fp:droplet/kv",
            "fp:droplet/log",
            "fp:droplet/config",
            "fp:droplet/auth",
            "fp:droplet/response-body",
            "wasi:http/outgoing-handler",
            "fp:droplet/streaming",
            "fp:droplet/queue",
            "fp:droplet/calls",
        ] {
            let rules = RULES
                .iter()
                .filter(|rule| rule.interfaces.contains(&interface))
                .count();
            assert_eq!(rules, 1, "{interface}");
        }
    }
}
