//! Serving a standard `wasi:http/proxy` component: its
//! `incoming-handler.handle`, with the response body read as it is
//! written into the call's response body (the same limits as a droplet's).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use wasmtime::Store;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use super::records::Answer;
use super::runtime::CallState;
use crate::bindings::GuestResponse;

/// How long a `wasi:http` component that has returned may take to finish
/// its response (whatever it wrote is buffered by then).
const PROXY_FINISH_GRACE: Duration = Duration::from_millis(100);

/// Runs a `wasi:http/proxy` component's `incoming-handler.handle` on
/// `request`, reading its response body as it is written (so a component
/// that streams is never blocked on a full buffer), into the call's
/// response body: the same size limit and host-wide budget as a droplet's.
pub(super) async fn serve_http(
    store: &mut Store<CallState>,
    proxy: &wasmtime_wasi_http::p2::bindings::Proxy,
    request: http::Request<Full<Bytes>>,
) -> wasmtime::Result<Answer> {
    use http_body_util::BodyExt;

    let incoming = store.data_mut().http().new_incoming_request(
        Scheme::Http,
        request.map(|body| {
            body.map_err(
                |never| -> wasmtime_wasi_http::p2::bindings::http::types::ErrorCode {
                    match never {}
                },
            )
        }),
    )?;
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let outparam = store.data_mut().http().new_response_outparam(sender)?;
    let mut written = store.data_mut().imports.body.take();
    let collect = async move {
        let response = receiver
            .await
            .map_err(|_| {
                wasmtime::format_err!("the component returned without setting a response")
            })?
            .map_err(|code| {
                wasmtime::format_err!("the component answered with an error: {code:?}")
            })?;
        let (parts, mut body) = response.into_parts();
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|err| wasmtime::format_err!("its response body failed: {err}"))?;
            // A refused body ends the call: the answer is the host's, and
            // the instance (perhaps blocked writing the rest) is dropped.
            if let Some(data) = frame.data_ref()
                && written.write(data).is_err()
            {
                break;
            }
        }
        Ok::<_, wasmtime::Error>((parts, written))
    };
    let handle = proxy
        .wasi_http_incoming_handler()
        .call_handle(&mut *store, incoming, outparam);
    tokio::pin!(collect, handle);
    let mut returned = false;
    let collected = tokio::select! {
        collected = &mut collect => collected,
        handled = &mut handle => {
            handled?;
            returned = true;
            // It has returned: whatever it wrote is buffered.
            tokio::time::timeout(PROXY_FINISH_GRACE, &mut collect)
                .await
                .map_err(|_| wasmtime::format_err!("the component returned without finishing its response"))?
        }
    };
    let (parts, body) = collected?;
    // Let the handler finish too (it may still be running after the body).
    if !returned {
        let _ = tokio::time::timeout(PROXY_FINISH_GRACE, handle).await;
    }
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    Ok(Answer {
        response: GuestResponse {
            status: parts.status.as_u16(),
            headers,
        },
        body,
    })
}
