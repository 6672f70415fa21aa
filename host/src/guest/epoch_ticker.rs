//! The thread that advances the engine's epoch every [`EPOCH_TICK`] (the
//! granularity of budgets and yields) and wakes calls at the deadlines
//! handed over to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use wasmtime::Engine;

use super::scheduler::EPOCH_TICK;
use crate::guest::deadline::Deadlines;

/// The thread that advances the engine's epoch every [`EPOCH_TICK`]; stopped
/// and joined when the runtime is dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts ticking `engine`'s epoch and waking the calls whose
    /// deadlines were handed over to it ([`crate::guest::deadline`]): between two
    /// ticks it sleeps only until the earliest such deadline, and at one it
    /// advances the epoch too, so a guest running then traps at once.
    pub fn start(engine: Engine, deadlines: Arc<Deadlines>) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn({
                let stop = Arc::clone(&stop);
                move || {
                    raise_ticker_priority();
                    let mut next_tick = std::time::Instant::now() + EPOCH_TICK;
                    while !stop.load(Ordering::Relaxed) {
                        let wake_at = deadlines
                            .earliest()
                            .map_or(next_tick, |deadline| deadline.min(next_tick));
                        let now = std::time::Instant::now();
                        if wake_at > now {
                            std::thread::sleep(wake_at - now);
                        }
                        let now = std::time::Instant::now();
                        let woken = deadlines.wake_due(now);
                        if now >= next_tick || woken > 0 {
                            engine.increment_epoch();
                        }
                        if now >= next_tick {
                            next_tick = now + EPOCH_TICK;
                        }
                    }
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

/// Best effort: runs the ticker thread under `SCHED_FIFO` so that busy cores
/// do not delay the ticks that yield and stop guests. Needs `CAP_SYS_NICE`
/// (root, or granted to the container); without it the ticker stays an
/// ordinary thread.
fn raise_ticker_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 1 };
        // SAFETY: `sched_setscheduler` with pid 0 changes only the calling
        // thread's policy; `param` is a valid, initialised struct that
        // outlives the call.
        let raised = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } == 0;
        tracing::debug!(raised, "epoch ticker real-time priority");
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl EpochTicker {
    /// Asks the thread to stop; it does within one tick (joined on drop).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
