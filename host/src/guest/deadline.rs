//! Budgets that end on time: a call's deadline, met to well under a
//! millisecond instead of tokio's timer wheel, which rounds every deadline
//! up to its next millisecond and then fires it on the next turn of a
//! worker's driver (on average half a millisecond late, on a busy host more).
//!
//! A call waits for its deadline on tokio's wheel until shortly before it
//! ([`HANDOVER`]), then hands the last stretch to the epoch ticker thread,
//! which already wakes every tick: it sleeps exactly until the earliest
//! handed-over deadline, wakes that call's task and advances the epoch, so a
//! guest running at that moment traps at once rather than at the next tick.
//! Calls that end early (nearly all) never hand anything over.
//!
//! A call whose guest is running cannot be polled, so its wait cannot hand
//! itself over in time; its tick scheduler ([`crate::guest::scheduler`]) asks the
//! ticker for the epoch to advance at the deadline instead
//! ([`Deadlines::interrupt_at`]), at its last tick before it.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How long before its deadline a call hands the wait over to the ticker:
/// two ticks, so that tokio's wheel (up to a millisecond late) has woken the
/// call before the ticker's last tick ahead of the deadline.
pub const HANDOVER: Duration = Duration::from_millis(2);

/// The deadlines handed over to the ticker, earliest first: a waiting
/// call's waker, or none where only the epoch must advance.
#[derive(Default)]
pub struct Deadlines {
    waiting: Mutex<BTreeMap<Key, Option<Waker>>>,
    next_id: AtomicU64,
}

/// One handed-over deadline.
pub type Key = (Instant, u64);

impl Deadlines {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<Key, Option<Waker>>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn key(&self, deadline: Instant) -> Key {
        (deadline, self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Has the ticker advance the epoch at `deadline`, so that a guest
    /// running then traps at once; withdrawn with [`Deadlines::withdraw`].
    pub fn interrupt_at(&self, deadline: Instant) -> Key {
        let key = self.key(deadline);
        self.lock().insert(key, None);
        key
    }

    /// Withdraws a handed-over deadline (gone already once it was due).
    pub fn withdraw(&self, key: Key) {
        self.lock().remove(&key);
    }

    /// The earliest deadline handed over, if any.
    pub fn earliest(&self) -> Option<Instant> {
        self.lock().keys().next().map(|&(deadline, _)| deadline)
    }

    /// Wakes every call whose deadline is `now` or earlier; says how many
    /// deadlines were due.
    pub fn wake_due(&self, now: Instant) -> usize {
        let due: Vec<Option<Waker>> = {
            let mut waiting = self.lock();
            let later = waiting.split_off(&(now, u64::MAX));
            std::mem::replace(&mut *waiting, later)
                .into_values()
                .collect()
        };
        let count = due.len();
        due.into_iter().flatten().for_each(Waker::wake);
        count
    }

    /// A future that resolves at `deadline`, not before.
    pub fn at(&self, deadline: Instant) -> AtDeadline<'_> {
        let wheel = deadline
            .checked_sub(HANDOVER)
            .filter(|&handover| handover > Instant::now())
            .map(|handover| Box::pin(tokio::time::sleep_until(handover.into())));
        AtDeadline {
            deadlines: self,
            deadline,
            wheel,
            key: None,
        }
    }
}

/// See [`Deadlines::at`].
pub struct AtDeadline<'a> {
    deadlines: &'a Deadlines,
    deadline: Instant,
    /// tokio's wheel, up to the hand-over (none when the deadline is
    /// nearer than that).
    wheel: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The entry handed to the ticker, once handed over.
    key: Option<Key>,
}

impl Future for AtDeadline<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            self.withdraw();
            return Poll::Ready(());
        }
        if self.key.is_none()
            && let Some(wheel) = self.wheel.as_mut()
            && wheel.as_mut().poll(cx).is_pending()
        {
            return Poll::Pending;
        }
        let key = match self.key {
            Some(key) => key,
            None => self.deadlines.key(self.deadline),
        };
        self.deadlines.lock().insert(key, Some(cx.waker().clone()));
        self.key = Some(key);
        // The ticker may have passed the deadline between the check above
        // and the hand-over, before it saw the entry.
        if Instant::now() >= self.deadline {
            self.withdraw();
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl AtDeadline<'_> {
    fn withdraw(&mut self) {
        if let Some(key) = self.key.take() {
            self.deadlines.withdraw(key);
        }
    }
}

impl Drop for AtDeadline<'_> {
    fn drop(&mut self) {
        self.withdraw();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Plays the ticker: wakes due deadlines until told to stop.
    fn ticker(deadlines: Arc<Deadlines>, stop: Arc<std::sync::atomic::AtomicBool>) {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_micros(100));
            deadlines.wake_due(Instant::now());
        }
    }

    #[tokio::test]
    async fn a_deadline_resolves_never_before_it_and_leaves_nothing_behind() {
        let deadlines = Arc::new(Deadlines::default());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (deadlines, stop) = (Arc::clone(&deadlines), Arc::clone(&stop));
            move || ticker(deadlines, stop)
        });
        for wait_ms in [0, 1, 3, 7, 20] {
            let deadline = Instant::now() + Duration::from_millis(wait_ms);
            deadlines.at(deadline).await;
            assert!(Instant::now() >= deadline, "resolved before its deadline");
        }
        assert!(deadlines.earliest().is_none(), "an entry was left behind");
        stop.store(true, Ordering::Relaxed);
        thread.join().unwrap();
    }

    #[tokio::test]
    async fn the_last_stretch_is_handed_over_and_withdrawn_when_the_wait_is_dropped() {
        let deadlines = Deadlines::default();
        let deadline = Instant::now() + HANDOVER - Duration::from_micros(100);
        let mut wait = Box::pin(deadlines.at(deadline));
        let waker = futures::task::noop_waker();
        let polled = wait.as_mut().poll(&mut Context::from_waker(&waker));
        if polled.is_pending() {
            assert_eq!(deadlines.earliest(), Some(deadline), "handed over");
        } else {
            assert!(Instant::now() >= deadline, "resolved before its deadline");
        }
        drop(wait);
        assert!(deadlines.earliest().is_none(), "a dropped wait withdraws");
        // A far deadline stays on tokio's wheel: nothing is handed over.
        let mut far = Box::pin(deadlines.at(Instant::now() + Duration::from_secs(60)));
        assert!(
            far.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        assert!(deadlines.earliest().is_none());
    }

    #[test]
    fn an_interrupt_counts_as_due_and_goes_with_the_wake() {
        let deadlines = Deadlines::default();
        let now = Instant::now();
        deadlines.interrupt_at(now);
        let later = deadlines.interrupt_at(now + Duration::from_secs(60));
        assert_eq!(deadlines.wake_due(now), 1, "the due one advances the epoch");
        assert_eq!(deadlines.wake_due(now), 0, "and is gone");
        deadlines.withdraw(later);
        assert!(deadlines.earliest().is_none());
    }
}
