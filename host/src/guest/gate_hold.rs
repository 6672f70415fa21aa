//! What the long-running gate ([`super::scheduler`]) keeps: the permit one
//! call holds ([`GateHold`]) — taken by the call's yield at a tick, given
//! back by its host imports while it waits on the host, dropped with the
//! store; while it is held, the call's guest runs off the async workers —
//! and the short calls' demand a returned permit rests for ([`ShortCalls`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::OwnedSemaphorePermit;

/// The long-running gate's permit one call holds, if any.
#[derive(Clone, Default)]
pub struct GateHold(Arc<GateSlot>);

#[derive(Default)]
struct GateSlot {
    /// Whether `permit` holds one: checked before taking the lock, so that
    /// calls holding none (nearly all) pay one atomic load.
    holding: AtomicBool,
    /// The permit, and what [`super::scheduler`] read of the short calls
    /// when the call took it.
    permit: std::sync::Mutex<Option<(OwnedSemaphorePermit, usize)>>,
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

    /// Runs one poll of the call: while it holds a permit (its guest is
    /// long-running and about to run for up to a tick), on this thread with
    /// the async worker's queue handed to another thread (tokio's
    /// `block_in_place`), so that a gated guest never keeps a worker from
    /// short calls. On a current-thread runtime it runs in place.
    pub fn poll<T>(&self, poll: impl FnOnce() -> T) -> T {
        if !self.0.holding.load(Ordering::Acquire) {
            return poll();
        }
        match Handle::try_current().map(|handle| handle.runtime_flavor()) {
            Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(poll),
            _ => poll(),
        }
    }

    pub(super) fn take(&self) -> Option<(OwnedSemaphorePermit, usize)> {
        let mut permit = self.0.permit.lock().ok()?;
        self.0.holding.store(false, Ordering::Release);
        permit.take()
    }

    pub(super) fn hold(&self, permit: OwnedSemaphorePermit, reading: usize) {
        if let Ok(mut held) = self.0.permit.lock() {
            *held = Some((permit, reading));
            self.0.holding.store(true, Ordering::Release);
        }
    }
}

/// The short calls (those that have not become long-running): the demand
/// a returned gate permit rests for.
#[derive(Default)]
pub(super) struct ShortCalls {
    /// How many are running now.
    running: AtomicUsize,
    /// How many have started since the host did.
    started: AtomicUsize,
}

impl ShortCalls {
    pub(super) fn start(&self) {
        self.running.fetch_add(1, Ordering::Relaxed);
        self.started.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn end(&self) {
        self.running.fetch_sub(1, Ordering::Relaxed);
    }

    pub(super) fn started(&self) -> usize {
        self.started.load(Ordering::Relaxed)
    }

    /// Whether short calls are running, or started since `started` read
    /// [`ShortCalls::started`]: a permit held for a tick, while requests
    /// come and go in far less, seldom sees one running at the instant it
    /// is returned.
    pub(super) fn since(&self, started: usize) -> bool {
        self.running.load(Ordering::Relaxed) > 0 || self.started() != started
    }
}
