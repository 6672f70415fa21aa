//! `fp:droplet/calls` (WIT 0.2.3): a call to another droplet on this host,
//! its request and response each handed over whole in one import call.
//!
//! It is the same call as a `wasi:http` request to
//! `http://{name}.droplet.internal` — the request goes through
//! [`Outbound::send`](super::Outbound::send), so the allowlist, the per-call
//! count, the deadline, the hop limit, the trace id and the caller's name are
//! one code path — without `wasi:http`'s resources: no header fields, body
//! streams or future responses built one host call at a time (about twenty
//! for a small request), and no copy of the body through a stream. The call
//! starts in [`call`](wit::Host::call) and runs there as far as it goes
//! without waiting — a callee that answers without waiting on anything (most
//! do) has answered before `call` returns, with no task spawned and no other
//! worker woken — and from its first wait on in a task of its own, so a
//! droplet that starts several waits about as long as the slowest; its answer
//! is read whole, within the deadline and [`MAX_RESPONSE_BYTES`], and handed
//! over by `get`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tracing::Instrument;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi_http::{Error, WasiBody, WasiHttpHooks};

use super::access::OutboundAccess;
use super::bodies::{MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};
use super::in_process::INTERNAL_SUFFIX;
use super::pending::{self, Pending};
use crate::bindings::fp::droplet::calls::{self as wit, CallError, CallRequest, CallResponse};
use crate::capabilities::recording::Blob;
use crate::capabilities::recording::entry::HttpReply;

/// A call's answer as the guest receives it.
pub type Answer = Result<CallResponse, CallError>;

/// What the live `calls` interface reaches in a call's store.
pub struct CallsView<'a> {
    /// The store's resource table.
    pub table: &'a mut ResourceTable,
    /// The call's outbound half.
    pub access: &'a mut OutboundAccess,
}

struct Calls;

impl HasData for Calls {
    type Data<'a> = CallsView<'a>;
}

/// Links `fp:droplet/calls`; `view` reaches a call's table and outbound
/// half at once.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> CallsView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, Calls>(linker, view)
}

impl wit::Host for CallsView<'_> {
    async fn call(&mut self, request: CallRequest) -> wasmtime::Result<Resource<wit::PendingCall>> {
        let pending = self.access.start_call(request);
        Ok(Resource::new_own(self.table.push(pending)?.rep()))
    }
}

impl wit::HostPendingCall for CallsView<'_> {
    async fn subscribe(
        &mut self,
        call: Resource<wit::PendingCall>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        pending::subscribe::<Answer, _>(self.table, call)
    }

    async fn get(&mut self, call: Resource<wit::PendingCall>) -> wasmtime::Result<Option<Answer>> {
        pending::take::<Answer, _>(self.table, call)
    }

    async fn drop(&mut self, call: Resource<wit::PendingCall>) -> wasmtime::Result<()> {
        pending::remove::<Answer, _>(self.table, call)
    }
}

fn lost() -> Answer {
    Err(CallError::Failed(
        "the call ended without an answer".to_string(),
    ))
}

/// `http://{droplet}.droplet.internal{path}`: the URL the same call has in
/// `wasi:http`, which the allowlist, the logs and a recording see.
pub fn internal_url(droplet: &str, path_with_query: &str) -> String {
    format!("http://{droplet}{INTERNAL_SUFFIX}{path_with_query}")
}

impl OutboundAccess {
    /// Starts `request`: refused at once when it is not valid, otherwise
    /// sent through [`Outbound::send`](super::Outbound::send), at once and
    /// then, if it has to wait, in a task of its own ([`Pending::start`]).
    fn start_call(&mut self, request: CallRequest) -> Pending<Answer> {
        let url = internal_url(&request.droplet, &request.path_with_query);
        let method = request.method.clone();
        let request = match self.build(request, &url) {
            Ok(request) => request,
            Err(refused) => {
                // Kept on the tape all the same: a replay answers every call
                // from the recording, in order.
                if let Some((tape, index)) = self.tape_call(&method, &url) {
                    tape.answer(index, Err(Failure::of(&refused).encode()));
                }
                return Pending::answered(Err(refused), lost);
            }
        };
        let span = super::access::outbound_span(&request);
        // The URL as replay writes it (`replay::calls`), not re-rendered.
        let taped = self.tape_call(&method, &url);
        let deadline = self.deadline();
        let sent = self.send(request);
        let call = async move {
            let (answer, held) = match sent.await {
                Ok(response) => read_whole(response, deadline).await,
                Err(code) => (Err(call_error(code, &url)), None),
            };
            if let Ok(response) = &answer {
                tracing::Span::current()
                    .record("http.response.status_code", i64::from(response.status));
            }
            if let Some((tape, index)) = taped {
                let reply = match &answer {
                    Ok(response) => Ok(HttpReply {
                        status: response.status,
                        headers: response.headers.clone(),
                        body: Blob(response.body.clone()),
                        body_error: None,
                    }),
                    Err(err) => Err(Failure::of(err).encode()),
                };
                tape.answer(index, reply);
            }
            (answer, held)
        }
        .instrument(span);
        Pending::start(call, lost)
    }

    /// The `http` request the same call is in `wasi:http`, checked as
    /// `wasi:http` checks one.
    fn build(
        &mut self,
        request: CallRequest,
        url: &str,
    ) -> Result<http::Request<WasiBody>, CallError> {
        let invalid = |what: &str| CallError::InvalidUrl(format!("{what} of {url}"));
        if !request.path_with_query.starts_with('/') {
            return Err(invalid("the path (it must start with `/`)"));
        }
        let method = http::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| invalid("the method"))?;
        let uri: http::Uri = url
            .parse()
            .map_err(|_| invalid("the droplet's name or the path"))?;
        if request.body.len() > MAX_REQUEST_BYTES {
            return Err(CallError::TooLarge);
        }
        let mut built = http::Request::new(
            Full::new(Bytes::from(request.body))
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        *built.method_mut() = method;
        *built.uri_mut() = uri;
        for (name, value) in request.headers {
            let header = http::HeaderName::from_bytes(name.as_bytes())
                .ok()
                .zip(http::HeaderValue::from_str(&value).ok())
                .filter(|(name, _)| !self.is_forbidden_header(name));
            let Some((name, value)) = header else {
                return Err(CallError::InvalidHeader(name));
            };
            built.headers_mut().append(name, value);
        }
        Ok(built)
    }
}

/// The response read to its end, within the deadline and
/// [`MAX_RESPONSE_BYTES`]; its emptied body, which keeps the bytes counted.
async fn read_whole(
    response: http::Response<WasiBody>,
    deadline: Instant,
) -> (Answer, Option<WasiBody>) {
    let (parts, mut body) = response.into_parts();
    let mut bytes = Vec::new();
    let read = tokio::time::timeout_at(deadline, async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|err| CallError::Failed(format!("{err:?}")))?;
            if let Ok(data) = frame.into_data() {
                if (bytes.len() + data.len()) as u64 > MAX_RESPONSE_BYTES {
                    return Err(CallError::TooLarge);
                }
                bytes.extend_from_slice(&data);
            }
        }
        Ok(())
    })
    .await;
    let answer = match read {
        Err(_) => Err(CallError::TimedOut),
        Ok(Err(err)) => Err(err),
        Ok(Ok(())) => Ok(CallResponse {
            status: parts.status.as_u16(),
            headers: parts
                .headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_string(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: bytes,
        }),
    };
    (answer, Some(body))
}

/// A call's failure as a recording keeps it: `kind` or `kind: detail`.
/// Replay's bindings have a `call-error` of their own; both convert
/// through this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Denied(String),
    InvalidUrl(String),
    InvalidHeader(String),
    TimedOut,
    TooLarge,
    Failed(String),
}

impl Failure {
    /// The live call's error.
    pub fn of(err: &CallError) -> Self {
        match err {
            CallError::Denied(why) => Failure::Denied(why.clone()),
            CallError::InvalidUrl(why) => Failure::InvalidUrl(why.clone()),
            CallError::InvalidHeader(name) => Failure::InvalidHeader(name.clone()),
            CallError::TimedOut => Failure::TimedOut,
            CallError::TooLarge => Failure::TooLarge,
            CallError::Failed(why) => Failure::Failed(why.clone()),
        }
    }

    /// As a recording keeps it.
    pub fn encode(&self) -> String {
        match self {
            Failure::Denied(why) => format!("denied: {why}"),
            Failure::InvalidUrl(why) => format!("invalid-url: {why}"),
            Failure::InvalidHeader(name) => format!("invalid-header: {name}"),
            Failure::TimedOut => "timed-out".to_string(),
            Failure::TooLarge => "too-large".to_string(),
            Failure::Failed(why) => format!("failed: {why}"),
        }
    }

    /// From what a recording kept; an answer the recording could not keep
    /// whole (it reads as `wasi:http`'s `ConnectionTimeout`) is a timeout.
    pub fn decode(recorded: &str) -> Self {
        let (kind, detail) = recorded.split_once(": ").unwrap_or((recorded, ""));
        let detail = detail.to_string();
        match kind {
            "denied" => Failure::Denied(detail),
            "invalid-url" => Failure::InvalidUrl(detail),
            "invalid-header" => Failure::InvalidHeader(detail),
            "timed-out" | "ConnectionTimeout" => Failure::TimedOut,
            "too-large" => Failure::TooLarge,
            "failed" => Failure::Failed(detail),
            _ => Failure::Failed(recorded.to_string()),
        }
    }
}

/// What the guest is told about a call the host could not make.
fn call_error(code: Error, url: &str) -> CallError {
    match code {
        Error::HttpRequestDenied => CallError::Denied(format!(
            "{url} is not allowed: add its origin (or http://*.droplet.internal) to allowed_outbound_hosts in the droplet's manifest"
        )),
        Error::ConnectionTimeout
        | Error::ConnectionReadTimeout
        | Error::ConnectionWriteTimeout
        | Error::HttpResponseTimeout => CallError::TimedOut,
        Error::HttpRequestBodySize(_) | Error::HttpResponseBodySize(_) => CallError::TooLarge,
        Error::HttpRequestUriInvalid => CallError::InvalidUrl(url.to_string()),
        Error::InternalError(Some(why)) => CallError::Failed(why),
        Error::DestinationUnavailable => {
            CallError::Failed(format!("{url}: in-process calls are not available"))
        }
        other => CallError::Failed(format!("{url}: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_survive_a_recording() {
        for failure in [
            Failure::Denied("http://x.droplet.internal/ is not allowed".into()),
            Failure::InvalidUrl("the path of http://x.droplet.internal?".into()),
            Failure::InvalidHeader("connection".into()),
            Failure::TimedOut,
            Failure::TooLarge,
            Failure::Failed("this call sent max_outbound_requests already".into()),
        ] {
            assert_eq!(Failure::decode(&failure.encode()), failure);
        }
        assert_eq!(Failure::decode("ConnectionTimeout"), Failure::TimedOut);
    }
}
