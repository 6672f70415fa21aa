//! The bodies of an outbound request: what a droplet sends, passed on as
//! it writes it, and what it receives, each bounded by a size limit and
//! the call's deadline.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use wasmtime_wasi_http::{Error, WasiBody};

/// The largest outbound response body a droplet may receive.
pub const MAX_RESPONSE_BYTES: u64 = 16 << 20;
/// The largest outbound request body a droplet may send.
pub const MAX_REQUEST_BYTES: usize = 16 << 20;

/// Why a request body stopped on its way out.
#[derive(Debug, thiserror::Error)]
pub enum SendCut {
    /// Past the limit.
    #[error("the request body is over the limit of {MAX_REQUEST_BYTES} bytes")]
    TooLarge,
    /// Not written before the deadline.
    #[error("the request body was not written before the deadline")]
    TimedOut,
    /// The guest's body failed.
    #[error("the request body failed: {0}")]
    Body(String),
}

/// A guest's request body on its way out: bounded by
/// [`MAX_REQUEST_BYTES`] and the call's deadline, counted as it passes.
pub struct SentBody {
    inner: WasiBody,
    sent: usize,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl SentBody {
    /// `inner`, cut off past the limit or at `deadline`.
    pub(super) fn new(inner: WasiBody, deadline: Instant) -> Self {
        Self {
            inner,
            sent: 0,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }
}

impl Body for SentBody {
    type Data = Bytes;
    type Error = SendCut;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, SendCut>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending if this.deadline.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Some(Err(SendCut::TimedOut)))
            }
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.sent = this.sent.saturating_add(data.len());
                    if this.sent > MAX_REQUEST_BYTES {
                        return Poll::Ready(Some(Err(SendCut::TooLarge)));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => {
                Poll::Ready(Some(Err(SendCut::Body(format!("{err:?}")))))
            }
            Poll::Ready(None) => Poll::Ready(None),
        }
    }
}

/// A response body bounded by the call's deadline and
/// [`MAX_RESPONSE_BYTES`], holding its in-flight permit until it is read
/// or dropped.
pub(super) struct BoundedBody {
    inner: hyper::body::Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    received: u64,
    _permit: OwnedSemaphorePermit,
}

impl BoundedBody {
    /// `inner`, bounded by `deadline`, holding `permit`.
    pub(super) fn new(
        inner: hyper::body::Incoming,
        deadline: Instant,
        permit: OwnedSemaphorePermit,
    ) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            received: 0,
            _permit: permit,
        }
    }
}

impl Body for BoundedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Error::ConnectionReadTimeout)));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.received += data.len() as u64;
                    if self.received > MAX_RESPONSE_BYTES {
                        return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(
                            MAX_RESPONSE_BYTES,
                        )))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(_))) => Poll::Ready(Some(Err(Error::HttpResponseIncomplete))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}
