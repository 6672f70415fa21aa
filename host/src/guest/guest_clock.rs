//! How long a call's guest code has run: the time since it last resumed
//! (after a yield, or since the call began) less the time it spent waiting
//! in host imports meanwhile. The scheduler gates a call as long-running
//! on this, not on the time since it began: a call that waited on a slow
//! import (a durable kv write behind a flush, another droplet, an outbound
//! request) has not used the CPU while it waited, and must not queue behind
//! runaway droplets for the rest of its few microseconds of work.
//!
//! Wall-clock time also runs while the kernel has the thread off its CPU:
//! on a busy machine a call of a few microseconds can be preempted for
//! milliseconds. So from a resume after a yield on, the clock also reads
//! the thread's CPU clock (a syscall, once per tick of a call that reaches
//! one — never on a call's path otherwise), and a stretch measured on one
//! thread counts the smaller of the two — still never less than the
//! guest's own CPU time, so a guest cannot hide its use of the CPU. A
//! stretch with no reading (the call's first, up to its first tick) or that
//! moved to another thread while it waited on the host counts its
//! wall-clock time.
//!
//! Kept with atomics (a call's hook, its epoch callback and its yield
//! futures each hold a handle; they never run at once), in nanoseconds
//! since the call began.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// One call's guest clock.
#[derive(Clone)]
pub struct GuestClock(Arc<Inner>);

struct Inner {
    origin: Instant,
    /// Time spent in host imports so far.
    host: AtomicU64,
    /// When the current host import began (plus one), 0 outside any.
    entered: AtomicU64,
    /// When the guest last resumed, and `host` then.
    resumed: AtomicU64,
    host_at_resume: AtomicU64,
    /// The thread's CPU clock at the last resume (plus one), 0 when the
    /// stretch since has no CPU reading: none was taken (the call's first
    /// stretch), or the call has since returned from the host on another
    /// thread.
    cpu_at_resume: AtomicU64,
    /// The thread it resumed on ([`thread_token`]).
    thread_at_resume: AtomicUsize,
}

impl Default for GuestClock {
    fn default() -> Self {
        Self(Arc::new(Inner {
            origin: Instant::now(),
            host: AtomicU64::new(0),
            entered: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
            host_at_resume: AtomicU64::new(0),
            cpu_at_resume: AtomicU64::new(0),
            thread_at_resume: AtomicUsize::new(0),
        }))
    }
}

impl GuestClock {
    fn now(&self) -> u64 {
        nanos(self.0.origin.elapsed())
    }

    /// The guest calls a host import.
    pub fn entering_host(&self) {
        self.0.entered.store(self.now() + 1, Ordering::Relaxed);
    }

    /// The host import returns to the guest.
    pub fn left_host(&self) {
        let entered = self.0.entered.swap(0, Ordering::Relaxed);
        if entered != 0 {
            let spent = self.now().saturating_sub(entered - 1);
            self.0.host.fetch_add(spent, Ordering::Relaxed);
        }
        // A stretch that moved to another thread has no CPU reading.
        if self.0.cpu_at_resume.load(Ordering::Relaxed) != 0
            && self.0.thread_at_resume.load(Ordering::Relaxed) != thread_token()
        {
            self.0.cpu_at_resume.store(0, Ordering::Relaxed);
        }
    }

    /// The guest resumes after a yield, on the calling thread.
    pub fn resumed(&self) {
        self.0.resumed.store(self.now(), Ordering::Relaxed);
        let host = self.0.host.load(Ordering::Relaxed);
        self.0.host_at_resume.store(host, Ordering::Relaxed);
        let cpu = thread_cpu_time().map_or(0, |cpu| nanos(cpu).saturating_add(1));
        self.0.cpu_at_resume.store(cpu, Ordering::Relaxed);
        self.0
            .thread_at_resume
            .store(thread_token(), Ordering::Relaxed);
    }

    /// How long the guest has run since it last resumed, read on the
    /// thread running it: never less than its CPU time.
    pub fn ran_since_resume(&self) -> Duration {
        let wall = self
            .now()
            .saturating_sub(self.0.resumed.load(Ordering::Relaxed));
        let host = self
            .0
            .host
            .load(Ordering::Relaxed)
            .saturating_sub(self.0.host_at_resume.load(Ordering::Relaxed));
        let wall = Duration::from_nanos(wall.saturating_sub(host));
        let cpu_at_resume = self.0.cpu_at_resume.load(Ordering::Relaxed);
        let on_cpu = (cpu_at_resume != 0
            && self.0.thread_at_resume.load(Ordering::Relaxed) == thread_token())
        .then(thread_cpu_time)
        .flatten()
        .map(|cpu| cpu.saturating_sub(Duration::from_nanos(cpu_at_resume - 1)));
        on_cpu.map_or(wall, |on_cpu| wall.min(on_cpu))
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The calling thread's CPU time (user and system), if the clock can be read.
fn thread_cpu_time() -> Option<Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` we own.
    let read = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    let secs = u64::try_from(now.tv_sec).ok()?;
    let nanos = u32::try_from(now.tv_nsec).ok()?;
    (read == 0).then(|| Duration::new(secs, nanos))
}

/// A number that tells the calling thread from every other running thread
/// (the address of one of its thread-locals), without a syscall.
fn thread_token() -> usize {
    thread_local! {
        static TOKEN: u8 = const { 0 };
    }
    TOKEN.with(|token| std::ptr::from_ref(token) as usize)
}

/// Runs on the CPU until the thread's CPU clock has advanced `cpu`: guest
/// code, for the tests, whatever else the machine is doing.
#[cfg(test)]
pub(crate) fn spin_on_cpu(cpu: Duration) {
    let Some(start) = thread_cpu_time() else {
        panic!("this machine has no thread CPU clock");
    };
    while thread_cpu_time().is_some_and(|now| now - start < cpu) {
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_in_the_host_is_not_guest_time() {
        // Margins wide enough for a loaded machine: 200 ms in the host
        // against a bound of 100 ms of guest time around it.
        let clock = GuestClock::default();
        std::thread::sleep(Duration::from_millis(5));
        let ran = clock.ran_since_resume();
        assert!(ran >= Duration::from_millis(5), "no CPU reading: {ran:?}");
        clock.resumed();
        clock.entering_host();
        std::thread::sleep(Duration::from_millis(200));
        clock.left_host();
        let ran = clock.ran_since_resume();
        assert!(
            ran < Duration::from_millis(100),
            "waiting in the host: {ran:?}"
        );
        clock.left_host();
        let ran = clock.ran_since_resume();
        assert!(
            ran < Duration::from_millis(100),
            "one leave per entry: {ran:?}"
        );
    }

    #[test]
    fn time_off_the_cpu_is_not_guest_time_and_time_on_it_is() {
        let clock = GuestClock::default();
        clock.resumed();
        // Off the CPU outside any import: what preemption looks like.
        std::thread::sleep(Duration::from_millis(50));
        let ran = clock.ran_since_resume();
        assert!(ran < Duration::from_millis(25), "off the CPU: {ran:?}");
        // On the CPU: all of it counts, however the thread is preempted.
        clock.resumed();
        spin_on_cpu(Duration::from_millis(3));
        let ran = clock.ran_since_resume();
        assert!(ran >= Duration::from_millis(3), "on the CPU: {ran:?}");
    }

    #[test]
    fn a_stretch_that_moved_to_another_thread_counts_its_wall_time() {
        let clock = GuestClock::default();
        clock.resumed();
        let elsewhere = clock.clone();
        std::thread::spawn(move || {
            elsewhere.entering_host();
            elsewhere.left_host();
        })
        .join()
        .unwrap();
        // Back on this thread, off the CPU: the CPU reading is not trusted.
        std::thread::sleep(Duration::from_millis(30));
        let ran = clock.ran_since_resume();
        assert!(ran >= Duration::from_millis(30), "moved and back: {ran:?}");
    }
}
