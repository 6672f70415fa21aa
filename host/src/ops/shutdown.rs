//! One shutdown for the whole host: a signal every part listens for, and a
//! record of the background tasks that must finish before the process exits.
//!
//! `serve` triggers it on SIGINT/SIGTERM. From then on `/health` answers 503,
//! the accept loop stops, and every background job (kv purger, directory
//! watcher, registry retries, metrics upkeep) ends at its next await point.
//! `serve` then waits, bounded, for those tasks, and finally asks the kv
//! backend for its last flush.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The host's shutdown: cheap to clone, one per process.
#[derive(Clone, Default)]
pub struct Shutdown {
    /// Cancelled when shutdown begins.
    token: CancellationToken,
    /// Every background task spawned through [`Shutdown::spawn`].
    tasks: TaskTracker,
}

impl Shutdown {
    /// A shutdown that has not begun.
    pub fn new() -> Self {
        Self::default()
    }

    /// Begins shutdown: every listener wakes.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Whether shutdown has begun.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// A token cancelled when shutdown begins, or earlier by its holder
    /// (a task that must stop alone, such as a replaced consumer).
    pub fn child_token(&self) -> tokio_util::sync::CancellationToken {
        self.token.child_token()
    }

    /// Resolves when shutdown begins.
    pub async fn triggered(&self) {
        self.token.cancelled().await
    }

    /// Runs a background task that shutdown waits for. The task must end
    /// soon after [`Shutdown::triggered`] resolves (select on it).
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Runs `task` until it ends or shutdown begins, whichever comes first;
    /// shutdown waits for it. For loops with no state to save.
    pub fn spawn_until_triggered<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.token.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = task => {}
                () = token.cancelled() => {}
            }
        });
    }

    /// Waits for every background task to end, for at most `grace`. Whether
    /// they all did.
    pub async fn wait_for_tasks(&self, grace: Duration) -> bool {
        self.tasks.close();
        tokio::time::timeout(grace, self.tasks.wait()).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_end_when_shutdown_is_triggered() {
        let shutdown = Shutdown::new();
        shutdown.spawn_until_triggered(std::future::pending());
        let listener = shutdown.clone();
        shutdown.spawn(async move { listener.triggered().await });
        assert!(!shutdown.is_triggered());
        shutdown.trigger();
        assert!(shutdown.wait_for_tasks(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn waiting_is_bounded() {
        let shutdown = Shutdown::new();
        shutdown.spawn(std::future::pending());
        shutdown.trigger();
        assert!(!shutdown.wait_for_tasks(Duration::from_millis(20)).await);
    }
}
