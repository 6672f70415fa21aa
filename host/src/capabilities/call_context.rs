//! What one call is: the inputs every capability builds its per-call state
//! from.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::time::Instant;

use crate::droplets::manifest::Manifest;
use crate::identity::policy::Caller;

/// One call of one droplet version.
pub struct CallContext<'a> {
    /// The droplet's name (its kv namespace, its log tag).
    pub droplet: &'a Arc<str>,
    /// The version being called.
    pub version: &'a Arc<str>,
    /// That version's manifest.
    pub manifest: &'a Manifest,
    /// That version's `[config]`, resolved.
    pub config: &'a Arc<BTreeMap<String, String>>,
    /// The request's trace id.
    pub trace_id: &'a Arc<str>,
    /// Who is calling, as the droplet's policy established it.
    pub caller: Caller,
    /// When the call must be over; host awaits are bounded by it.
    pub deadline: Instant,
    /// How many in-process calls led to this one (0: a request from
    /// outside).
    pub hops: u32,
}
