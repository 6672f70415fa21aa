//! A call streamed both ways — a `wasi:http` component's, or a droplet's
//! that imports `fp:droplet/streaming`: the request body reaches the guest
//! as the client sends it, and the response goes back as soon as the guest
//! sets its head, its body following while the call runs on in a task of
//! its own (which holds the call's slots until the instance is gone). The
//! budget covers the whole exchange: at the deadline the call ends, and a
//! body it had not finished is cut off. A streaming droplet that returns
//! its response instead is answered as any droplet is.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::call_parts::{
    CallReport, Hop, acquire_slots, call_error, chain, deadline, memory_bytes, record,
};
use super::recording;
use super::recording_streamed::StreamedTaping;
use crate::app::App;
use crate::bindings::GuestResponse;
use crate::bindings::fp::droplet::streaming::StreamError;
use crate::capabilities::streaming::{CallStreams, StreamOut};
use crate::droplets::Droplet;
use crate::droplets::loader::Ready;
use crate::error::HostError;
use crate::guest::call::{Call, CallRequest};
use crate::guest::records::{Answer, guest_request, http_request, into_http, proxy_response};
use crate::guest::runtime::Linked;
use crate::guest::stream::{self, CallBody, CallEnd, StreamedBody};
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
    let limited = request_body::streamed(
        &parts.headers,
        body,
        limit,
        app.body_read_timeout,
        &app.request_bodies,
    )
    .map_err(|err| err.host_error(limit_kb))?;
    let noted = {
        let refused = Arc::clone(&refused);
        move |err: BodyError| {
            let _ = refused.set(err);
            err
        }
    };

    let deadline = deadline(manifest, hop, &parts.extensions);
    let slots = acquire_slots(app, droplet, deadline, hop)
        .instrument(crate::step_span!("queue"))
        .await?;
    let caller_name = hop.map(|hop| &*hop.caller);
    let forward = manifest.forward_authorization;
    // A streaming droplet's request, its body left to `read-body`.
    let droplet_request = match &ready.pre {
        Linked::Droplet(_) => Some(guest_request(
            &parts,
            path.clone(),
            Bytes::new(),
            trace_id,
            forward,
            caller_name,
        )?),
        Linked::Proxy(_) => None,
    };
    let taping = match &droplet_request {
        Some(request) => recording::begin(app, droplet, &parts.headers, request, &caller, hop),
        None => {
            let request = || http_request(&parts, &path, (), trace_id, forward, caller_name);
            recording::begin_http(app, droplet, &parts.headers, request, &caller, hop)
        }
    }
    .map(|taping| StreamedTaping::new(app, droplet, trace_id, taping));
    let tape = taping.as_ref().map(|taping| taping.tape().clone());
    let (call_end, body_end) = taping.as_ref().map(StreamedTaping::ends).unzip();
    let mut imports = app.capabilities.for_call(
        &droplet.grants,
        &droplet.call_context(
            trace_id,
            caller,
            deadline,
            chain(app, droplet, hop),
            tape.clone(),
        ),
    );
    let outbound = imports.outbound.report();
    let mut stream_out = None;
    let (request, heads) = match &ready.pre {
        Linked::Proxy(_) => {
            let body = limited
                .map_err(move |err| error_code(noted(err)))
                .boxed_unsync();
            let body = match &taping {
                Some(taping) => taping.reading(body),
                None => body,
            };
            let request = http_request(
                &parts,
                &path,
                body,
                trace_id,
                manifest.forward_authorization,
                caller_name,
            );
            let (head, headed) = oneshot::channel();
            (CallRequest::Http { request, head }, Heads::Http(headed))
        }
        Linked::Droplet(_) => {
            let body = limited
                .map_err(move |err| stream_error(noted(err)))
                .boxed_unsync();
            let Some(request) = droplet_request else {
                return Err(HostError::Internal);
            };
            let (head, headed) = oneshot::channel();
            let (sender, pieces) = mpsc::channel(PIECES_IN_FLIGHT);
            let out = Arc::new(StreamOut::new(sender));
            imports.body.stream_to(Arc::clone(&out));
            // Whether it started its response, for its recording.
            stream_out = Some(Arc::clone(&out));
            imports.streaming.attach(CallStreams {
                head,
                out,
                request: body,
            });
            (
                CallRequest::Droplet(request),
                Heads::Droplet(headed, pieces),
            )
        }
    };
    let end = Arc::new(CallEnd::default());
    let run = {
        let (runtime, droplet, end, recorded) = (
            Arc::clone(&app.runtime),
            Arc::clone(droplet),
            Arc::clone(&end),
            taping.clone(),
        );
        async move {
            let _slots = slots;
            // Said when the call is over (or dropped), after its failure.
            let _call_end = call_end;
            let started = Instant::now();
            let in_flight = droplet.stats.enter();
            let result = runtime
                .call(
                    &ready.pre,
                    Call {
                        memory_bytes: memory_bytes(&droplet.manifest),
                        deadline,
                        imports,
                        request,
                        suspect: droplet.stats.failing(),
                        // It may wait on the client (or call out) for long.
                        calls_out: true,
                        end: Some(end),
                        tape,
                    },
                )
                .await;
            drop(in_flight);
            record(&droplet, started.elapsed(), &result);
            match (&recorded, &result) {
                (Some(recorded), Err(err)) => recorded.failed(call_error(&droplet, err.clone())),
                // A streaming droplet that returned its response whole.
                (Some(recorded), Ok(Some(answer)))
                    if !stream_out
                        .as_ref()
                        .is_some_and(|out: &Arc<StreamOut>| out.started()) =>
                {
                    recorded.answered(
                        answer.response.status,
                        answer.response.headers.clone(),
                        answer.body.kept(),
                    )
                }
                _ => {}
            }
            result
        }
        .in_current_span()
    };
    let call_started = Instant::now();
    // Until the head is out, the call is this request's: dropped with it.
    let task = AbortOnDropHandle::new(tokio::spawn(run));
    let budget = app.capabilities.body.budget();
    let headed = match heads {
        Heads::Http(headed) => headed.await.map(|response| {
            let response = match (&taping, body_end) {
                (Some(taping), Some(body_end)) => taping.writing(response, body_end),
                _ => response,
            };
            proxy_response(response, Arc::clone(&end), budget)
        }),
        Heads::Droplet(headed, pieces) => headed.await.map(|head| {
            let pieces = match (&taping, body_end) {
                (Some(taping), Some(body_end)) => {
                    taping.head(head.status, head.headers.clone());
                    taping.written(stream::pieces(pieces), body_end)
                }
                _ => stream::pieces(pieces),
            };
            let checked = into_http(Answer {
                response: head,
                body: app.capabilities.body.empty_body(),
            });
            checked.map(|response| {
                let body = StreamedBody::new(pieces, Arc::clone(&end), budget);
                response.map(|_| CallBody::Streamed(body))
            })
        }),
    };
    report.droplet_time = Some(call_started.elapsed());
    report.outbound = outbound.spent();
    match headed {
        Ok(response) => {
            report.from_droplet = response.is_ok();
            if response.is_ok() {
                // From now on the call runs on by itself, bounded by its deadline.
                drop(task.detach());
            }
            response
        }
        // The call ended without starting its response.
        Err(_) => {
            let result = task.await.map_err(|_| HostError::Internal)?;
            report.droplet_time = Some(call_started.elapsed());
            report.outbound = outbound.spent();
            // A body refused as it arrived is the client's doing.
            if let (Some(refused), Err(_) | Ok(None)) = (refused.get(), &result) {
                return Err(refused.host_error(limit_kb));
            }
            match result {
                Ok(Some(answer)) => {
                    report.from_droplet = true;
                    into_http(answer)
                        .map(|response| response.map(CallBody::from))
                        .inspect_err(|_| report.from_droplet = false)
                }
                Ok(None) => Err(HostError::DropletTrap(format!(
                    "droplet `{}` returned without setting a response",
                    droplet.name
                ))),
                Err(err) => Err(call_error(droplet, err)),
            }
        }
    }
}

/// Pieces of a started droplet response on their way to the client at
/// once: a write waits while this many are.
const PIECES_IN_FLIGHT: usize = 4;

/// Where the guest's response head will come from.
enum Heads {
    /// A `wasi:http` component's outparam.
    Http(oneshot::Receiver<http::Response<HyperOutgoingBody>>),
    /// A droplet's `streaming.start-response`, and its body's pieces.
    Droplet(oneshot::Receiver<GuestResponse>, mpsc::Receiver<Bytes>),
}

/// What a streaming droplet reading the request body is told when the
/// host refused it.
fn stream_error(err: BodyError) -> StreamError {
    match err {
        BodyError::TooLarge => StreamError::TooLarge,
        BodyError::TimedOut => StreamError::TimedOut,
        BodyError::Unreadable => StreamError::Closed,
        BodyError::HostBusy => StreamError::HostBusy,
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
