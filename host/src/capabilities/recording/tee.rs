//! [`Tee`]: a body whose data is kept on a call's tape as it passes — an
//! outbound response as the guest reads it, a `wasi:http` component's
//! request body as it reads it and its response as it writes it — so that
//! a recording holds what the guest saw and no more.

use std::any::Any;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};

use super::tape::Tape;

/// Where a body's pieces go on the tape.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    /// The body of the outbound response kept at this index.
    Answer(usize),
    /// A `wasi:http` component's request body.
    Read,
    /// A `wasi:http` component's response body.
    Written,
}

/// `inner`, its data kept on the tape as it passes.
pub struct Tee<B> {
    inner: B,
    tape: Tape,
    stream: Stream,
    /// Dropped with the body (a streamed call's end, said then).
    _guard: Option<Box<dyn Any + Send + Sync>>,
}

impl<B> Tee<B> {
    /// `inner`, kept on `tape` as `stream`.
    pub fn new(inner: B, tape: Tape, stream: Stream) -> Self {
        Self {
            inner,
            tape,
            stream,
            _guard: None,
        }
    }

    /// The same, holding `guard` until the body is dropped.
    pub fn with_guard(mut self, guard: impl Any + Send + Sync) -> Self {
        self._guard = Some(Box::new(guard));
        self
    }
}

impl<B> Body for Tee<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let piece = match &polled {
            Poll::Ready(Some(Ok(frame))) => frame.data_ref().map(|data| Ok(&data[..])),
            Poll::Ready(Some(Err(err))) => Some(Err(format!("{err:?}"))),
            _ => None,
        };
        match (piece, self.stream) {
            (Some(piece), Stream::Answer(index)) => self.tape.body(index, piece),
            (Some(Ok(data)), Stream::Read) => self.tape.body_piece(true, data),
            (Some(Ok(data)), Stream::Written) => self.tape.body_piece(false, data),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Headers as a recording keeps them: in order, values as text.
pub fn header_pairs(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.to_string(), value)
        })
        .collect()
}
