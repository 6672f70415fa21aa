//! Streaming (host `fp:droplet@0.2.1` and later): a response sent while the
//! handler still runs — server-sent events, large downloads — and a request
//! body read as it arrives, without holding the whole upload in memory.
//!
//! ```no_run
//! use droplet_sdk::{droplet, stream, Request, Response};
//!
//! fn handle(_req: Request) -> Response {
//!     let head = Response::new(200).with_header("content-type", "text/event-stream");
//!     let Ok(mut events) = stream::start(head) else {
//!         return Response::error(503, "unavailable", "the response could not start");
//!     };
//!     for n in 0..3 {
//!         // Each event reaches the client as it is written.
//!         if events.write(format!("data: event {n}\n\n").as_bytes()).is_err() {
//!             break; // the client went away
//!         }
//!     }
//!     events.finish()
//! }
//!
//! droplet!(handle);
//! ```
//!
//! A droplet that uses this module (either half) gets its request's body
//! empty: [`Request::body`](crate::Request::body) is `&[]`, and the body is
//! read with [`body`] instead.

use crate::Response;
use crate::bindings::fp::droplet::response_body::BodyError;
use crate::bindings::fp::droplet::types;
use crate::host::{response_body, streaming};

pub use crate::bindings::fp::droplet::streaming::StreamError;

/// Pieces the body is handed to the host in, at most.
const PIECE: usize = 1 << 20;

/// A response whose head has gone to the client: what is written now
/// follows it at once.
#[derive(Debug)]
pub struct ResponseStream {
    _started: (),
}

/// Sends `head`'s status and headers to the client now, then its body (if
/// it has one), and returns the stream the rest of the body is written to.
pub fn start(head: Response) -> Result<ResponseStream, StreamError> {
    let response = types::Response {
        status: head.status(),
        headers: head.headers().to_vec(),
    };
    streaming::start_response(&response)?;
    let mut stream = ResponseStream { _started: () };
    if !head.body().is_empty() {
        stream.write(head.body()).map_err(|_| StreamError::Closed)?;
    }
    Ok(stream)
}

/// Why a piece of a started response was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// The body would pass 16 MiB: it is cut off.
    TooLarge,
    /// The client went away, or the host could not hold the piece.
    Closed,
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WriteError::TooLarge => "the response body is over 16 MiB",
            WriteError::Closed => "the client went away",
        })
    }
}

impl std::error::Error for WriteError {}

impl ResponseStream {
    /// Sends `piece` to the client, waiting while the client is slow to
    /// read.
    pub fn write(&mut self, piece: &[u8]) -> Result<(), WriteError> {
        for chunk in piece.chunks(PIECE) {
            response_body::write(chunk).map_err(|refused| match refused {
                BodyError::TooLarge => WriteError::TooLarge,
                BodyError::HostBusy => WriteError::Closed,
            })?;
        }
        Ok(())
    }

    /// Ends the response: return what this gives from the handler (the
    /// host has sent the head already and ignores it).
    pub fn finish(self) -> Response {
        Response::new(200)
    }
}

impl std::io::Write for ResponseStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        ResponseStream::write(self, buf).map_err(std::io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The request body, read as it arrives.
#[derive(Debug, Default)]
pub struct RequestBody {
    ended: bool,
}

/// The request body as a reader (see the module: in a droplet that uses
/// streaming, this is the only way to the body).
///
/// ```
/// use std::io::Read;
///
/// fn upload(_req: droplet_sdk::Request) -> droplet_sdk::Result<String> {
///     let (mut body, mut piece, mut total) = (droplet_sdk::stream::body(), [0u8; 8192], 0);
///     loop {
///         match body.read(&mut piece) {
///             Ok(0) => break,
///             Ok(read) => total += read,
///             Err(err) => return Err(droplet_sdk::Error::bad_request(err.to_string())),
///         }
///     }
///     Ok(format!("{total} bytes"))
/// }
/// ```
pub fn body() -> RequestBody {
    RequestBody::default()
}

impl RequestBody {
    /// The next piece, at most `max` bytes, waiting for it to arrive;
    /// `None` at the end.
    pub fn next_piece(&mut self, max: u32) -> Result<Option<Vec<u8>>, StreamError> {
        if self.ended {
            return Ok(None);
        }
        let piece = streaming::read_body(max)?;
        self.ended = piece.is_none();
        Ok(piece)
    }
}

impl std::io::Read for RequestBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let max = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        match self.next_piece(max) {
            Ok(Some(piece)) => {
                buf[..piece.len()].copy_from_slice(&piece);
                Ok(piece.len())
            }
            Ok(None) => Ok(0),
            Err(err) => Err(std::io::Error::other(format!("{err:?}"))),
        }
    }
}
