//! The droplet's configuration, from the `[config]` table of its manifest.
//!
//! ```toml
//! [config]
//! greeting = "hello"
//! max_items = "50"
//! api_key = "${OPENAI_API_KEY}"   # expanded from the host's environment
//! ```
//!
//! ```no_run
//! use droplet_sdk::config;
//!
//! let greeting = config::get_or("greeting", "Hello");
//! let max_items: u32 = config::get_as("max_items")?.unwrap_or(20);
//! let api_key = config::require("api_key")?;
//! # Ok::<(), droplet_sdk::Error>(())
//! ```

use std::str::FromStr;

use crate::Error;
use crate::host::config as wit;

/// The value of `key`, or `None` when the manifest does not set it.
///
/// ```
/// // With `[config] greeting = "hello"` in the manifest:
/// let greeting: Option<String> = droplet_sdk::config::get("greeting");
/// # let _ = greeting;
/// ```
pub fn get(key: &str) -> Option<String> {
    wit::get(key)
}

/// The value of `key`, or `default` when the manifest does not set it.
///
/// ```
/// let greeting = droplet_sdk::config::get_or("greeting", "Hello");
/// # assert_eq!(greeting, "Hello");
/// ```
pub fn get_or(key: &str, default: &str) -> String {
    get(key).unwrap_or_else(|| default.to_string())
}

/// The value of `key`, or a 500 `config_missing` [`Error`] naming it (the
/// manifest is the droplet's own: a missing value is its operator's fix).
///
/// ```
/// fn handle(_req: droplet_sdk::Request) -> droplet_sdk::Result<String> {
///     let api = droplet_sdk::config::require("api_base")?; // 500 config_missing when unset
///     Ok(format!("calling {api}"))
/// }
/// # assert_eq!(handle(droplet_sdk::Request::get("/")).unwrap_err().code(), "config_missing");
/// ```
pub fn require(key: &str) -> Result<String, Error> {
    get(key).ok_or_else(|| {
        Error::new(
            500,
            "config_missing",
            format!("the droplet's manifest sets no `{key}` in [config]"),
        )
    })
}

/// The value of `key` parsed as `T`: `Ok(None)` when unset, a 500
/// `config_invalid` [`Error`] when it does not parse.
///
/// ```
/// let max_items: u32 = droplet_sdk::config::get_as("max_items")?.unwrap_or(20);
/// # assert_eq!(max_items, 20);
/// # Ok::<(), droplet_sdk::Error>(())
/// ```
pub fn get_as<T: FromStr>(key: &str) -> Result<Option<T>, Error> {
    get(key)
        .map(|value| {
            value.trim().parse().map_err(|_| {
                Error::new(
                    500,
                    "config_invalid",
                    format!(
                        "[config] {key} = {value:?} is not a {}",
                        crate::request::short_type_name::<T>()
                    ),
                )
            })
        })
        .transpose()
}
