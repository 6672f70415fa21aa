//! Outbound HTTP from droplets: `wasi:http/outgoing-handler`, implemented
//! on `wasmtime-wasi-http` with the host's own send hook.
//!
//! Every request goes through [`Outbound::send`]:
//! 1. **Deny by default**: its destination must match the droplet's
//!    `allowed_outbound_hosts` ([`allow::Allowlist`]); otherwise the guest
//!    gets `HTTP-request-denied`, and the refusal is logged and counted.
//! 2. **Caps**: at most `max_outbound_requests` per call, at most
//!    `--max-outbound-connections` requests in flight in the process.
//! 3. **SSRF guard**: names are resolved by the host and only public
//!    addresses are used ([`guard`]); a loopback, private, link-local or
//!    metadata address is reached only when the manifest lists that very
//!    address.
//! 4. **Inside the budget**: connecting, the response head and every piece
//!    of the body are bounded by the caller's deadline; the response body
//!    by [`MAX_RESPONSE_BYTES`]; redirects are not followed (the guest gets
//!    the 3xx).
//! 5. The trace id travels as `traceparent`; counts, latency and the time
//!    spent outbound go to metrics and the access log.
//!
//! One client serves the whole process ([`super::transport`]): pooled
//! keep-alive connections, HTTP/1.1 and HTTP/2, TLS with rustls and the
//! webpki roots, and nothing sent the guest did not set but `traceparent`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use wasmtime_wasi_http::{Error, WasiBody};

use super::allow::{Allowlist, Destination};
use super::bodies::{BoundedBody, MAX_REQUEST_BYTES, SendCut, SentBody};
use super::guard;
use super::in_process::{Chain, INTERNAL_SUFFIX, InternalCall, InternalCalls};
use super::series::{OutboundSeries, Outcome};
use super::transport::{Transport, transport};

/// The process's outbound client and limits.
pub struct Outbound {
    client: Transport,
    /// The host, for `*.droplet.internal`.
    internal: std::sync::OnceLock<std::sync::Weak<dyn InternalCalls>>,
    /// Requests in flight across the process (until the response body is
    /// read or dropped).
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
}

/// What one call's outbound requests cost: for the access log and
/// `server-timing`.
#[derive(Debug, Default)]
pub struct OutboundReport {
    requests: AtomicU32,
    micros: AtomicU64,
}

impl OutboundReport {
    /// Requests sent (or refused) and the time spent waiting for response
    /// heads, in microseconds.
    pub fn totals(&self) -> (u32, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.micros.load(Ordering::Relaxed),
        )
    }

    /// Requests sent and the time spent waiting for them, when the call
    /// sent any.
    pub fn spent(&self) -> Option<(u32, Duration)> {
        let (requests, micros) = self.totals();
        (requests > 0).then(|| (requests, Duration::from_micros(micros)))
    }
}

/// What one call may do.
pub struct CallLimits {
    /// The droplet, for logs and metrics.
    pub droplet: Arc<str>,
    /// Its allowlist.
    pub allowed: Arc<Allowlist>,
    /// Its outbound metrics.
    pub series: Arc<OutboundSeries>,
    /// Requests it may still send in this call.
    pub remaining: u32,
    /// When the call must be over.
    pub deadline: Instant,
    /// The call's trace id, sent as `traceparent`.
    pub trace_id: Arc<str>,
    /// Where the call's costs are summed.
    pub report: Arc<OutboundReport>,
    /// In-process calls that led to this one.
    pub chain: Chain,
}

impl Outbound {
    /// The client (no redirects, no proxy, the SSRF-guarded resolver:
    /// [`transport`]) and a cap of `max_in_flight` requests at once.
    pub fn new(max_in_flight: usize) -> Result<Self, String> {
        Ok(Self {
            client: transport(),
            internal: std::sync::OnceLock::new(),
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
            max_in_flight: max_in_flight.max(1),
        })
    }

    /// Makes `host` answer `*.droplet.internal` (once, at start-up).
    pub fn set_internal(&self, host: std::sync::Weak<dyn InternalCalls>) {
        let _ = self.internal.set(host);
    }

    /// Sends `request` for a call limited by `limits`; the future resolves
    /// to the response (its body bounded too) or the error the guest sees.
    pub fn send(
        &self,
        request: http::Request<WasiBody>,
        limits: &mut CallLimits,
    ) -> impl Future<Output = Result<http::Response<WasiBody>, Error>> + Send + 'static {
        let checked = self.check(&request, limits);
        let (client, in_flight, max_in_flight) = (
            self.client.clone(),
            Arc::clone(&self.in_flight),
            self.max_in_flight,
        );
        let (droplet, deadline, trace_id, report, series) = (
            Arc::clone(&limits.droplet),
            limits.deadline,
            Arc::clone(&limits.trace_id),
            Arc::clone(&limits.report),
            Arc::clone(&limits.series),
        );
        let internal = self.internal.get().and_then(std::sync::Weak::upgrade);
        let chain = limits.chain.next();
        async move {
            let (destination, entry) = checked?;
            let host = destination.host;
            let started = std::time::Instant::now();
            if let Some(callee) = host.strip_suffix(INTERNAL_SUFFIX) {
                let internal = internal.ok_or(Error::DestinationUnavailable)?;
                let (parts, body) = request.into_parts();
                let body = read_body(body, deadline).await?;
                let response = internal
                    .call(InternalCall {
                        callee: callee.to_string(),
                        request: http::Request::from_parts(parts, body),
                        caller: Arc::clone(&droplet),
                        chain,
                        deadline,
                        trace_id,
                    })
                    .await;
                let elapsed = started.elapsed();
                report
                    .micros
                    .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
                let outcome = Outcome::Status(response.status().as_u16());
                series.count(&droplet, entry, outcome, Some(elapsed));
                return Ok(response);
            }
            let result = async {
                let permit = in_flight.try_acquire_owned().map_err(|_| {
                    Error::InternalError(Some(format!(
                        "the host has {max_in_flight} outbound requests in flight already"
                    )))
                })?;
                let request = outgoing(request, &trace_id, deadline)?;
                let response = tokio::time::timeout_at(deadline, client.request(request))
                    .await
                    .map_err(|_| Error::ConnectionTimeout)?
                    .map_err(|err| error_code(&err))?;
                Ok(response.map(|body| BoundedBody::new(body, deadline, permit).boxed_unsync()))
            }
            .await;
            let elapsed = started.elapsed();
            report
                .micros
                .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
            let outcome = match &result {
                Ok(response) => Outcome::Status(response.status().as_u16()),
                Err(Error::ConnectionTimeout) => Outcome::Timeout,
                Err(_) => Outcome::Error,
            };
            series.count(&droplet, entry, outcome, Some(elapsed));
            if let Err(err) = &result {
                tracing::info!(droplet = %droplet, host = %host, error = ?err, "outbound request failed");
            }
            result
        }
    }

    /// The checks made before anything is sent: the destination, the
    /// allowlist (the index of the entry that allows it), the per-call
    /// count.
    fn check(
        &self,
        request: &http::Request<WasiBody>,
        limits: &mut CallLimits,
    ) -> Result<(Destination, usize), Error> {
        limits.report.requests.fetch_add(1, Ordering::Relaxed);
        let Some(destination) = Destination::of(request.uri()) else {
            return Err(Error::HttpRequestUriInvalid);
        };
        let Some(entry) = limits.allowed.entry_for(&destination) else {
            tracing::warn!(droplet = %limits.droplet, destination = %destination, "outbound request denied: not in allowed_outbound_hosts");
            limits.series.denied(&limits.droplet);
            return Err(Error::HttpRequestDenied);
        };
        if limits.remaining == 0 {
            limits
                .series
                .count(&limits.droplet, entry, Outcome::OverLimit, None);
            return Err(Error::InternalError(Some(
                "this call sent max_outbound_requests already".to_string(),
            )));
        }
        limits.remaining -= 1;
        if let Some(ip) = destination.ip()
            && !guard::is_public(ip)
            && !limits.allowed.lists_address(&destination)
        {
            return Err(Error::DestinationIpProhibited);
        }
        Ok((destination, entry))
    }
}

/// The guest's request as it is sent: its own headers and `traceparent`
/// set by the host, the head at once, the body as the guest writes it (at
/// most [`MAX_REQUEST_BYTES`], within the deadline).
fn outgoing(
    request: http::Request<WasiBody>,
    trace_id: &str,
    deadline: Instant,
) -> Result<http::Request<SentBody>, Error> {
    let (mut parts, body) = request.into_parts();
    if parts.uri.scheme().is_none() || parts.uri.authority().is_none() {
        return Err(Error::HttpRequestUriInvalid);
    }
    if let Ok(value) = http::HeaderValue::from_str(&traceparent(trace_id)) {
        parts.headers.insert("traceparent", value);
    }
    Ok(http::Request::from_parts(
        parts,
        SentBody::new(body, deadline),
    ))
}

/// A guest's request body, read whole: at most [`MAX_REQUEST_BYTES`],
/// within the deadline.
async fn read_body(body: WasiBody, deadline: Instant) -> Result<Bytes, Error> {
    Ok(tokio::time::timeout_at(
        deadline,
        http_body_util::Limited::new(body, MAX_REQUEST_BYTES).collect(),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)?
    .map_err(|_| Error::HttpRequestBodySize(Some(MAX_REQUEST_BYTES as u64)))?
    .to_bytes())
}

/// A W3C `traceparent` carrying `trace_id` (32 hex digits when it is one;
/// otherwise a hash of it) and a fresh span id.
pub fn traceparent(trace_id: &str) -> String {
    let hex32 = if trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        trace_id.to_ascii_lowercase()
    } else {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(trace_id.as_bytes()))[..32].to_string()
    };
    format!("00-{hex32}-{:016x}-01", fastrand::u64(1..))
}

/// What the guest is told about a failed request.
fn error_code(err: &hyper_util::client::legacy::Error) -> Error {
    // The resolver's refusal arrives boxed inside the connector's error:
    // found by type, or by its text where a wrapper hides the type.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<guard::Refused>() {
            return refused.code();
        }
        if let Some(refused) = guard::Refused::from_text(&cause.to_string()) {
            return refused.code();
        }
        match cause.downcast_ref::<SendCut>() {
            Some(SendCut::TooLarge) => {
                return Error::HttpRequestBodySize(Some(MAX_REQUEST_BYTES as u64));
            }
            Some(SendCut::TimedOut) => return Error::ConnectionTimeout,
            Some(cut @ SendCut::Body(_)) => return Error::InternalError(Some(cut.to_string())),
            None => {}
        }
        source = cause.source();
    }
    if err.is_connect() {
        Error::ConnectionRefused
    } else {
        Error::HttpProtocolError
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_carries_the_trace_id() {
        let id = "0af7651916cd43dd8448eb211c80319c";
        let header = traceparent(id);
        assert!(header.starts_with(&format!("00-{id}-")), "{header}");
        assert_eq!(header.len(), 55);
        let other = traceparent("not-hex");
        assert_eq!(other.len(), 55);
        assert_eq!(
            traceparent("not-hex")[3..35],
            other[3..35],
            "stable for one id"
        );
    }
}
