//! The environment of a `droplet` process that a tool starts (the e2e
//! tests, the benchmarks): only a few variables of the tool's own, and no
//! `.env` file, so a user's `.env`, their `DROPLET_*` variables or secrets
//! cannot change what the tool measures or checks.

use std::process::Command;

/// Set (to anything but empty, `0` or `false`): `droplet` reads no `.env`.
pub const NO_DOTENV: &str = "DROPLET_NO_DOTENV";

/// What a started `droplet` keeps of the starting process's environment:
/// where programs and the toolchain are, nothing that configures the host.
const INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "TMPDIR",
    "LANG",
    "RUST_BACKTRACE",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
    "CARGO_HOME",
];

/// Isolates `command` from this process's environment: only
/// [`INHERITED_ENV`] is passed on, and no `.env` file is read from anywhere.
/// Whatever the caller sets afterwards (`.env(…)`) is all the host sees.
pub fn isolate(command: &mut Command) -> &mut Command {
    command.env_clear();
    for name in INHERITED_ENV {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command.env(NO_DOTENV, "1")
}
