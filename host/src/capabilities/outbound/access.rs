//! `wasi:http/outgoing-handler`: outbound HTTP under the droplet's
//! allowlist, caps and deadline. The standard interface is implemented by
//! `wasmtime-wasi-http`; this capability is its send hook, which hands every
//! request to [`crate::capabilities::outbound::Outbound`].

use std::sync::Arc;
use tracing::Instrument;

use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::capabilities::call_context::CallContext;
use crate::capabilities::outbound::{CallLimits, Outbound, OutboundReport};

/// The host-wide half: the process's outbound client and limits.
pub struct OutboundCapability {
    /// The client every droplet's requests go through.
    pub outbound: Arc<Outbound>,
}

/// What one call may send.
pub struct OutboundAccess {
    outbound: Arc<Outbound>,
    limits: CallLimits,
}

impl OutboundCapability {
    /// One call's view: the droplet's allowlist and request cap, the call's
    /// deadline and trace id.
    pub fn for_call(&self, call: &CallContext<'_>) -> OutboundAccess {
        OutboundAccess {
            outbound: Arc::clone(&self.outbound),
            limits: CallLimits {
                droplet: Arc::clone(call.droplet),
                allowed: Arc::clone(&call.manifest.outbound),
                remaining: call.manifest.max_outbound_requests,
                deadline: call.deadline,
                trace_id: Arc::clone(call.trace_id),
                report: Arc::new(OutboundReport::default()),
                hops: call.hops,
            },
        }
    }
}

impl OutboundAccess {
    /// Where this call's outbound costs are summed.
    pub fn report(&self) -> Arc<OutboundReport> {
        Arc::clone(&self.limits.report)
    }
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
        let span = crate::step_span!(
            "outbound",
            otel.kind = "client",
            otel.name = %format_args!("{} {}", request.method(), request.uri().host().unwrap_or("")),
            http.request.method = %request.method(),
            server.address = request.uri().host().unwrap_or(""),
            // The path without the query: queries carry keys.
            url.path = request.uri().path(),
            http.response.status_code = tracing::field::Empty,
        );
        let sent = self.outbound.send(request, &mut self.limits);
        Box::new(async move {
            let response = sent.instrument(span.clone()).await?;
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
