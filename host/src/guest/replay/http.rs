//! A recorded `wasi:http` component's call run again: the recorded request
//! (its body as the component read it) through its `incoming-handler`, and
//! its response collected as the component writes it, as the live host
//! takes it ([`crate::guest::proxy`]).

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use tokio::sync::oneshot;
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::outcome::{Answered, invalid_status};
use super::state::ReplayState;
use crate::capabilities::recording::tee::header_pairs;
use crate::capabilities::recording::{Blob, Outcome, RecordedRequest};
use crate::guest::proxy::serve_http;

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
    let (head, mut headed) = oneshot::channel();
    let served = serve_http(store, &proxy, built, head);
    tokio::pin!(served);
    let mut answered = None;
    loop {
        tokio::select! {
            set = &mut headed, if answered.is_none() => match set {
                Ok(response) => answered = Some(collect(response)),
                // Never set: `serve_http` says so.
                Err(_) => {
                    served.as_mut().await?;
                    break;
                }
            },
            done = &mut served => {
                done?;
                if answered.is_none() {
                    answered = headed.try_recv().ok().map(collect);
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
fn collect(response: http::Response<HyperOutgoingBody>) -> Answered {
    let (parts, mut body) = response.into_parts();
    let status = parts.status.as_u16();
    if let Some(invalid) = invalid_status(status) {
        return Box::pin(std::future::ready(invalid));
    }
    let headers = header_pairs(&parts.headers);
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
    Box::pin(async move {
        let body = read.await.unwrap_or_default();
        Outcome::Response {
            status,
            headers,
            body: Blob(body),
        }
    })
}
