//! Structured logging into the host's JSON log.
//!
//! Each line is tagged by the host with the droplet's name, version and the
//! request's trace id. Lines are bounded per request; `println!`/`eprintln!`
//! also reach the log (as info and warn lines).
//!
//! The macros format a message as `format!` does, and each `name = value`
//! argument is also a structured field of the line:
//!
//! ```no_run
//! use droplet_sdk::log;
//!
//! let (id, title) = (7, "write docs");
//! log::info!("saved todo {id}", id = id, title = title);
//! // {"level":"INFO","message":"saved todo 7","id":"7","title":"write docs",...}
//! log::warn!("slow upstream");
//! ```

use crate::host::log as wit;

pub use crate::bindings::fp::droplet::log::Level;

/// Writes one line with structured `fields`.
///
/// ```
/// use droplet_sdk::log::{log, Level};
///
/// log(Level::Warn, "slow upstream", &[("upstream", "api"), ("ms", "830")]);
/// ```
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    wit::log(level, message, &fields);
}

/// Writes one line whose fields are already owned (what the macros call).
#[doc(hidden)]
pub fn log_owned(level: Level, message: &str, fields: &[(String, String)]) {
    wit::log(level, message, fields);
}

/// Writes a debug line.
pub fn debug(message: &str) {
    log(Level::Debug, message, &[]);
}

/// Writes an info line.
pub fn info(message: &str) {
    log(Level::Info, message, &[]);
}

/// Writes a warn line.
pub fn warn(message: &str) {
    log(Level::Warn, message, &[]);
}

/// Writes an error line.
pub fn error(message: &str) {
    log(Level::Error, message, &[]);
}

pub use crate::{
    __log_debug as debug, __log_error as error, __log_info as info, __log_trace as trace,
    __log_warn as warn,
};
