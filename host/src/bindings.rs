//! The Rust side of `wit/droplet.wit`, generated once for the whole host:
//! the runtime instantiates and calls the `droplet` world through it, and
//! each capability in [`crate::capabilities`] implements its interface's `Host`
//! trait from it.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "droplet",
    imports: {
        // A call's resources live in the store's table: pushing one can fail.
        "fp:droplet/calls": async | trappable,
        default: async,
    },
    exports: { default: async },
    with: {
        // The pollable `calls` hands out is wasmtime-wasi's own, so a
        // droplet waits on it with `wasi:io/poll` beside its other ones.
        "wasi:io/poll": wasmtime_wasi::p2::bindings::io::poll,
    },
});

pub use fp::droplet::types::{Request as GuestRequest, Response as GuestResponse};

/// The world's WIT source, as the bindings above were generated from.
const WORLD_WIT: &str = include_str!("../../wit/droplet.wit");

/// The versioned name of the world's interface `interface`
/// (`fp:droplet/response-body@0.2.0`), for an interface registered by hand:
/// the version is read from the WIT's `package` line, so it cannot drift
/// from what the bindings were generated from.
pub fn interface_name(interface: &str) -> String {
    let package = WORLD_WIT
        .lines()
        .find_map(|line| line.trim().strip_prefix("package "))
        .map(|package| package.trim_end_matches(';').trim())
        .unwrap_or("fp:droplet");
    match package.split_once('@') {
        Some((name, version)) => format!("{name}/{interface}@{version}"),
        None => format!("{package}/{interface}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn interface_names_carry_the_packages_version() {
        assert_eq!(
            super::interface_name("response-body"),
            "fp:droplet/response-body@0.2.3"
        );
    }
}
