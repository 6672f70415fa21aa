//! Droplet-to-droplet calls, in process: `http://{name}.droplet.internal/…`
//! from a droplet whose manifest allows it reaches droplet `name` without a
//! socket. The callee runs as for any request — a fresh instance, its own
//! policy (auth, scopes, body limit, concurrency), its own budget, but never
//! past the caller's deadline — and sees the caller's name in
//! `x-droplet-caller`, which only the host sets. The trace id is shared; a
//! chain deeper than [`MAX_HOPS`] is a loop: 508 to the caller.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use wasmtime_wasi_http::WasiBody;

use crate::app::App;
use crate::capabilities::outbound::{InternalCall, InternalCalls, MAX_HOPS};
use crate::capabilities::response_body::HeldBytes;
use crate::dispatch::droplet_endpoints as contract;
use crate::dispatch::{self, CallReport, Hop};
use crate::error::HostError;
use crate::guest::stream::{CallBody, StreamCut};
use crate::ops::trace_id::TRACE_ID_HEADER;

impl InternalCalls for App {
    fn call(
        self: Arc<Self>,
        call: InternalCall,
    ) -> Pin<Box<dyn Future<Output = http::Response<WasiBody>> + Send>> {
        Box::pin(async move {
            let started = Instant::now();
            let (trace_id, caller, callee) = (
                Arc::clone(&call.trace_id),
                Arc::clone(&call.caller),
                call.callee.clone(),
            );
            let method = call.request.method().clone();
            let endpoint = call.request.uri().path().to_string();
            let mut report = CallReport::default();
            let answered = answer(&self, call, &mut report).await;
            let (mut response, error) = match answered {
                Ok(response) => (response, None),
                Err(err) => {
                    let code = err.code();
                    (err.into_response(&trace_id).map(CallBody::from), Some(code))
                }
            };
            if let Some(droplet) = self.droplets.get(&callee)
                && report.droplet_time.is_some()
            {
                let status = response.status().as_u16();
                droplet.stats.record_status(status);
                let version = report
                    .version
                    .as_deref()
                    .unwrap_or(droplet.version.as_str());
                if let Ok(value) = http::HeaderValue::from_str(version) {
                    response.headers_mut().insert("x-droplet-version", value);
                }
            }
            if let Ok(value) = http::HeaderValue::from_str(&trace_id) {
                response.headers_mut().insert(TRACE_ID_HEADER, value);
            }
            if self.access_log.wants(response.status().as_u16()) {
                tracing::info!(
                    target: "droplet::access",
                    trace_id = &*trace_id,
                    droplet = callee.as_str(),
                    caller = &*caller,
                    method = method.as_str(),
                    endpoint = endpoint.as_str(),
                    status_code = response.status().as_u16(),
                    duration_ms = started.elapsed().as_secs_f64() * 1e3,
                    error,
                    "internal request"
                );
            }
            let held = response.extensions_mut().remove::<HeldBytes>();
            response.map(|body| {
                Holding {
                    inner: body,
                    _held: held,
                }
                .map_err(|cut| wasmtime_wasi_http::Error::InternalError(Some(cut.to_string())))
                .boxed_unsync()
            })
        })
    }
}

/// Routes an in-process call to its droplet (or its contract endpoint).
async fn answer(
    app: &App,
    call: InternalCall,
    report: &mut CallReport,
) -> Result<Response<CallBody>, HostError> {
    if call.chain.hops > MAX_HOPS {
        return Err(HostError::LoopDetected(format!(
            "a chain of {} in-process calls (the most is {MAX_HOPS}); the last was {} calling {}",
            call.chain.hops, call.caller, call.callee
        )));
    }
    if let Some(fanout) = &call.chain.fanout
        && !fanout.take()
    {
        return Err(HostError::TooManyCalls(format!(
            "this request from outside has caused its limit of {} in-process calls (it reached `{}` first); the last was {} calling {}",
            fanout.budget(),
            fanout.root,
            call.caller,
            call.callee
        )));
    }
    if app.shutdown.is_triggered() {
        return Err(HostError::ShuttingDown);
    }
    let current = app
        .droplets
        .get(&call.callee)
        .ok_or_else(|| HostError::DropletNotFound(format!("no droplet named `{}`", call.callee)))?;
    let path = call.request.uri().path().to_string();
    if let Some(endpoint) = contract::Endpoint::of(call.request.method(), &path) {
        return contract::answer(app, &current, endpoint, call.request.headers())
            .await
            .map(|response| response.map(CallBody::from));
    }
    let hop = Hop {
        caller: call.caller,
        chain: call.chain,
        deadline: call.deadline,
    };
    let droplet = dispatch::choose_version(app, current, call.request.headers());
    let request = call.request.map(Full::new);
    dispatch::call(
        app,
        &droplet,
        request,
        path,
        &call.trace_id,
        report,
        Some(&hop),
    )
    .await
}

/// A response body that keeps its response bytes counted against the
/// host's budget until the caller has read it.
struct Holding {
    inner: CallBody,
    _held: Option<HeldBytes>,
}

impl http_body::Body for Holding {
    type Data = Bytes;
    type Error = StreamCut;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}
