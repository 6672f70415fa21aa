//! `fp:droplet/streaming` (since 0.2.1): a droplet's response sent while
//! its handler runs, and its request body read as it arrives.
//!
//! The dispatcher hands the call its ends ([`CallStreams`]) before the
//! instance is made: where the response head goes, the channel the body's
//! pieces go down once the head is out (shared with `response-body.write`,
//! which then sends each piece instead of keeping it, waiting while the
//! client is slow), and the request body, unread. Every byte stays under
//! the same limits as a whole body's, counted as it passes.

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{mpsc, oneshot};
use wasmtime::component::{HasSelf, Linker};

use super::call_context::CallContext;
use super::capability::{Capability, StoreData};
use super::recording::Tape;
use crate::bindings::GuestResponse;
use crate::bindings::fp::droplet::streaming::{self as wit, Host, StreamError};
use crate::droplets::manifest::{Manifest, ManifestError};

/// Why the request body could not be read on, as the dispatcher's body
/// says it.
pub type ReadError = StreamError;

/// A request body on its way to the guest.
pub type RequestStream = UnsyncBoxBody<Bytes, ReadError>;

/// Where a started response's pieces go: shared by this capability (which
/// starts it) and `response-body.write` (which sends down it).
#[derive(Debug)]
pub struct StreamOut {
    started: AtomicBool,
    sender: mpsc::Sender<Bytes>,
}

impl StreamOut {
    /// A response whose pieces go down `sender` once started.
    pub fn new(sender: mpsc::Sender<Bytes>) -> Self {
        Self {
            started: AtomicBool::new(false),
            sender,
        }
    }

    /// Whether the head has gone: pieces are sent, not kept.
    pub fn started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    /// Where pieces go.
    pub fn sender(&self) -> &mpsc::Sender<Bytes> {
        &self.sender
    }
}

/// One call's streaming ends, handed over by the dispatcher.
pub struct CallStreams {
    /// Where the response head goes.
    pub head: oneshot::Sender<GuestResponse>,
    /// Where the body's pieces go once the head is out.
    pub out: Arc<StreamOut>,
    /// The request body, unread.
    pub request: RequestStream,
}

/// Every droplet may stream: no grant needed, nothing host-wide.
pub struct StreamingCapability;

/// One call's state: its ends, once attached, and what was read past the
/// last `read-body`'s `max`.
#[derive(Default)]
pub struct StreamAccess {
    head: Option<oneshot::Sender<GuestResponse>>,
    out: Option<Arc<StreamOut>>,
    request: Option<RequestStream>,
    left: Bytes,
    /// Where the body read is kept, when the call is recorded.
    tape: Option<Tape>,
}

impl StreamAccess {
    /// Gives the call its ends.
    pub fn attach(&mut self, streams: CallStreams) {
        self.head = Some(streams.head);
        self.out = Some(streams.out);
        self.request = Some(streams.request);
    }
}

impl Capability for StreamingCapability {
    const GRANT: Option<&'static str> = None;
    const INTERFACES: &'static [&'static str] = &["fp:droplet/streaming"];
    type Grant = ();
    type Access = StreamAccess;

    fn link<T: StoreData>(
        linker: &mut Linker<T>,
        access: fn(&mut T) -> &mut StreamAccess,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, HasSelf<StreamAccess>>(linker, access)
    }

    fn grant(&self, _manifest: &Manifest) -> Result<(), ManifestError> {
        Ok(())
    }

    fn for_call(&self, _grant: &(), call: &CallContext<'_>) -> StreamAccess {
        StreamAccess {
            tape: call.tape.clone(),
            ..StreamAccess::default()
        }
    }
}

impl Host for StreamAccess {
    async fn start_response(&mut self, head: GuestResponse) -> Result<(), StreamError> {
        let (Some(sender), Some(out)) = (self.head.take(), &self.out) else {
            return Err(StreamError::AlreadyStarted);
        };
        out.started.store(true, Ordering::Release);
        // The dispatcher gone: the request was dropped.
        sender.send(head).map_err(|_| StreamError::Closed)
    }

    async fn read_body(&mut self, max: u32) -> Result<Option<Vec<u8>>, StreamError> {
        let max = usize::try_from(max).unwrap_or(usize::MAX).max(1);
        if self.left.is_empty() {
            let Some(request) = &mut self.request else {
                return Ok(None);
            };
            loop {
                match request.frame().await {
                    None => {
                        self.request = None;
                        return Ok(None);
                    }
                    Some(Err(err)) => {
                        self.request = None;
                        return Err(err);
                    }
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data()
                            && !data.is_empty()
                        {
                            self.left = data;
                            break;
                        }
                    }
                }
            }
        }
        let piece = self.left.split_to(max.min(self.left.len()));
        if let Some(tape) = &self.tape {
            tape.body_piece(true, &piece);
        }
        Ok(Some(piece.to_vec()))
    }
}
