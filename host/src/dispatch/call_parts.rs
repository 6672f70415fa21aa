//! What every droplet call shares, whichever world it serves: its
//! deadline, its slots, its chain of in-process calls, and how its outcome
//! is counted and told to the client.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use crate::app::App;
use crate::capabilities::outbound::{Chain, Fanout};
use crate::droplets::Droplet;
use crate::droplets::manifest::Manifest;
use crate::error::HostError;
use crate::guest::call::CallError;

/// Longest a request waits for a concurrency slot (and never past its budget).
pub const MAX_QUEUE_WAIT: Duration = Duration::from_millis(100);

/// What a droplet call did, for the response headers and the access log.
#[derive(Default)]
pub struct CallReport {
    /// Time spent instantiating and running the droplet.
    pub droplet_time: Option<Duration>,
    /// Whether the droplet (not the host) wrote the response.
    pub from_droplet: bool,
    /// Outbound requests the call sent, and the time spent waiting for
    /// their responses; `None` when it sent none.
    pub outbound: Option<(u32, Duration)>,
    /// The version called (during a rollout, the canary or the stable one).
    pub version: Option<Arc<str>>,
}

/// Where an in-process call comes from: the calling droplet, its place in
/// the chain, and the caller's deadline (the callee's is never later).
#[derive(Clone)]
pub struct Hop {
    /// The calling droplet.
    pub caller: Arc<str>,
    /// Calls in the chain so far, this one included, and what the whole
    /// tree may still do.
    pub chain: Chain,
    /// The caller's deadline.
    pub deadline: Instant,
}

/// A background call's own budget in milliseconds (its schedule's or
/// consumer's `budget_ms`), carried in the request's extensions, where
/// only the host can put it.
#[derive(Debug, Clone, Copy)]
pub struct BudgetOverride(pub u64);

/// The call's deadline: its own budget (a background call's may be its
/// schedule's or consumer's), never past its caller's.
pub fn deadline(manifest: &Manifest, hop: Option<&Hop>, extensions: &http::Extensions) -> Instant {
    let budget_ms = extensions
        .get::<BudgetOverride>()
        .map_or(manifest.budget_ms, |budget| budget.0);
    let own = Instant::now() + Duration::from_millis(budget_ms);
    hop.map_or(own, |hop| own.min(hop.deadline))
}

/// The droplet's linear-memory cap in bytes.
pub fn memory_bytes(manifest: &Manifest) -> usize {
    usize::try_from(manifest.memory_mb << 20).unwrap_or(usize::MAX)
}

/// Whether the droplet may wait on the host for long: it may call out
/// (outbound HTTP, another droplet) or send jobs (the queue's store). Such
/// a call gives its long-running gate permit back whenever it calls the
/// host, so one waiting call does not hold up others' guest code.
pub fn calls_out(manifest: &Manifest) -> bool {
    !manifest.allowed_outbound_hosts.is_empty() || !manifest.send_queues.is_empty()
}

/// The chain of in-process calls this call belongs to: its caller's, or a
/// new tree for a request from outside to a droplet that may call others.
pub fn chain(app: &App, droplet: &Droplet, hop: Option<&Hop>) -> Chain {
    match hop {
        Some(hop) => hop.chain.clone(),
        None if calls_out(&droplet.manifest) => Chain {
            hops: 0,
            fanout: Some(Arc::new(Fanout::new(
                Arc::clone(&droplet.name),
                Arc::clone(&droplet.slots),
                app.max_internal_calls,
            ))),
        },
        None => Chain::default(),
    }
}

/// What the client is told about a call that produced no response.
pub fn call_error(droplet: &Droplet, err: CallError) -> HostError {
    match err {
        CallError::BudgetExceeded => HostError::BudgetExceeded {
            name: droplet.name.to_string(),
            budget_ms: droplet.manifest.budget_ms,
        },
        CallError::Trap(message) => {
            HostError::DropletTrap(format!("droplet `{}` {message}", droplet.name))
        }
        CallError::PoolExhausted => HostError::DropletOverloaded(droplet.name.to_string()),
        CallError::HostBusy(message) => HostError::HostBusy(message),
        CallError::WorldMismatch => {
            tracing::error!(droplet = %droplet.name, "the host built a request for the wrong world");
            HostError::Internal
        }
    }
}

/// Counts a finished call in the droplet's stats and metrics.
pub fn record<T>(droplet: &Droplet, elapsed: Duration, result: &Result<T, CallError>) {
    let failed = matches!(result, Err(CallError::BudgetExceeded | CallError::Trap(_)));
    droplet.stats.record_call(elapsed, failed);
    match result {
        Err(CallError::BudgetExceeded) => droplet.stats.record_overrun(),
        Err(CallError::Trap(_)) => droplet.stats.record_trap(),
        _ => {}
    }
}

/// The slots a call holds while it runs.
pub struct Slots {
    _own: OwnedSemaphorePermit,
    /// An in-process call's slot of the droplet its tree started at.
    _root: Option<OwnedSemaphorePermit>,
    _pool: OwnedSemaphorePermit,
}

/// Takes a slot of the droplet's concurrency limit, for an in-process call
/// one of the droplet its request from outside reached first (its fan-out
/// counts against that droplet's limit), and one of the host's instance
/// pool, waiting at most [`MAX_QUEUE_WAIT`] and never past the deadline.
pub async fn acquire_slots(
    app: &App,
    droplet: &Droplet,
    deadline: Instant,
    hop: Option<&Hop>,
) -> Result<Slots, HostError> {
    let wait_until = deadline.min(Instant::now() + MAX_QUEUE_WAIT);
    let overloaded = || HostError::DropletOverloaded(droplet.name.to_string());
    let own = tokio::time::timeout_at(wait_until, Arc::clone(&droplet.slots).acquire_owned())
        .await
        .map_err(|_| overloaded())?
        .map_err(|_| overloaded())?;
    let root = match hop.and_then(|hop| hop.chain.fanout.as_ref()) {
        // A call back into the root droplet took its slot above.
        Some(fanout) if fanout.root != droplet.name => {
            let busy = || HostError::FanoutOverloaded {
                root: fanout.root.to_string(),
                callee: droplet.name.to_string(),
            };
            Some(
                tokio::time::timeout_at(wait_until, Arc::clone(&fanout.root_slots).acquire_owned())
                    .await
                    .map_err(|_| busy())?
                    .map_err(|_| busy())?,
            )
        }
        _ => None,
    };
    let pool_full = || {
        HostError::HostBusy(format!(
            "the host's instance pool is full ({} instances run at once); retry shortly",
            app.max_instances
        ))
    };
    let pool = tokio::time::timeout_at(wait_until, Arc::clone(&app.instance_slots).acquire_owned())
        .await
        .map_err(|_| pool_full())?
        .map_err(|_| pool_full())?;
    Ok(Slots {
        _own: own,
        _root: root,
        _pool: pool,
    })
}
