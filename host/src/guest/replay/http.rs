//! A recorded `wasi:http` component's call run again: the recorded request
//! (its body as the component read it) through its `incoming-handler`, and
//! its response collected as the component writes it, as the live host
//! takes it ([`crate::guest::proxy`]).

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use tokio::sync::oneshot;
use wasmtime::Store;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::outcome::{Answered, invalid_status};
use super::state::ReplayState;
use crate::capabilities::recording::{Blob, Outcome, RecordedRequest};

type Set = Option<Result<http::Response<HyperOutgoingBody>, ErrorCode>>;

/// Calls the component's handler with `request`; its outcome, whose body
/// is complete once the store is dropped.
pub(super) async fn serve(
    store: &mut Store<ReplayState>,
    pre: &ProxyPre<ReplayState>,
    request: &RecordedRequest,
) -> wasmtime::Result<Answered> {
    let proxy = pre.instantiate_async(&mut *store).await?;
    let authority = request.authority.as_deref().unwrap_or("localhost");
    let query = match request.query.as_str() {
        "" => String::new(),
        query => format!("?{query}"),
    };
    let mut builder = http::Request::builder()
        .method(request.method.as_str())
        .uri(format!("http://{authority}{}{query}", request.path));
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    let body = Full::new(Bytes::from(request.body.0.clone()))
        .map_err(|never| -> ErrorCode { match never {} })
        .boxed_unsync();
    let built = builder.body(body).map_err(wasmtime::Error::msg)?;
    let incoming = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, built)?;
    let (sender, mut receiver) = oneshot::channel();
    let outparam = store.data_mut().http().new_response_outparam(sender)?;
    let handle = proxy
        .wasi_http_incoming_handler()
        .call_handle(&mut *store, incoming, outparam);
    tokio::pin!(handle);
    let mut answered = None;
    loop {
        tokio::select! {
            set = &mut receiver, if answered.is_none() => {
                answered = Some(collect(set.ok())?);
            }
            handled = &mut handle => {
                handled?;
                if answered.is_none() {
                    // Set just before returning, or never.
                    answered = Some(collect(receiver.try_recv().ok())?);
                }
                break;
            }
        }
    }
    answered
        .ok_or_else(|| wasmtime::format_err!("the component returned without setting a response"))
}

/// The response as the component set it, its body read as it is written
/// (in a task of its own: the component may wait for its reader).
fn collect(set: Set) -> wasmtime::Result<Answered> {
    let response = set
        .ok_or_else(|| wasmtime::format_err!("the component returned without setting a response"))?
        .map_err(|code| wasmtime::format_err!("the component answered with an error: {code:?}"))?;
    let (parts, mut body) = response.into_parts();
    let status = parts.status.as_u16();
    if let Some(invalid) = invalid_status(status) {
        return Ok(Box::pin(std::future::ready(invalid)));
    }
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.to_string(), value)
        })
        .collect();
    let read = tokio::spawn(async move {
        let mut bytes = Vec::new();
        // As far as it was written: an error ends it, as it ends the
        // client's.
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                bytes.extend_from_slice(data);
            }
        }
        bytes
    });
    Ok(Box::pin(async move {
        let body = read.await.unwrap_or_default();
        Outcome::Response {
            status,
            headers,
            body: Blob(body),
        }
    }))
}
