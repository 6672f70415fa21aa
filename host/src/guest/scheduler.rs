//! Scheduling of guest code on the async workers, driven by the engine's
//! epoch (advanced every [`EPOCH_TICK`] by [`super::epoch_ticker`]): what
//! each call does at a tick — yield, trap past its deadline, or queue for
//! the long-running gate that keeps CPU-heavy calls from crowding out short
//! ones.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use wasmtime::UpdateDeadline;

use super::gate_hold::GateHold;
use super::guest_clock::GuestClock;
use super::guest_priority;
use crate::guest::deadline::{Deadlines, Key};

/// How often the epoch ticker ticks: the granularity of budgets and yields.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// A call whose guest code has run this long is long-running: past the
/// first epoch tick, which a typical request never reaches. Time waiting in
/// host imports does not count ([`GuestClock`]).
const LONG_RUNNING_AFTER: Duration = EPOCH_TICK;

/// How much of it must come after the call's first tick: up to then the
/// thread's CPU clock was not read, and a call the kernel kept off the CPU
/// for a millisecond has not run long. Running calls are gated from their
/// second tick on.
const AFTER_FIRST_TICK: Duration = Duration::from_micros(500);

/// How long a returned gate permit rests, while short calls are running,
/// before the next long-running call gets it: one tick after a call of a
/// healthy droplet (CPU-heavy droplets then share half of the gate's
/// cores), three after a call of a droplet whose recent calls mostly
/// trapped or overran (a quarter: a runaway droplet gets a share, not
/// every other turn).
const REST: Duration = EPOCH_TICK;
const SUSPECT_REST: Duration = EPOCH_TICK.saturating_mul(3);

/// Keeps long-running calls from crowding out short ones.
///
/// Short calls (most requests) run to completion, yielding at each epoch
/// tick. A call whose guest code has run for [`LONG_RUNNING_AFTER`] (or,
/// for a droplet whose recent calls mostly trapped or overran, from its
/// first instruction) must hold a permit of this gate to run guest code; there are half
/// as many permits as cores (at least one), handed out in FIFO order one
/// tick at a time. While short calls are running, a returned permit rests
/// ([`REST`], [`SUSPECT_REST`]) before the next long-running call gets it,
/// so CPU-heavy droplets get at most half of half the machine then, and
/// droplets that keep overrunning a quarter of half; with no short calls
/// waiting they run at full speed.
pub struct LongRunningGate {
    permits: Arc<Semaphore>,
    /// Calls running that have not become long-running.
    short_calls: Arc<AtomicUsize>,
    /// The ticker's deadlines, for calls to have the epoch advanced at
    /// theirs.
    deadlines: Arc<Deadlines>,
}

impl LongRunningGate {
    /// A gate with half as many permits as cores (at least one), whose
    /// calls hand their deadlines to the ticker serving `deadlines`.
    pub fn new(deadlines: Arc<Deadlines>) -> Self {
        // Probed here, at start-up, not on the first long-running call.
        guest_priority::usable();
        Self {
            permits: Arc::new(Semaphore::new(Self::permits_for_this_machine())),
            short_calls: Arc::new(AtomicUsize::new(0)),
            deadlines,
        }
    }

    /// How many permits a gate has on this machine: half its cores, at
    /// least one.
    pub fn permits_for_this_machine() -> usize {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        (cores / 2).max(1)
    }

    /// Every permit of the gate, for a test to keep gated calls waiting.
    #[cfg(test)]
    pub(crate) fn hold_every_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let all = u32::try_from(self.permits.available_permits()).ok()?;
        Arc::clone(&self.permits).try_acquire_many_owned(all).ok()
    }

    /// The scheduler of one call; `suspect` calls are gated from the start.
    pub fn scheduler(&self, deadline: Instant, suspect: bool) -> TickScheduler {
        let now = std::time::Instant::now();
        if !suspect {
            self.short_calls.fetch_add(1, Ordering::Relaxed);
        }
        let mut scheduler = TickScheduler {
            deadline: deadline.into_std(),
            ran: Duration::ZERO,
            after_first_tick: None,
            clock: GuestClock::default(),
            short: !suspect,
            rest: if suspect { SUSPECT_REST } else { REST },
            short_calls: Arc::clone(&self.short_calls),
            permits: Arc::clone(&self.permits),
            held: GateHold::default(),
            deadlines: Arc::clone(&self.deadlines),
            interrupt: None,
        };
        // A budget shorter than two ticks may end before the first tick.
        scheduler.interrupt_before_next_tick(now);
        scheduler
    }
}

/// Decides, at each epoch tick of one call, whether its guest traps, yields,
/// or queues for the long-running gate.
pub struct TickScheduler {
    deadline: std::time::Instant,
    /// How long its guest code has run as of the last tick, and how much
    /// of that after its first tick (`None` before it).
    ran: Duration,
    after_first_tick: Option<Duration>,
    clock: GuestClock,
    /// Whether this call still counts in `short_calls`.
    short: bool,
    /// How long the permit this call returns rests while short calls run.
    rest: Duration,
    short_calls: Arc<AtomicUsize>,
    permits: Arc<Semaphore>,
    /// The gate permit this call holds while it runs, if any. Shared with the
    /// yield future that acquires it and with the call's host imports, which
    /// give it back while the call waits on something slow; dropped with the
    /// store.
    held: GateHold,
    deadlines: Arc<Deadlines>,
    /// The epoch advance at the deadline this call asked the ticker for.
    interrupt: Option<Key>,
}

impl TickScheduler {
    /// The epoch deadline the call's store starts with: the first tick, or
    /// for a call gated from its start, its first instruction, so that it
    /// runs no guest code before it holds a permit (up to a tick of a
    /// runaway's every call would otherwise run ungated).
    pub fn first_epoch_deadline(&self) -> u64 {
        u64::from(self.short)
    }

    /// The permit this call may hold, for its imports to give back.
    pub fn gate(&self) -> GateHold {
        self.held.clone()
    }

    /// The call's guest clock, for its host calls to be left out.
    pub fn clock(&self) -> GuestClock {
        self.clock.clone()
    }

    /// What the call does at this tick.
    pub fn on_tick(&mut self) -> UpdateDeadline {
        let now = std::time::Instant::now();
        if now >= self.deadline {
            return UpdateDeadline::Interrupt;
        }
        self.interrupt_before_next_tick(now);
        let deadline = self.deadline;
        // Once long-running (a suspect call: from its start), no clock reads.
        if self.short && self.still_short() {
            let clock = self.clock.clone();
            // tokio's `yield_now` puts the task at the back of the run queue;
            // a plain self-wake would land in the worker's LIFO slot and let
            // a spinning guest run again at once.
            return UpdateDeadline::YieldCustom(
                1,
                Box::pin(async move {
                    tokio::task::yield_now().await;
                    never_past(deadline).await;
                    clock.resumed();
                }),
            );
        }
        self.leave_short();
        // Queued for the gate, it may resume at any time before its deadline.
        self.interrupt_at_deadline();
        // Give the permit back (after a rest while short calls are running)
        // and queue for it again, behind the other long-running
        // calls; waiting ends at the deadline at the latest, where the
        // call's timeout answers 504 without running the guest again.
        let held = self.held.clone();
        let returned = held.take();
        if let Some(permit) = returned
            && self.short_calls.load(Ordering::Relaxed) > 0
        {
            let rest = self.rest;
            tokio::spawn(async move {
                tokio::time::sleep(rest).await;
                drop(permit);
            });
        }
        let permits = Arc::clone(&self.permits);
        let deadline = Instant::from_std(self.deadline);
        UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                tokio::task::yield_now().await;
                match tokio::time::timeout_at(deadline, permits.acquire_owned()).await {
                    Ok(Ok(permit)) => {
                        held.hold(permit);
                        never_past(deadline.into_std()).await;
                        guest_priority::lower();
                    }
                    // Past the deadline: never resume the guest (it would
                    // run up to one more tick before trapping); the call's
                    // own timeout, at the same deadline, ends it now.
                    Err(_) => std::future::pending::<()>().await,
                    // The gate is closed (the runtime is going away): run on
                    // to the next tick, which traps at the deadline.
                    Ok(Err(_)) => {}
                }
            }),
        )
    }
}

/// Where a yield ends past the deadline, never resumes the guest: the
/// epoch advance at the deadline came while it was yielded, and wasmtime
/// would set its next epoch deadline from there, a tick late. The call's
/// wait for its deadline, polled next, ends it now.
async fn never_past(deadline: std::time::Instant) {
    if std::time::Instant::now() >= deadline {
        std::future::pending::<()>().await;
    }
}

impl TickScheduler {
    /// Asks the ticker to advance the epoch at the deadline, once, when it
    /// may come before the next tick: a running guest's task is not polled,
    /// so the call's own wait cannot hand its deadline over in time.
    fn interrupt_before_next_tick(&mut self, now: std::time::Instant) {
        if self.deadline < now + EPOCH_TICK.saturating_mul(2) {
            self.interrupt_at_deadline();
        }
    }

    /// Asks the ticker to advance the epoch at the deadline, once.
    fn interrupt_at_deadline(&mut self) {
        if self.interrupt.is_none() {
            self.interrupt = Some(self.deadlines.interrupt_at(self.deadline));
        }
    }

    /// Adds the guest time since the last tick: whether the call is short.
    fn still_short(&mut self) -> bool {
        let ran = self.clock.ran_since_resume();
        self.ran += ran;
        let later = self.after_first_tick.map_or(Duration::ZERO, |t| t + ran);
        self.after_first_tick = Some(later);
        self.ran < LONG_RUNNING_AFTER || later < AFTER_FIRST_TICK
    }

    /// Stops counting this call as short.
    fn leave_short(&mut self) {
        if std::mem::replace(&mut self.short, false) {
            self.short_calls.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for TickScheduler {
    fn drop(&mut self) {
        self.leave_short();
        if let Some(key) = self.interrupt.take() {
            self.deadlines.withdraw(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::guest_clock::spin_on_cpu;

    #[tokio::test]
    async fn a_call_near_or_past_its_first_tick_has_the_epoch_advanced_at_its_deadline() {
        let deadlines = Arc::new(Deadlines::default());
        let gate = LongRunningGate::new(Arc::clone(&deadlines));

        // A budget of many ticks: nothing handed over while it is short.
        let far = Instant::now() + Duration::from_secs(60);
        let mut scheduler = gate.scheduler(far, false);
        assert!(deadlines.earliest().is_none());
        // Queued for the gate (a suspect call is long-running at once), it
        // may resume at any time before its deadline: handed over.
        let mut suspect = gate.scheduler(far, true);
        drop(suspect.on_tick());
        assert_eq!(deadlines.earliest(), Some(far.into_std()));
        drop(suspect);
        assert!(deadlines.earliest().is_none(), "withdrawn with the call");

        // A deadline before the next tick but one: handed over at once.
        let near = Instant::now() + EPOCH_TICK;
        let short = gate.scheduler(near, false);
        assert_eq!(deadlines.earliest(), Some(near.into_std()));
        drop(short);
        assert!(deadlines.earliest().is_none());

        // Past the deadline, the next tick traps.
        scheduler.deadline = std::time::Instant::now();
        assert!(matches!(scheduler.on_tick(), UpdateDeadline::Interrupt));
    }

    #[tokio::test]
    async fn waiting_in_the_host_does_not_make_a_call_long_running() {
        let gate = LongRunningGate::new(Arc::new(Deadlines::default()));
        let far = Instant::now() + Duration::from_secs(60);
        // A durable write: 50 ms waiting on a flush, then a tick. An attempt
        // preempted in the few statements outside the host is made again
        // (waiting counted as guest time would be gated on every attempt).
        let mut clean = false;
        for _ in 0..20 {
            let started = std::time::Instant::now();
            let mut waited = gate.scheduler(far, false);
            let clock = waited.clock();
            clock.entering_host();
            let entered = std::time::Instant::now();
            std::thread::sleep(Duration::from_millis(50));
            let left = std::time::Instant::now();
            clock.left_host();
            drop(waited.on_tick());
            let outside = started.elapsed() - (left - entered);
            if outside < LONG_RUNNING_AFTER / 2 {
                assert!(waited.short, "gated for time spent in the host");
                clean = true;
                break;
            }
        }
        assert!(
            clean,
            "never ran the few statements outside the host within half a tick"
        );
        // Running guest code is long-running, from its second tick on.
        let mut ran = gate.scheduler(far, false);
        spin_on_cpu(EPOCH_TICK * 2);
        drop(ran.on_tick());
        assert!(ran.short, "long-running before a CPU reading");
        ran.clock().resumed();
        spin_on_cpu(EPOCH_TICK);
        drop(ran.on_tick());
        assert!(!ran.short);
    }

    #[tokio::test]
    async fn a_call_kept_off_the_cpu_is_not_long_running() {
        // A short call on a busy machine, preempted for ms tick after tick.
        let mut preempted = LongRunningGate::new(Arc::new(Deadlines::default()))
            .scheduler(Instant::now() + Duration::from_secs(60), false);
        for _ in 0..3 {
            std::thread::sleep(EPOCH_TICK * 5);
            drop(preempted.on_tick());
            assert!(preempted.short, "gated for time off the CPU");
            preempted.clock().resumed();
        }
    }

    #[test]
    fn a_lowered_thread_is_restored() {
        std::thread::spawn(|| {
            let before = guest_priority::current();
            guest_priority::lower();
            let lowered = guest_priority::current();
            if guest_priority::usable() {
                assert_eq!(lowered, before.map(|nice| nice.max(10)));
            } else {
                assert_eq!(lowered, before);
            }
            guest_priority::lower();
            drop(guest_priority::Restore);
            assert_eq!(guest_priority::current(), before);
        })
        .join()
        .unwrap();
    }
}
