//! Host memory a call makes the host hold, counted and bounded.
//!
//! A guest's linear memory is capped by its `memory_mb`, but what it asks
//! the host to keep for it lives on the host's heap: `wasi:http` fields,
//! requests and responses in its resource table, strings handed to host
//! imports, buffers. Unbounded, one call could grow the host until the
//! allocator aborts the process.
//!
//! So every allocation made while a call's future is being polled — guest
//! code, host imports, instantiation — is charged to that call's
//! [`CallMemory`], and every free made then is credited, through
//! [`Counted`], the process's global allocator (a wrapper of any other).
//! A call's count is held against its own limit (the droplet's
//! `memory_mb` plus [`CALL_ALLOWANCE`] for the host's bounded buffers)
//! and, in chunks of [`CHUNK`], against a host-wide budget shared by every
//! call ([`HostMemory`]). Past either, the call is stopped at the next
//! epoch tick (at most a millisecond of guest work, or one host call,
//! later): its failure, never the host's.
//!
//! Allocations outside any call's poll (the server, the database, the
//! admin API) are not counted; they are bounded by their own limits.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, AtomicU8, AtomicUsize, Ordering};

/// Room a call gets on the host's heap beyond its `memory_mb`: the host's
/// own per-call buffers (a response body, an outbound request and its
/// response, each at most 16 MiB) must fit whatever the droplet's memory.
pub const CALL_ALLOWANCE: usize = 48 << 20;

/// A call takes the host-wide budget in pieces of this size, so that the
/// shared counter is touched once per MiB, not once per allocation.
pub const CHUNK: usize = 1 << 20;

/// The host-wide budget of memory calls may make the host hold.
#[derive(Debug)]
pub struct HostMemory {
    limit: usize,
    taken: AtomicUsize,
}

impl HostMemory {
    /// A budget of `limit` bytes across every running call.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            taken: AtomicUsize::new(0),
        }
    }

    /// Bytes taken by running calls (in whole chunks).
    pub fn taken(&self) -> usize {
        self.taken.load(Ordering::Relaxed)
    }

    fn take(&self, bytes: usize) -> bool {
        self.taken
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |taken| {
                taken.checked_add(bytes).filter(|&sum| sum <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.taken.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// Why a call was stopped for the host memory it held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OverLimit {
    /// Past its own limit.
    #[error("made the host hold more than its limit of {limit_mb} MiB (its memory_mb plus 48)")]
    Call {
        /// The call's limit.
        limit_mb: usize,
    },
    /// The host-wide budget was spent (by every running call together).
    #[error("the host holds as much memory for running calls as it allows; retry shortly")]
    Host,
}

const WITHIN: u8 = 0;
const OVER_CALL: u8 = 1;
const OVER_HOST: u8 = 2;

/// One call's count of the host memory it holds.
#[derive(Debug)]
pub struct CallMemory {
    /// Bytes allocated minus bytes freed while the call was being polled.
    held: AtomicIsize,
    /// Bytes of the host-wide budget this call has taken (whole chunks).
    reserved: AtomicUsize,
    limit: usize,
    over: AtomicU8,
    host: Arc<HostMemory>,
}

impl CallMemory {
    /// A count for a call whose guest memory is capped at `memory_bytes`.
    pub fn new(host: Arc<HostMemory>, memory_bytes: usize) -> Self {
        Self {
            held: AtomicIsize::new(0),
            reserved: AtomicUsize::new(0),
            limit: memory_bytes.saturating_add(CALL_ALLOWANCE),
            over: AtomicU8::new(WITHIN),
            host,
        }
    }

    /// Bytes the call holds now (negative when it freed more than it
    /// allocated: bytes made before it).
    pub fn held(&self) -> isize {
        self.held.load(Ordering::Relaxed)
    }

    /// Whether the call went past a limit, and which.
    pub fn over(&self) -> Option<OverLimit> {
        match self.over.load(Ordering::Relaxed) {
            WITHIN => None,
            OVER_CALL => Some(OverLimit::Call {
                limit_mb: self.limit >> 20,
            }),
            _ => Some(OverLimit::Host),
        }
    }

    /// Counts `delta` bytes. Runs inside the allocator: it must not
    /// allocate. Only the thread polling the call touches `held`, so a
    /// plain load and store suffice.
    fn charge(&self, delta: isize) {
        let held = self.held.load(Ordering::Relaxed).wrapping_add(delta);
        self.held.store(held, Ordering::Relaxed);
        if delta > 0 && held > self.reserved.load(Ordering::Relaxed) as isize {
            self.reserve(held.unsigned_abs());
        }
    }

    #[cold]
    fn reserve(&self, held: usize) {
        if self.over.load(Ordering::Relaxed) != WITHIN {
            return;
        }
        if held > self.limit {
            self.over.store(OVER_CALL, Ordering::Relaxed);
            return;
        }
        let reserved = self.reserved.load(Ordering::Relaxed);
        let wanted = held.div_ceil(CHUNK).saturating_mul(CHUNK);
        let more = wanted.saturating_sub(reserved);
        if self.host.take(more) {
            self.reserved.store(wanted, Ordering::Relaxed);
        } else {
            self.over.store(OVER_HOST, Ordering::Relaxed);
        }
    }

    /// Counts every allocation this thread makes against this call until
    /// the guard is dropped (which restores whatever was counted before: a
    /// call made inside another's poll nests).
    pub fn enter(self: &Arc<Self>) -> Entered<'_> {
        let previous = CURRENT.with(|current| current.replace(Arc::as_ptr(self)));
        Entered {
            previous,
            _call: self,
        }
    }
}

impl Drop for CallMemory {
    fn drop(&mut self) {
        self.host.give_back(*self.reserved.get_mut());
    }
}

thread_local! {
    /// The call whose future this thread is polling, if any.
    static CURRENT: Cell<*const CallMemory> = const { Cell::new(std::ptr::null()) };
}

/// While alive, this thread's allocations count against a call.
pub struct Entered<'a> {
    previous: *const CallMemory,
    _call: &'a Arc<CallMemory>,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        CURRENT.with(|current| current.set(self.previous));
    }
}

fn charge(delta: isize) {
    // `try_with`: never fails for a const, destructor-less thread local,
    // but an allocator must not panic.
    let _ = CURRENT.try_with(|current| {
        let call = current.get();
        if !call.is_null() {
            // SAFETY: `CURRENT` is only non-null while an `Entered` guard
            // borrows the `Arc<CallMemory>` it points to, on this thread.
            unsafe { &*call }.charge(delta);
        }
    });
}

/// A global allocator that counts what calls allocate: wrap the process's
/// allocator in it (`#[global_allocator] static A: Counted<MiMalloc> =
/// Counted(MiMalloc);`) for [`CallMemory`] to see anything.
pub struct Counted<A>(pub A);

// SAFETY: every method forwards to the wrapped allocator unchanged; the
// counting never allocates and never touches the memory.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counted<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let ptr = unsafe { self.0.alloc(layout) };
        if !ptr.is_null() {
            charge(layout.size() as isize);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let ptr = unsafe { self.0.alloc_zeroed(layout) };
        if !ptr.is_null() {
            charge(layout.size() as isize);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.0.dealloc(ptr, layout) };
        charge(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let new = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            charge(new_size as isize - layout.size() as isize);
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(host: &Arc<HostMemory>, memory: usize) -> Arc<CallMemory> {
        Arc::new(CallMemory::new(Arc::clone(host), memory))
    }

    #[test]
    fn what_a_call_allocates_and_keeps_is_counted_and_what_it_frees_is_not() {
        let host = Arc::new(HostMemory::new(1 << 30));
        let memory = call(&host, 0);
        let kept = {
            let _entered = memory.enter();
            let freed = vec![0u8; 1 << 20];
            drop(freed);
            vec![0u8; 3 << 20]
        };
        let held = memory.held();
        assert!((3 << 20..4 << 20).contains(&held), "held {held}");
        // Taken from the host's budget in whole chunks, given back at the end.
        assert_eq!(host.taken(), 3 << 20);
        // Outside the guard nothing is counted.
        drop(vec![0u8; 8 << 20]);
        assert_eq!(memory.held(), held);
        assert_eq!(memory.over(), None);
        drop(memory);
        assert_eq!(host.taken(), 0);
        drop(kept);
    }

    #[test]
    fn a_call_past_its_own_limit_is_marked_over_it() {
        let host = Arc::new(HostMemory::new(1 << 30));
        let memory = call(&host, 1 << 20);
        let _hoard: Vec<Vec<u8>> = {
            let _entered = memory.enter();
            (0..60).map(|_| vec![1u8; 1 << 20]).collect()
        };
        assert_eq!(memory.over(), Some(OverLimit::Call { limit_mb: 49 }));
        assert!(host.taken() <= 49 << 20);
    }

    #[test]
    fn calls_together_past_the_host_budget_are_marked_over_it() {
        let host = Arc::new(HostMemory::new(8 << 20));
        let first = call(&host, 64 << 20);
        let second = call(&host, 64 << 20);
        let _a = {
            let _entered = first.enter();
            vec![0u8; 6 << 20]
        };
        let _b = {
            let _entered = second.enter();
            vec![0u8; 6 << 20]
        };
        assert_eq!(first.over(), None);
        assert_eq!(second.over(), Some(OverLimit::Host));
        drop(first);
        drop(second);
        assert_eq!(host.taken(), 0);
    }

    #[test]
    fn a_call_inside_another_counts_apart_and_hands_back() {
        let host = Arc::new(HostMemory::new(1 << 30));
        let outer = call(&host, 0);
        let inner = call(&host, 0);
        let _entered = outer.enter();
        let a = {
            let _entered = inner.enter();
            vec![0u8; 2 << 20]
        };
        let b = vec![0u8; 1 << 20];
        assert!(inner.held() >= 2 << 20 && inner.held() < 3 << 20);
        assert!(outer.held() >= 1 << 20 && outer.held() < 2 << 20);
        drop((a, b));
    }
}
