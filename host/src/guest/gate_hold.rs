//! The long-running gate's permit one call holds ([`GateHold`]): taken by
//! the call's yield at a tick ([`super::scheduler`]), given back by its
//! host imports while it waits on the host, dropped with the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::OwnedSemaphorePermit;

/// The long-running gate's permit one call holds, if any.
#[derive(Clone, Default)]
pub struct GateHold(Arc<GateSlot>);

#[derive(Default)]
struct GateSlot {
    /// Whether `permit` holds one: checked before taking the lock, so that
    /// calls holding none (nearly all) pay one atomic load.
    holding: AtomicBool,
    permit: std::sync::Mutex<Option<OwnedSemaphorePermit>>,
}

impl GateHold {
    /// Gives the permit back, if the call holds one. The runtime calls this
    /// whenever the guest calls into the host: a permit is for running
    /// guest code, and a call waiting on the host (an outbound request,
    /// another droplet, a slow store) must not keep other calls' guest code
    /// from running. Its next tick queues for a permit again.
    pub fn release(&self) {
        if self.0.holding.load(Ordering::Acquire) {
            self.take();
        }
    }

    pub(super) fn take(&self) -> Option<OwnedSemaphorePermit> {
        let mut permit = self.0.permit.lock().ok()?;
        self.0.holding.store(false, Ordering::Release);
        permit.take()
    }

    pub(super) fn hold(&self, permit: OwnedSemaphorePermit) {
        if let Ok(mut held) = self.0.permit.lock() {
            *held = Some(permit);
            self.0.holding.store(true, Ordering::Release);
        }
    }
}
