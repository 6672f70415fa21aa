//! `fp:droplet/response-body`: the guest hands its response body over in
//! pieces, and the host decides about each piece **before copying it**.
//!
//! A piece is taken as a [`WasmList`] — a view of the guest's memory — so
//! its length is known without lifting it. A body that would pass
//! [`MAX_RESPONSE_BYTES`] is refused at once (everything kept so far is
//! dropped; the call ends in 502 `invalid_response`), and every byte kept
//! is counted against a host-wide budget of in-flight response bytes
//! ([`BodyCapability`]), held until the response has been sent. So an
//! oversized response costs the host at most the limit, and all responses
//! together at most the budget.
//!
//! Once a droplet has started its response (`streaming.start-response`),
//! a piece is not kept but sent to the client at once, the write waiting
//! while the client is slow to read ([`StreamOut`]); the same limit holds,
//! counted as the pieces pass.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, WasmList};

use super::call_context::CallContext;
use super::capability::{Capability, StoreData};
use super::streaming::StreamOut;
use crate::droplets::manifest::{Manifest, ManifestError};

use crate::bindings::fp::droplet::response_body::BodyError;

/// Largest response body a droplet may return.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// The host-wide half: the budget of response bytes held at once.
pub struct BodyCapability {
    budget: Arc<Semaphore>,
}

impl BodyCapability {
    /// A budget of `bytes` response bytes across every call and every
    /// response still being sent.
    pub fn new(bytes: usize) -> Self {
        Self {
            budget: Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// The host-wide budget, for a body streamed past [`ResponseBody`].
    pub fn budget(&self) -> Arc<Semaphore> {
        Arc::clone(&self.budget)
    }

    /// An empty body for one call.
    pub fn empty_body(&self) -> ResponseBody {
        ResponseBody {
            budget: Arc::clone(&self.budget),
            kept: BytesMut::new(),
            held: None,
            refused: None,
            out: None,
            sent: 0,
        }
    }
}

/// One call's response body, as handed over so far.
pub struct ResponseBody {
    budget: Arc<Semaphore>,
    kept: BytesMut,
    /// The budget this body holds: as many permits as bytes kept.
    held: Option<OwnedSemaphorePermit>,
    /// Why the body was refused, once it was.
    refused: Option<BodyError>,
    /// Where pieces go once the response has started (a streaming call).
    out: Option<Arc<StreamOut>>,
    /// Bytes sent down `out` so far.
    sent: usize,
}

/// Response bytes held against the host-wide budget until the response is
/// sent (dropped with the response's body).
#[derive(Clone)]
pub struct HeldBytes(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

impl ResponseBody {
    /// Decides about a piece of `len` bytes: `Ok` to copy it, or why not.
    fn admit(&mut self, len: usize) -> Result<(), BodyError> {
        if let Some(refused) = self.refused {
            return Err(refused);
        }
        if self.kept.len().saturating_add(len) > MAX_RESPONSE_BYTES {
            return Err(self.refuse(BodyError::TooLarge));
        }
        let Ok(permits) = u32::try_from(len) else {
            return Err(self.refuse(BodyError::TooLarge));
        };
        if permits == 0 {
            return Ok(());
        }
        match Arc::clone(&self.budget).try_acquire_many_owned(permits) {
            Ok(permit) => {
                match &mut self.held {
                    Some(held) => held.merge(permit),
                    None => self.held = Some(permit),
                }
                Ok(())
            }
            Err(_) => Err(self.refuse(BodyError::HostBusy)),
        }
    }

    /// Sends pieces down `out` once its response has started.
    pub fn stream_to(&mut self, out: Arc<StreamOut>) {
        self.out = Some(out);
    }

    /// Where a piece of `len` bytes goes now: `Some` once the response has
    /// started (the piece is counted against the limit first), with what
    /// was written before the start, to send first; `None` to keep it.
    fn streaming(&mut self, len: usize) -> Option<Result<(Arc<StreamOut>, Bytes), BodyError>> {
        let out = Arc::clone(self.out.as_ref().filter(|out| out.started())?);
        let earlier = std::mem::take(&mut self.kept).freeze();
        self.held = None;
        self.sent = self.sent.saturating_add(earlier.len()).saturating_add(len);
        Some(if self.sent > MAX_RESPONSE_BYTES {
            Err(BodyError::TooLarge)
        } else {
            Ok((out, earlier))
        })
    }

    /// What has been kept so far (not sent).
    pub fn kept(&self) -> &[u8] {
        &self.kept
    }

    /// Appends `piece` if it is admitted (what the import does, for a piece
    /// already in host memory).
    pub fn write(&mut self, piece: &[u8]) -> Result<(), BodyError> {
        self.admit(piece.len())?;
        self.kept.extend_from_slice(piece);
        Ok(())
    }

    /// Refuses the body: nothing of it is kept.
    fn refuse(&mut self, why: BodyError) -> BodyError {
        self.refused = Some(why);
        self.kept = BytesMut::new();
        self.held = None;
        why
    }

    /// Takes the body out, leaving an empty one (the store it lives in is
    /// about to be dropped).
    pub fn take(&mut self) -> ResponseBody {
        let empty = ResponseBody {
            budget: Arc::clone(&self.budget),
            kept: BytesMut::new(),
            held: None,
            refused: None,
            out: None,
            sent: 0,
        };
        std::mem::replace(self, empty)
    }

    /// The body, and the budget it holds; or why it was refused.
    pub fn finish(self) -> Result<(Bytes, Option<HeldBytes>), BodyError> {
        match self.refused {
            Some(refused) => Err(refused),
            None => Ok((
                self.kept.freeze(),
                self.held.map(|held| HeldBytes(Arc::new(held))),
            )),
        }
    }
}

impl Capability for BodyCapability {
    /// Every droplet hands its response body over: no grant needed.
    const GRANT: Option<&'static str> = None;
    const INTERFACES: &'static [&'static str] = &["fp:droplet/response-body"];
    type Grant = ();
    type Access = ResponseBody;

    fn link<T: StoreData>(
        linker: &mut Linker<T>,
        access: fn(&mut T) -> &mut ResponseBody,
    ) -> wasmtime::Result<()> {
        link_write(linker, access)
    }

    fn grant(&self, _manifest: &Manifest) -> Result<(), ManifestError> {
        Ok(())
    }

    fn for_call(&self, _grant: &(), _call: &CallContext<'_>) -> ResponseBody {
        self.empty_body()
    }
}

/// Registers `response-body.write`, by hand: the generated binding would
/// copy the piece out of the guest before the host could look at its size.
/// `body` reaches the call's [`ResponseBody`] in the store's data.
fn link_write<T: Send + 'static>(
    linker: &mut Linker<T>,
    body: fn(&mut T) -> &mut ResponseBody,
) -> wasmtime::Result<()> {
    let mut instance = linker.instance(&crate::bindings::interface_name("response-body"))?;
    instance.func_wrap_async(
        "write",
        move |mut store: StoreContextMut<'_, T>, (chunk,): (WasmList<u8>,)| {
            Box::new(async move {
                match body(store.data_mut()).streaming(chunk.len()) {
                    Some(Err(refused)) => return Ok((Err(refused),)),
                    Some(Ok((out, earlier))) => {
                        let piece = Bytes::copy_from_slice(chunk.as_le_slice(&store));
                        // Waits while the client is slow; fails once it is
                        // gone (or its body was cut off).
                        let mut sent = Ok(());
                        for piece in [earlier, piece] {
                            if !piece.is_empty() && sent.is_ok() {
                                sent = out.sender().send(piece).await;
                            }
                        }
                        return Ok((sent.map_err(|_| BodyError::HostBusy),));
                    }
                    None => {}
                }
                if let Err(refused) = body(store.data_mut()).admit(chunk.len()) {
                    return Ok((Err(refused),));
                }
                // Out of the store while the guest's memory is read: one copy.
                let mut kept = std::mem::take(&mut body(store.data_mut()).kept);
                kept.extend_from_slice(chunk.as_le_slice(&store));
                body(store.data_mut()).kept = kept;
                Ok((Ok(()),))
            })
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_over_the_limit_is_refused_before_anything_is_copied_and_frees_its_budget() {
        let capability = BodyCapability::new(64 << 20);
        let mut body = capability.empty_body();
        assert_eq!(body.write(&vec![7; MAX_RESPONSE_BYTES - 1]), Ok(()));
        assert_eq!(
            capability.budget.available_permits(),
            (64 << 20) - MAX_RESPONSE_BYTES + 1
        );
        // Refused on its size alone: nothing is read.
        assert_eq!(body.admit(2), Err(BodyError::TooLarge));
        assert!(body.kept.is_empty(), "what was kept is dropped");
        assert_eq!(
            capability.budget.available_permits(),
            64 << 20,
            "budget given back"
        );
        assert_eq!(body.admit(1), Err(BodyError::TooLarge), "refused for good");
        assert_eq!(body.finish().err(), Some(BodyError::TooLarge));
    }

    #[test]
    fn the_host_wide_budget_bounds_every_body_together_until_sent() {
        let capability = BodyCapability::new(10);
        let mut first = capability.empty_body();
        assert_eq!(first.write(b"123456"), Ok(()));
        let mut second = capability.empty_body();
        assert_eq!(second.admit(6), Err(BodyError::HostBusy));
        let (_, held) = first.finish().unwrap();
        assert_eq!(
            capability.budget.available_permits(),
            4,
            "held while sending"
        );
        drop(held);
        assert_eq!(capability.budget.available_permits(), 10);
        let mut third = capability.empty_body();
        assert_eq!(third.admit(10), Ok(()));
    }
}
