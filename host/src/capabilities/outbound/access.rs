//! `wasi:http/outgoing-handler`: outbound HTTP under the droplet's
//! allowlist, caps and deadline. The standard interface is implemented by
//! `wasmtime-wasi-http`; this capability is its send hook, which hands every
//! request to [`crate::capabilities::outbound::Outbound`].

use std::sync::Arc;
use tracing::Instrument;

use wasmtime::component::Linker;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::allow::Allowlist;
use super::client::{CallLimits, Outbound, OutboundReport};
use super::series::OutboundSeries;
use crate::capabilities::call_context::CallContext;
use crate::capabilities::capability::{Capability, StoreData};
use crate::capabilities::recording::entry::HttpReply;
use crate::capabilities::recording::tee::{Stream, Tee, header_pairs};
use crate::capabilities::recording::{Blob, Call, Tape};
use crate::droplets::manifest::{Manifest, ManifestError};

/// The host-wide half: the process's outbound client and limits.
pub struct OutboundCapability {
    /// The client every droplet's requests go through.
    pub outbound: Arc<Outbound>,
}

/// What one call may send.
pub struct OutboundAccess {
    outbound: Arc<Outbound>,
    limits: CallLimits,
    tape: Option<Tape>,
}

/// What a droplet version's manifest allows: where (its
/// `allowed_outbound_hosts`, parsed at load) and how many requests a call.
#[derive(Default)]
pub struct OutboundGrant {
    /// Where requests may go; empty: nowhere.
    pub allowed: Arc<Allowlist>,
    /// Requests one call may send.
    pub max_requests: u32,
    /// The version's outbound metrics, by allowlist entry.
    pub series: Arc<OutboundSeries>,
}

impl Capability for OutboundCapability {
    const GRANT: Option<&'static str> = Some("http");
    const INTERFACES: &'static [&'static str] = &["wasi:http/outgoing-handler", "fp:droplet/calls"];
    type Grant = OutboundGrant;
    type Access = OutboundAccess;

    /// `wasi:http`'s types and `outgoing-handler`, from wasmtime-wasi-http:
    /// its send hook is this call's [`OutboundAccess`], which the store's
    /// data hands over as its `WasiHttpView` hooks (so `access` is not
    /// needed here). `fp:droplet/calls` needs the store's table as well as
    /// this half: the registry links it (`calls::add_to_linker`).
    fn link<T: StoreData>(
        linker: &mut Linker<T>,
        _access: fn(&mut T) -> &mut OutboundAccess,
    ) -> wasmtime::Result<()> {
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)
    }

    /// Granted by `allowed_outbound_hosts` alone: outbound HTTP is denied
    /// by default, and naming `http` in `capabilities` does not open it.
    fn granted(manifest: &Manifest) -> bool {
        !manifest.allowed_outbound_hosts.is_empty()
    }

    fn refusal(import: &str) -> String {
        format!(
            "it imports {import} (outbound HTTP and calls to other droplets), which is denied by default: list where it may go in `allowed_outbound_hosts = [\"https://…\"]`"
        )
    }

    fn grant(&self, manifest: &Manifest) -> Result<OutboundGrant, ManifestError> {
        let allowed = Allowlist::parse(&manifest.allowed_outbound_hosts).map_err(|problem| {
            ManifestError::Invalid {
                field: "allowed_outbound_hosts",
                problem,
            }
        })?;
        Ok(OutboundGrant {
            series: Arc::new(OutboundSeries::new(&allowed)),
            allowed: Arc::new(allowed),
            max_requests: manifest.max_outbound_requests,
        })
    }

    /// One call's view: the droplet's allowlist and request cap, the call's
    /// deadline and trace id.
    fn for_call(&self, grant: &OutboundGrant, call: &CallContext<'_>) -> OutboundAccess {
        OutboundAccess {
            outbound: Arc::clone(&self.outbound),
            limits: CallLimits {
                droplet: Arc::clone(call.droplet),
                allowed: Arc::clone(&grant.allowed),
                series: Arc::clone(&grant.series),
                remaining: grant.max_requests,
                deadline: call.deadline,
                trace_id: Arc::clone(call.trace_id),
                report: Arc::new(OutboundReport::default()),
                chain: call.chain.clone(),
            },
            tape: call.tape.clone(),
        }
    }
}

impl OutboundAccess {
    /// Where this call's outbound costs are summed.
    pub fn report(&self) -> Arc<OutboundReport> {
        Arc::clone(&self.limits.report)
    }

    /// When the call must be over.
    pub(super) fn deadline(&self) -> tokio::time::Instant {
        self.limits.deadline
    }

    /// Sends `request` under this call's limits.
    pub(super) fn send(
        &mut self,
        request: http::Request<WasiBody>,
    ) -> impl Future<Output = Result<http::Response<WasiBody>, Error>> + Send + 'static {
        self.outbound.send(request, &mut self.limits)
    }

    /// Keeps `request` on the call's tape, in the order the guest sent it;
    /// the tape and the entry's index, to answer it when it is.
    pub(super) fn tape_send(&self, request: &http::Request<WasiBody>) -> Option<(Tape, usize)> {
        self.tape_call(request.method().as_str(), &request.uri().to_string())
    }

    /// Keeps an outbound request to `url` on the call's tape.
    pub(super) fn tape_call(&self, method: &str, url: &str) -> Option<(Tape, usize)> {
        self.tape.as_ref().and_then(|tape| {
            let call = Call::HttpSend {
                method: method.to_string(),
                url: url.to_string(),
            };
            tape.send(call).map(|index| (tape.clone(), index))
        })
    }
}

/// The span of one outbound request; its status is recorded when it comes.
pub(super) fn outbound_span(request: &http::Request<WasiBody>) -> tracing::Span {
    crate::step_span!(
        "outbound",
        otel.kind = "client",
        otel.name = %format_args!("{} {}", request.method(), request.uri().host().unwrap_or("")),
        http.request.method = %request.method(),
        server.address = request.uri().host().unwrap_or(""),
        // The path without the query: queries carry keys.
        url.path = request.uri().path(),
        http.response.status_code = tracing::field::Empty,
    )
}

type Sent = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), Error>> + Send>,
    ),
    Error,
>;

impl WasiHttpHooks for OutboundAccess {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let span = outbound_span(&request);
        let taped = self.tape_send(&request);
        let sent = self.send(request);
        Box::new(async move {
            let response = sent.instrument(span.clone()).await;
            let response = match taped {
                Some((tape, index)) => keep(response, tape, index),
                None => response,
            }?;
            span.record(
                "http.response.status_code",
                i64::from(response.status().as_u16()),
            );
            let done: Box<dyn Future<Output = Result<(), Error>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}

/// Keeps an outbound request's answer on the tape, and its body as the
/// guest reads it.
fn keep(
    response: Result<http::Response<WasiBody>, Error>,
    tape: Tape,
    index: usize,
) -> Result<http::Response<WasiBody>, Error> {
    use http_body_util::BodyExt as _;
    match response {
        Ok(response) => {
            let reply = HttpReply {
                status: response.status().as_u16(),
                headers: header_pairs(response.headers()),
                body: Blob::default(),
                body_error: None,
            };
            tape.answer(index, Ok(reply));
            let stream = Stream::Answer(index);
            Ok(response.map(|body| Tee::new(body, tape, stream).boxed_unsync()))
        }
        Err(err) => {
            tape.answer(index, Err(format!("{err:?}")));
            Err(err)
        }
    }
}
