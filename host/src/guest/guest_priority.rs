//! The thread running a long-running guest runs at a lower priority than
//! the host's other work: the kernel then preempts it as soon as a worker
//! with I/O to do, the ticker or another process wakes, instead of letting
//! a runaway finish its time slice first (up to milliseconds that requests
//! on other connections, and their answers, would wait).
//!
//! Lowered just before the guest resumes holding a gate permit, restored
//! when the poll that ran it returns ([`Restore`], held by
//! the runtime across every poll of a call), so the thread never runs
//! anything else lowered. Where the process may not raise a thread's
//! priority back (no `CAP_SYS_NICE` and a low `RLIMIT_NICE`), found by a
//! probe on a scratch thread, nothing is lowered.

use std::cell::Cell;
use std::sync::OnceLock;

/// The nice value a long-running guest runs at.
const GUEST_NICE: i32 = 10;

thread_local! {
    /// The thread's nice value before it was lowered, while it is.
    static LOWERED_FROM: Cell<Option<i32>> = const { Cell::new(None) };
}

/// Whether this process may lower a thread's priority and raise it back.
pub fn usable() -> bool {
    static USABLE: OnceLock<bool> = OnceLock::new();
    *USABLE.get_or_init(|| {
        std::thread::spawn(|| {
            let Some(nice) = current() else {
                return false;
            };
            set(GUEST_NICE.max(nice)) && set(nice)
        })
        .join()
        .unwrap_or(false)
    })
}

/// Lowers the calling thread's priority, once, until [`restore`].
pub fn lower() {
    if LOWERED_FROM.get().is_some() || !usable() {
        return;
    }
    if let Some(nice) = current()
        && nice < GUEST_NICE
        && set(GUEST_NICE)
    {
        LOWERED_FROM.set(Some(nice));
    }
}

/// Restores the calling thread's priority if [`lower`] lowered it.
pub fn restore() {
    if let Some(nice) = LOWERED_FROM.take() {
        set(nice);
    }
}

/// Calls [`restore`] when dropped, unwinding included.
pub struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        restore();
    }
}

#[cfg(target_os = "linux")]
pub fn current() -> Option<i32> {
    // SAFETY: `gettid` has no preconditions.
    let tid = unsafe { libc::gettid() };
    // getpriority may return -1 as a value: errno tells the failure.
    // SAFETY: errno is thread-local; getpriority on our own thread id.
    unsafe {
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
        (*libc::__errno_location() == 0).then_some(nice)
    }
}

#[cfg(target_os = "linux")]
fn set(nice: i32) -> bool {
    // On Linux `PRIO_PROCESS` with a thread id sets that one thread.
    // SAFETY: `gettid` and `setpriority` on the calling thread.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) == 0 }
}

#[cfg(not(target_os = "linux"))]
pub fn current() -> Option<i32> {
    None
}

#[cfg(not(target_os = "linux"))]
fn set(_nice: i32) -> bool {
    false
}
