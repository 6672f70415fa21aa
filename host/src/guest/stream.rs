//! A response whose body is still being written: the head goes to the
//! client as soon as the component sets it, and the body follows piece by
//! piece while the call runs on ([`StreamedBody`]), with backpressure (a
//! client that does not read leaves the guest blocked on a full channel
//! until its deadline) and the same limits as a whole body: at most
//! [`MAX_RESPONSE_BYTES`] in all, counted as they pass, and each piece on
//! its way held against the host-wide budget of response bytes.
//!
//! A call that fails after its head went out cannot change the status: the
//! body is cut off with an error ([`CallEnd`]), so the client sees a
//! truncated response, never a complete-looking one.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::capabilities::response_body::MAX_RESPONSE_BYTES;

/// What a body error is boxed as for hyper.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const FAILED: u8 = 2;

/// How a call whose body streams ended, set before its instance is
/// dropped (which ends the body's channel): its body then ends cleanly or
/// is cut off.
#[derive(Debug)]
pub struct CallEnd(AtomicU8);

impl Default for CallEnd {
    fn default() -> Self {
        CallEnd(AtomicU8::new(RUNNING))
    }
}

impl CallEnd {
    /// Records the call's end: `ok` when it returned, not when it trapped,
    /// overran its budget or was stopped.
    pub fn finish(&self, ok: bool) {
        let state = if ok { FINISHED } else { FAILED };
        self.0.store(state, Ordering::Release);
    }

    fn failed(&self) -> bool {
        self.0.load(Ordering::Acquire) == FAILED
    }
}

/// Why a streamed body was cut off.
#[derive(Debug, thiserror::Error)]
pub enum StreamCut {
    /// The call failed after its head was sent.
    #[error("the droplet failed while writing its response body")]
    Failed,
    /// The body went past [`MAX_RESPONSE_BYTES`].
    #[error("the response body is over the limit of {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    /// The host holds as many response bytes as it allows.
    #[error("the host holds as many response bytes as it allows")]
    HostBusy,
    /// The component's body failed.
    #[error("the response body failed: {0}")]
    Body(String),
}

/// The body a response carries: whole, or streamed from a running call.
pub enum CallBody {
    /// Known in full.
    Whole(Full<Bytes>),
    /// Still being written.
    Streamed(StreamedBody),
}

impl From<Full<Bytes>> for CallBody {
    fn from(body: Full<Bytes>) -> Self {
        CallBody::Whole(body)
    }
}

impl Body for CallBody {
    type Data = Bytes;
    type Error = StreamCut;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamCut>>> {
        match self.get_mut() {
            CallBody::Whole(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            CallBody::Streamed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            CallBody::Whole(body) => body.is_end_stream(),
            CallBody::Streamed(body) => body.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            CallBody::Whole(body) => body.size_hint(),
            CallBody::Streamed(body) => body.inner.size_hint(),
        }
    }
}

/// A component's response body on its way to the client while its call
/// runs.
pub struct StreamedBody {
    inner: HyperOutgoingBody,
    end: Arc<CallEnd>,
    sent: usize,
    budget: Arc<Semaphore>,
    /// The piece last handed on, held until the next is asked for.
    held: Option<OwnedSemaphorePermit>,
}

impl StreamedBody {
    /// `inner`, the body of the call that ends in `end`, its pieces held
    /// against `budget` as they pass.
    pub fn new(inner: HyperOutgoingBody, end: Arc<CallEnd>, budget: Arc<Semaphore>) -> Self {
        Self {
            inner,
            end,
            sent: 0,
            budget,
            held: None,
        }
    }
}

impl Body for StreamedBody {
    type Data = Bytes;
    type Error = StreamCut;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamCut>>> {
        let this = self.get_mut();
        // Asked for the next piece: the last one has been taken.
        this.held = None;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.sent = this.sent.saturating_add(data.len());
                    if this.sent > MAX_RESPONSE_BYTES {
                        return Poll::Ready(Some(Err(StreamCut::TooLarge)));
                    }
                    let permits = u32::try_from(data.len()).unwrap_or(u32::MAX);
                    if permits > 0 {
                        match Arc::clone(&this.budget).try_acquire_many_owned(permits) {
                            Ok(permit) => this.held = Some(permit),
                            Err(_) => return Poll::Ready(Some(Err(StreamCut::HostBusy))),
                        }
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            // The channel ended because the instance is gone: how the call
            // ended decides whether the body is whole.
            Poll::Ready(None) if this.end.failed() => Poll::Ready(Some(Err(StreamCut::Failed))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(code))) => Poll::Ready(Some(Err(if this.end.failed() {
                StreamCut::Failed
            } else {
                StreamCut::Body(format!("{code:?}"))
            }))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

/// A droplet's started response body: the pieces `response-body.write`
/// sends down `receiver`, as a body [`StreamedBody`] passes on.
pub fn pieces(receiver: mpsc::Receiver<Bytes>) -> HyperOutgoingBody {
    use http_body_util::BodyExt;
    Pieces(receiver).boxed_unsync()
}

struct Pieces(mpsc::Receiver<Bytes>);

impl Body for Pieces {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.get_mut()
            .0
            .poll_recv(cx)
            .map(|piece| piece.map(|data| Ok(Frame::data(data))))
    }
}
