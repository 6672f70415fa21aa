//! Where a suspect droplet's calls run: on threads of their own, not on the
//! host's async workers.
//!
//! A call of a droplet whose recent calls mostly trapped or overran is
//! gated from its first instruction ([`super::scheduler`]), and while it
//! holds a permit its guest runs for a whole tick. On the async workers it
//! would keep one of them from every other request for that tick (on two
//! cores, half the host's workers); here it keeps only its own thread.
//! There is one more of these threads than the gate has permits: a permit
//! never waits for a thread, and while every permit's guest runs its tick
//! one thread is free for what is not guest code (instantiating the next
//! call, answering one whose deadline came). They take their share of the
//! CPU from the kernel (at a lowered priority while running guest code,
//! [`super::guest_priority`]), and the gate's turns and rests bound it.

use std::sync::{Arc, OnceLock};

use tokio::runtime::Handle;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use super::call::{Call, CallError};
use super::records::Answer;
use super::runtime::{Linked, Runtime};
use super::scheduler::LongRunningGate;

/// The threads' runtime, built on the first suspect call and kept for the
/// life of the process (threads of a runtime dropped inside another
/// runtime's task would have to be shut down from there); `None` when its
/// threads could not be started, and suspect calls run on the caller's.
fn gated_threads() -> Option<&'static Handle> {
    static THREADS: OnceLock<Option<Handle>> = OnceLock::new();
    THREADS
        .get_or_init(|| {
            let built = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(LongRunningGate::permits_for_this_machine() + 1)
                .thread_name("droplet-gated")
                .enable_all()
                .build();
            match built {
                Ok(runtime) => {
                    let handle = runtime.handle().clone();
                    // Kept: its threads serve every later suspect call.
                    std::mem::forget(runtime);
                    Some(handle)
                }
                Err(err) => {
                    tracing::error!(error = %err, "cannot start the gated calls' threads; suspect calls run on the async workers");
                    None
                }
            }
        })
        .as_ref()
}

impl Runtime {
    /// Runs one request in a fresh instance and drops the instance
    /// ([`Runtime::run`]): a suspect droplet's call on the gated threads,
    /// every other call where it is awaited. Dropping the future ends the
    /// call wherever it runs.
    pub async fn call(
        self: &Arc<Self>,
        droplet: &Linked,
        call: Call,
    ) -> Result<Option<Answer>, CallError> {
        let Some(threads) = call.suspect.then(gated_threads).flatten() else {
            return self.run(droplet, call).await;
        };
        // Moved to another thread: the droplet cloned (a few reference
        // counts), only here.
        let (runtime, droplet) = (Arc::clone(self), droplet.clone());
        let task =
            threads.spawn(async move { runtime.run(&droplet, call).await }.in_current_span());
        AbortOnDropHandle::new(task).await.unwrap_or_else(|err| {
            tracing::error!(error = %err, "a suspect call's task ended without an answer");
            Err(CallError::Trap(format!("failed: {err}")))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::guest::call::CallError;
    use crate::guest::call::tests::{call, get};
    use crate::testing;

    #[tokio::test(flavor = "current_thread")]
    async fn a_suspect_call_runs_its_guest_off_the_callers_thread() {
        let parts = testing::parts();
        // A runaway's call, awaited on this runtime's only thread, beside a
        // task that counts how often that thread is free to run it.
        let spun = call(&parts, "spin", get("/"), Duration::from_millis(300), true);
        let done = std::cell::Cell::new(false);
        let (result, polls) = tokio::join!(
            async {
                let result = spun.await;
                done.set(true);
                result
            },
            async {
                let mut polls = 0u64;
                while !done.get() {
                    polls += 1;
                    tokio::task::yield_now().await;
                }
                polls
            },
        );
        let Some(result) = result else {
            return;
        };
        assert!(matches!(result, Err(CallError::BudgetExceeded)));
        // Run here, the guest would keep the thread a tick at a time: one
        // poll of the other task per tick, about 300 in all.
        assert!(polls > 3_000, "the thread was free {polls} times");
    }
}
