//! What one call is: the inputs every capability builds its per-call state
//! from (besides what the droplet version's manifest granted it, prepared
//! at load: [`super::Grants`]).

use std::sync::Arc;

use tokio::time::Instant;

use super::outbound::Chain;
use super::recording::Tape;
use crate::identity::policy::Caller;

/// One call of one droplet version.
pub struct CallContext<'a> {
    /// The droplet's name (its kv namespace, its log tag).
    pub droplet: &'a Arc<str>,
    /// The version being called.
    pub version: &'a Arc<str>,
    /// The request's trace id.
    pub trace_id: &'a Arc<str>,
    /// Who is calling, as the droplet's policy established it.
    pub caller: Caller,
    /// When the call must be over; host awaits are bounded by it.
    pub deadline: Instant,
    /// Where it stands among the in-process calls of one request from
    /// outside.
    pub chain: Chain,
    /// Where the call is recorded, when it is.
    pub tape: Option<Tape>,
}
