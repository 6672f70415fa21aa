//! The droplet call: from a routed request to the droplet's response.
//!
//! Everything that can refuse a request runs before any instance is made:
//! the droplet must be loaded, its auth policy must pass ([`policy`]), the
//! body must fit `max_body_kb`, and a concurrency slot must free up within a
//! short wait inside the budget. Then the capabilities build their per-call
//! state, the runtime runs the call in a fresh instance under the deadline,
//! and the outcome is counted and mapped to a response or a [`HostError`].

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use tokio::time::Instant;
use tracing::Instrument;

use super::call_parts::{
    CallReport, Hop, acquire_slots, call_error, calls_out, chain, deadline, memory_bytes, record,
};
use super::recording;
use super::streamed::{self, Streamed};
use crate::app::App;
use crate::droplets::rollout::split::StickyKey;
use crate::droplets::{Droplet, DropletState};
use crate::error::HostError;
use crate::guest::call::{Call, CallRequest};
use crate::guest::records::{guest_request, into_http};
use crate::guest::request_headers::BackgroundHeaders;
use crate::guest::runtime::Linked;
use crate::guest::stream::CallBody;
use crate::http::request_body;
use crate::identity::policy;

/// The version of `current`'s droplet that answers a request with
/// `headers`: during a rollout's split, the canary or the stable version,
/// the same for one caller (its verified `sub`, else its
/// `x-droplet-rollout-key`); otherwise `current`.
pub fn choose_version(app: &App, current: Arc<Droplet>, headers: &http::HeaderMap) -> Arc<Droplet> {
    app.droplets.route(current, || {
        if let (Some(Ok(token)), Some(verifier)) = (policy::bearer_token(headers), app.verifier())
            && let Ok(claims) = verifier.verify(token)
            && let Some(sub) = &claims.subject
        {
            return Some(StickyKey::of("sub", sub.as_bytes()));
        }
        headers
            .get(ROLLOUT_KEY_HEADER)
            .map(|key| StickyKey::of("key", key.as_bytes()))
    })
}

/// The header that keeps a caller without a token on one version of a
/// rollout.
pub const ROLLOUT_KEY_HEADER: &str = "x-droplet-rollout-key";

/// Calls `droplet` with `req`, whose path inside the droplet is `path`;
/// `hop` when another droplet calls it in process. A droplet of our world
/// gets its request body read whole and answers in full; a `wasi:http`
/// component streams both ways ([`streamed`]). The outcome is counted in
/// the version's own counters, which a rollout judges: the time to the
/// response head, and whether the version failed (a 5xx it answered, a
/// trap, an overrun, an invalid response).
pub async fn call<B>(
    app: &App,
    droplet: &Arc<Droplet>,
    req: Request<B>,
    path: String,
    trace_id: &Arc<str>,
    report: &mut CallReport,
    hop: Option<&Hop>,
) -> Result<Response<CallBody>, HostError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    report.version = Some(Arc::clone(droplet.version.shared()));
    let result = call_version(app, droplet, req, path, trace_id, report, hop).await;
    if report.droplet_time.is_some() || report.from_droplet {
        droplet
            .counters
            .record(started.elapsed(), recording::failed(&result));
    }
    result
}

async fn call_version<B>(
    app: &App,
    droplet: &Arc<Droplet>,
    req: Request<B>,
    path: String,
    trace_id: &Arc<str>,
    report: &mut CallReport,
    hop: Option<&Hop>,
) -> Result<Response<CallBody>, HostError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
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
    // A background call is the host's own: no token to check.
    let caller = if parts.extensions.get::<BackgroundHeaders>().is_some() {
        policy::Caller::default()
    } else {
        policy::authorize(app.verifier(), manifest, &parts.headers)?
    };
    // Compiles a lazily registered droplet on its first request; that time is
    // the host's cost, not the droplet's, so the deadline starts after it.
    let ready =
        app.droplets
            .ready(droplet)
            .await
            .map_err(|reason| HostError::DropletUnavailable {
                name: droplet.name.to_string(),
                reason,
            })?;
    let limit_kb = manifest.max_body_kb;
    let limit = usize::try_from(limit_kb.saturating_mul(1024)).unwrap_or(usize::MAX);
    if matches!(ready.pre, Linked::Proxy(_)) || ready.streams() {
        let request = Streamed {
            parts,
            body,
            path,
            limit_kb,
            limit,
        };
        return streamed::call(app, droplet, ready, request, trace_id, report, hop, caller).await;
    }
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
    let request = guest_request(
        &parts,
        path,
        body,
        trace_id,
        manifest.forward_authorization,
        hop.map(|hop| &*hop.caller),
    )?;

    let taping = recording::begin(app, droplet, &parts.headers, &request, &caller, hop);
    let tape = taping.as_ref().map(|taping| taping.tape.clone());
    let deadline = deadline(manifest, hop, &parts.extensions);
    let _slots = acquire_slots(app, droplet, deadline, hop)
        .instrument(crate::step_span!("queue"))
        .await?;
    let context = droplet.call_context(
        trace_id,
        caller,
        deadline,
        chain(app, droplet, hop),
        tape.clone(),
    );
    let imports = app.capabilities.for_call(&droplet.grants, &context);
    let outbound = imports.outbound.report();
    let call_started = Instant::now();
    let in_flight = droplet.stats.enter();
    // Boxed: the call's future is 3.6 KiB, and inline it would be copied
    // with this one at every move up to hyper.
    let result = Box::pin(app.runtime.call(
        &ready.pre,
        Call {
            memory_bytes: memory_bytes(manifest),
            deadline,
            imports,
            request: CallRequest::Droplet(request),
            suspect: droplet.stats.failing(),
            calls_out: calls_out(manifest),
            end: None,
            tape,
        },
    ))
    .await;
    drop(in_flight);
    let elapsed = call_started.elapsed();
    report.droplet_time = Some(elapsed);
    report.outbound = outbound.spent();
    report.from_droplet = result.is_ok();
    record(droplet, elapsed, &result);
    let guest_headers = match (&taping, &result) {
        (Some(_), Ok(Some(answer))) => Some(answer.response.headers.clone()),
        _ => None,
    };
    let outcome = match result {
        Ok(Some(answer)) => into_http(answer).inspect_err(|_| report.from_droplet = false),
        Ok(None) => {
            tracing::error!(droplet = %droplet.name, "a droplet call answered like a wasi:http one");
            Err(HostError::Internal)
        }
        Err(err) => Err(call_error(droplet, err)),
    };
    let outcome = match taping {
        Some(taping) => taping.finish(app, droplet, trace_id, guest_headers, outcome),
        None => outcome,
    };
    outcome.map(|response| response.map(CallBody::from))
}
