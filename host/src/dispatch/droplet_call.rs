//! The droplet call: from a routed request to the droplet's response.
//!
//! Everything that can refuse a request runs before any instance is made:
//! the droplet must be loaded, its auth policy must pass ([`policy`]), the
//! body must fit `max_body_kb`, and a concurrency slot must free up within a
//! short wait inside the budget. Then the capabilities build their per-call
//! state, the runtime runs the call in a fresh instance under the deadline,
//! and the outcome is counted and mapped to a response or a [`HostError`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tokio::sync::{OwnedSemaphorePermit, SemaphorePermit};
use tokio::time::Instant;
use tracing::Instrument;

use crate::app::App;
use crate::capabilities::outbound::{Chain, Fanout};
use crate::droplets::{Droplet, DropletState};
use crate::error::HostError;
use crate::guest::call::{Call, CallError, CallRequest};
use crate::guest::records::{guest_request, http_request, into_http};
use crate::guest::runtime::Linked;
use crate::http::request_body;
use crate::identity::policy;

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

/// Calls `droplet` with `req`, whose path inside the droplet is `path`;
/// `hop` when another droplet calls it in process.
pub async fn call<B>(
    app: &App,
    droplet: &Droplet,
    req: Request<B>,
    path: String,
    trace_id: &Arc<str>,
    report: &mut CallReport,
    hop: Option<&Hop>,
) -> Result<Response<Full<Bytes>>, HostError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let manifest = &droplet.manifest;
    if let DropletState::Failed(reason) = &droplet.state {
        return Err(HostError::DropletUnavailable {
            name: droplet.name.to_string(),
            reason: reason.clone(),
        });
    }
    let (parts, body) = req.into_parts();
    let caller = policy::authorize(app.verifier(), manifest, &parts.headers)?;
    let limit_kb = manifest.max_body_kb;
    let limit = usize::try_from(limit_kb.saturating_mul(1024)).unwrap_or(usize::MAX);
    // Held against the host's budget of request bytes until answered.
    let read = request_body::read_limited(
        &parts.headers,
        body,
        limit,
        Some(app.body_read_timeout),
        &app.request_bodies,
    )
    .await
    .map_err(|err| err.host_error(limit_kb))?;
    let (body, _body_held) = read.into_parts();

    let own = Instant::now() + Duration::from_millis(manifest.budget_ms);
    let deadline = hop.map_or(own, |hop| own.min(hop.deadline));
    let _slots = acquire_slots(app, droplet, deadline, hop)
        .instrument(crate::step_span!("queue"))
        .await?;
    // Compiles a lazily registered droplet on its first request; that time is
    // the host's cost, not the droplet's, so it extends the deadline.
    let compile_started = Instant::now();
    let ready =
        app.droplets
            .ready(droplet)
            .await
            .map_err(|reason| HostError::DropletUnavailable {
                name: droplet.name.to_string(),
                reason,
            })?;
    let deadline = deadline + compile_started.elapsed();

    let calls_out = !manifest.allowed_outbound_hosts.is_empty();
    let chain = match hop {
        Some(hop) => hop.chain.clone(),
        // A request from outside to a droplet that may call others starts
        // the tree its in-process calls share.
        None if calls_out => Chain {
            hops: 0,
            fanout: Some(Arc::new(Fanout::new(
                Arc::clone(&droplet.name),
                Arc::clone(&droplet.slots),
                app.max_internal_calls,
            ))),
        },
        None => Chain::default(),
    };
    let imports = app.capabilities.for_call(
        &droplet.grants,
        &droplet.call_context(trace_id, caller, deadline, chain),
    );
    let outbound = imports.outbound.report();
    let call_started = Instant::now();
    let in_flight = droplet.stats.enter();
    // Boxed: the call's future is 3.6 KiB, and inline it would be copied
    // with this one at every move up to hyper.
    let result = Box::pin(app.runtime.call(Call {
        droplet: &ready.pre,
        memory_bytes: usize::try_from(manifest.memory_mb << 20).unwrap_or(usize::MAX),
        deadline,
        imports,
        request: match &ready.pre {
            Linked::Droplet(_) => CallRequest::Droplet(guest_request(
                &parts,
                path,
                body,
                trace_id,
                manifest.forward_authorization,
                hop.map(|hop| &*hop.caller),
            )),
            Linked::Proxy(_) => CallRequest::Http(http_request(
                &parts,
                &path,
                body,
                trace_id,
                manifest.forward_authorization,
                hop.map(|hop| &*hop.caller),
            )),
        },
        suspect: droplet.stats.failing(),
        calls_out,
    }))
    .await;
    drop(in_flight);
    let elapsed = call_started.elapsed();
    report.droplet_time = Some(elapsed);
    let (requests, micros) = outbound.totals();
    report.outbound = (requests > 0).then(|| (requests, Duration::from_micros(micros)));
    report.from_droplet = result.is_ok();
    record(droplet, elapsed, &result);
    match result {
        Ok(response) => into_http(response).inspect_err(|_| report.from_droplet = false),
        Err(CallError::BudgetExceeded) => Err(HostError::BudgetExceeded {
            name: droplet.name.to_string(),
            budget_ms: manifest.budget_ms,
        }),
        Err(CallError::Trap(message)) => Err(HostError::DropletTrap(format!(
            "droplet `{}` {message}",
            droplet.name
        ))),
        Err(CallError::PoolExhausted) => {
            Err(HostError::DropletOverloaded(droplet.name.to_string()))
        }
        Err(CallError::HostBusy(message)) => Err(HostError::HostBusy(message)),
        Err(CallError::WorldMismatch) => {
            tracing::error!(droplet = %droplet.name, "the host built a request for the wrong world");
            Err(HostError::Internal)
        }
    }
}

/// Counts a finished call in the droplet's stats and metrics.
fn record<T>(droplet: &Droplet, elapsed: Duration, result: &Result<T, CallError>) {
    let failed = matches!(result, Err(CallError::BudgetExceeded | CallError::Trap(_)));
    droplet.stats.record_call(elapsed, failed);
    match result {
        Err(CallError::BudgetExceeded) => droplet.stats.record_overrun(),
        Err(CallError::Trap(_)) => droplet.stats.record_trap(),
        _ => {}
    }
}

/// The slots a call holds while it runs.
struct Slots<'a> {
    _own: SemaphorePermit<'a>,
    /// An in-process call's slot of the droplet its tree started at.
    _root: Option<OwnedSemaphorePermit>,
    _pool: SemaphorePermit<'a>,
}

/// Takes a slot of the droplet's concurrency limit, for an in-process call
/// one of the droplet its request from outside reached first (its fan-out
/// counts against that droplet's limit), and one of the host's instance
/// pool, waiting at most [`MAX_QUEUE_WAIT`] and never past the deadline.
async fn acquire_slots<'a>(
    app: &'a App,
    droplet: &'a Droplet,
    deadline: Instant,
    hop: Option<&Hop>,
) -> Result<Slots<'a>, HostError> {
    let wait_until = deadline.min(Instant::now() + MAX_QUEUE_WAIT);
    let overloaded = || HostError::DropletOverloaded(droplet.name.to_string());
    let own = tokio::time::timeout_at(wait_until, droplet.slots.acquire())
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
    let pool = tokio::time::timeout_at(wait_until, app.instance_slots.acquire())
        .await
        .map_err(|_| pool_full())?
        .map_err(|_| pool_full())?;
    Ok(Slots {
        _own: own,
        _root: root,
        _pool: pool,
    })
}
