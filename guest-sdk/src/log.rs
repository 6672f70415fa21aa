//! Structured logging into the host's JSON log.
//!
//! Each line is tagged by the host with the droplet's name, version and the
//! request's trace id. Lines are bounded per request; `println!`/`eprintln!`
//! also reach the log (as info and warn lines).

use crate::bindings::fp::droplet::log as wit;

pub use wit::Level;

/// Writes one line with structured `fields`.
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    wit::log(level, message, &fields);
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
