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
use tokio::sync::SemaphorePermit;
use tokio::time::Instant;
use tracing::Instrument;

use crate::app::App;
use crate::droplets::{Droplet, DropletState};
use crate::error::HostError;
use crate::guest::call::{Call, CallError, CallRequest};
use crate::guest::records::{guest_request, http_request, into_http};
use crate::guest::runtime::Linked;
use crate::http::request_body::{self, BodyError};
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

/// Where an in-process call comes from: the calling droplet, how many
/// calls led here, and the caller's deadline (the callee's is never later).
#[derive(Debug, Clone)]
pub struct Hop {
    /// The calling droplet.
    pub caller: Arc<str>,
    /// Calls in the chain so far, this one included.
    pub hops: u32,
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
    let body = request_body::read_limited(&parts.headers, body, limit, Some(app.body_read_timeout))
        .await
        .map_err(|err| match err {
            BodyError::TooLarge => HostError::BodyTooLarge { limit_kb },
            BodyError::TimedOut => {
                HostError::BadRequest("the request body did not arrive in time".to_string())
            }
            BodyError::Unreadable => {
                HostError::BadRequest("the request body could not be read".to_string())
            }
        })?;

    let own = Instant::now() + Duration::from_millis(manifest.budget_ms);
    let deadline = hop.map_or(own, |hop| own.min(hop.deadline));
    let _slots = acquire_slots(app, droplet, deadline)
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

    let imports = app.capabilities.for_call(
        &droplet.grants,
        &droplet.call_context(trace_id, caller, deadline, hop.map_or(0, |hop| hop.hops)),
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
        calls_out: !manifest.allowed_outbound_hosts.is_empty(),
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

/// Takes a slot of the droplet's concurrency limit and one of the host's
/// instance pool, waiting at most [`MAX_QUEUE_WAIT`] and never past the
/// deadline.
async fn acquire_slots<'a>(
    app: &'a App,
    droplet: &'a Droplet,
    deadline: Instant,
) -> Result<(SemaphorePermit<'a>, SemaphorePermit<'a>), HostError> {
    let wait_until = deadline.min(Instant::now() + MAX_QUEUE_WAIT);
    let overloaded = || HostError::DropletOverloaded(droplet.name.to_string());
    let own = tokio::time::timeout_at(wait_until, droplet.slots.acquire())
        .await
        .map_err(|_| overloaded())?
        .map_err(|_| overloaded())?;
    let pool = tokio::time::timeout_at(wait_until, app.instance_slots.acquire())
        .await
        .map_err(|_| overloaded())?
        .map_err(|_| overloaded())?;
    Ok((own, pool))
}
