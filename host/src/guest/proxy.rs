//! Serving a standard `wasi:http/proxy` component: its
//! `incoming-handler.handle`, with the request body streamed in as the
//! client sends it and the response head handed on as soon as the component
//! sets it (its body then streams to the client while the call runs on:
//! [`super::stream`]).

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use tokio::sync::oneshot;
use wasmtime::Store;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// A request body on its way into a `wasi:http` component.
pub type ProxyBody = UnsyncBoxBody<Bytes, ErrorCode>;

/// Where the component's response head goes once it is set.
pub type HeadSender = oneshot::Sender<http::Response<HyperOutgoingBody>>;

/// Runs a `wasi:http/proxy` component's `incoming-handler.handle` on
/// `request` and hands its response (head, and body still being written)
/// to `head` as soon as it is set. Returns when the handler returns: a
/// handler that returned without setting a response fails at once; one
/// that set it but left its body unfinished has its body ended cleanly
/// when the instance is dropped (as `wasmtime serve` does). The live host
/// and a replay ([`super::replay`]) serve components alike.
pub(super) async fn serve_http<T: WasiHttpView + Send>(
    store: &mut Store<T>,
    proxy: &wasmtime_wasi_http::p2::bindings::Proxy,
    request: http::Request<ProxyBody>,
    head: HeadSender,
) -> wasmtime::Result<()> {
    let incoming = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, request)?;
    let (sender, mut receiver) = oneshot::channel();
    let outparam = store.data_mut().http().new_response_outparam(sender)?;
    let handle = proxy
        .wasi_http_incoming_handler()
        .call_handle(&mut *store, incoming, outparam);
    tokio::pin!(handle);
    let mut head = Some(head);
    loop {
        tokio::select! {
            set = &mut receiver, if head.is_some() => {
                hand_on(set.ok(), &mut head)?;
            }
            handled = &mut handle => {
                handled?;
                if head.is_some() {
                    // Set just before returning, or never.
                    hand_on(receiver.try_recv().ok(), &mut head)?;
                }
                return Ok(());
            }
        }
    }
}

/// The component's response as set through its outparam (`None`: never
/// set), sent on to `head`; or why there is none.
fn hand_on(
    set: Option<Result<http::Response<HyperOutgoingBody>, ErrorCode>>,
    head: &mut Option<HeadSender>,
) -> wasmtime::Result<()> {
    let response = set
        .ok_or_else(|| wasmtime::format_err!("the component returned without setting a response"))?
        .map_err(|code| wasmtime::format_err!("the component answered with an error: {code:?}"))?;
    if let Some(head) = head.take() {
        // The dispatcher stopped waiting only if the request was dropped.
        let _ = head.send(response);
    }
    Ok(())
}
