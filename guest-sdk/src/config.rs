//! The droplet's configuration, from the `[config]` table of its manifest.
//!
//! ```toml
//! [config]
//! greeting = "hello"
//! api_key = "${OPENAI_API_KEY}"   # expanded from the host's environment
//! ```

use crate::bindings::fp::droplet::config as wit;

/// The value of `key`, or `None` when the manifest does not set it.
pub fn get(key: &str) -> Option<String> {
    wit::get(key)
}
