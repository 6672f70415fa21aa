//! The droplet world generated a second time for replay, with every
//! import able to trap: a replayed call that diverges from its recording
//! stops the guest at that call, which the live host's bindings (whose
//! imports cannot fail) could not do.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "droplet",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "wasi:io/poll": wasmtime_wasi::p2::bindings::io::poll,
    },
});
