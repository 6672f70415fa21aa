//! A `wasi:http` component's call, streamed both ways: the request body
//! reaches the component as the client sends it, and the response goes
//! back as soon as the component sets its head, its body following while
//! the call runs on in a task of its own (which holds the call's slots
//! until the instance is gone). The budget covers the whole exchange: at
//! the deadline the call ends, and a body it had not finished is cut off.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;

use super::call_parts::{
    CallReport, Hop, acquire_slots, call_error, calls_out, chain, deadline, memory_bytes, record,
};
use crate::app::App;
use crate::droplets::Droplet;
use crate::droplets::loader::Ready;
use crate::error::HostError;
use crate::guest::call::{Call, CallRequest};
use crate::guest::records::{http_request, proxy_response};
use crate::guest::stream::{CallBody, CallEnd};
use crate::http::request_body::{self, BodyError};
use crate::identity::policy::Caller;

/// The request as routed, its body not read.
pub(super) struct Streamed<B> {
    pub parts: http::request::Parts,
    pub body: B,
    /// The path inside the droplet.
    pub path: String,
    /// The droplet's `max_body_kb`, and in bytes.
    pub limit_kb: u64,
    pub limit: usize,
}

/// Calls the `wasi:http` component `ready` of `droplet` (see the module).
#[allow(clippy::too_many_arguments)]
pub(super) async fn call<B>(
    app: &App,
    droplet: &Arc<Droplet>,
    ready: Arc<Ready>,
    request: Streamed<B>,
    trace_id: &Arc<str>,
    report: &mut CallReport,
    hop: Option<&Hop>,
    caller: Caller,
) -> Result<Response<CallBody>, HostError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let manifest = &droplet.manifest;
    let Streamed {
        parts,
        body,
        path,
        limit_kb,
        limit,
    } = request;
    let refused = Arc::new(OnceLock::new());
    let body = request_body::streamed(
        &parts.headers,
        body,
        limit,
        app.body_read_timeout,
        &app.request_bodies,
    )
    .map_err(|err| err.host_error(limit_kb))?
    .map_err({
        let refused = Arc::clone(&refused);
        move |err| {
            let _ = refused.set(err);
            error_code(err)
        }
    })
    .boxed_unsync();
    let request = http_request(
        &parts,
        &path,
        body,
        trace_id,
        manifest.forward_authorization,
        hop.map(|hop| &*hop.caller),
    );

    let deadline = deadline(manifest, hop);
    let slots = acquire_slots(app, droplet, deadline, hop)
        .instrument(crate::step_span!("queue"))
        .await?;
    let imports = app.capabilities.for_call(
        &droplet.grants,
        &droplet.call_context(trace_id, caller, deadline, chain(app, droplet, hop)),
    );
    let outbound = imports.outbound.report();
    let (head, headed) = oneshot::channel();
    let end = Arc::new(CallEnd::default());
    let run = {
        let (runtime, droplet, end) = (
            Arc::clone(&app.runtime),
            Arc::clone(droplet),
            Arc::clone(&end),
        );
        async move {
            let _slots = slots;
            let started = Instant::now();
            let in_flight = droplet.stats.enter();
            let result = runtime
                .call(Call {
                    droplet: &ready.pre,
                    memory_bytes: memory_bytes(&droplet.manifest),
                    deadline,
                    imports,
                    request: CallRequest::Http { request, head, end },
                    suspect: droplet.stats.failing(),
                    calls_out: calls_out(&droplet.manifest),
                })
                .await;
            drop(in_flight);
            record(&droplet, started.elapsed(), &result);
            result
        }
        .in_current_span()
    };
    let call_started = Instant::now();
    // Until the head is out, the call is this request's: dropped with it.
    let task = AbortOnDropHandle::new(tokio::spawn(run));
    let headed = headed.await;
    report.droplet_time = Some(call_started.elapsed());
    report.outbound = outbound.spent();
    match headed {
        Ok(response) => {
            // From now on the call runs on by itself, bounded by its deadline.
            drop(task.detach());
            report.from_droplet = true;
            let budget = app.capabilities.body.budget();
            proxy_response(response, end, budget).inspect_err(|_| report.from_droplet = false)
        }
        // The call ended without a response.
        Err(_) => {
            let result = task.await.map_err(|_| HostError::Internal)?;
            // A body refused as it arrived is the client's doing.
            if let Some(refused) = refused.get() {
                return Err(refused.host_error(limit_kb));
            }
            match result {
                Ok(_) => Err(HostError::DropletTrap(format!(
                    "droplet `{}` returned without setting a response",
                    droplet.name
                ))),
                Err(err) => Err(call_error(droplet, err)),
            }
        }
    }
}

/// What a `wasi:http` component reading the request body is told when the
/// host refused it.
fn error_code(err: BodyError) -> ErrorCode {
    match err {
        BodyError::TooLarge => ErrorCode::HttpRequestBodySize(None),
        BodyError::TimedOut => ErrorCode::ConnectionReadTimeout,
        BodyError::Unreadable => ErrorCode::HttpProtocolError,
        BodyError::HostBusy => ErrorCode::InternalError(Some(
            "the host holds as many request bytes as it allows".to_string(),
        )),
    }
}
