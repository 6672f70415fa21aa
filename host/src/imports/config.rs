//! `fp:droplet/config`: values from the droplet's manifest `[config]` table,
//! with `${VAR}` already expanded when the droplet was loaded.

use super::Imports;
use crate::runtime::bindings::fp::droplet::config::Host;

impl Host for Imports {
    async fn get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }
}
