//! `fp:droplet/config`: values from the droplet's manifest `[config]` table,
//! with `${VAR}` already expanded when the droplet was loaded.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::call_context::CallContext;
use crate::bindings::fp::droplet::config::Host;

/// The config one call may read: its droplet version's table.
pub struct ConfigAccess(Arc<BTreeMap<String, String>>);

/// The droplet's table, shared by all its calls.
pub fn for_call(call: &CallContext<'_>) -> ConfigAccess {
    ConfigAccess(Arc::clone(call.config))
}

impl Host for ConfigAccess {
    async fn get(&mut self, key: String) -> Option<String> {
        self.0.get(&key).cloned()
    }
}
