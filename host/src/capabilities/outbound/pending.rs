//! A call to another droplet on its way, as a store's resource table holds
//! it ([`Pending`]): its task until it has answered, then its answer until
//! the guest takes it, and the `pending-call` methods on the table. Generic
//! over the answer, so that the live bindings and replay's (generated
//! separately, each with its own `call-error`) share it.

use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi_http::WasiBody;

/// A call on its way, in the store's table: its task until it has
/// answered, then its answer until the guest takes it. Generic over the
/// answer so that replay's bindings, generated separately, share it.
pub struct Pending<A: Send + 'static> {
    task: Option<tokio::task::JoinHandle<(A, Option<WasiBody>)>>,
    answer: Option<A>,
    /// The callee's response body, read to its end: it keeps the response
    /// bytes counted against the host's budget until the guest has them.
    held: Option<WasiBody>,
    /// The answer when the task ended without one (it panicked).
    lost: fn() -> A,
}

impl<A: Send + 'static> Pending<A> {
    /// A call answered at once (refused before it was sent, or replayed).
    pub fn answered(answer: A, lost: fn() -> A) -> Self {
        Self {
            task: None,
            answer: Some(answer),
            held: None,
            lost,
        }
    }

    /// A call made by `call`: run at once as far as it goes without
    /// waiting, then, if it has not answered, in a task of its own. A call
    /// to a droplet that answers without waiting on anything (most do) is
    /// answered before this returns: no task, no wake-up of another worker.
    /// A call that panics answers `lost`, in the task as here.
    pub(super) fn start(
        call: impl Future<Output = (A, Option<WasiBody>)> + Send + 'static,
        lost: fn() -> A,
    ) -> Self {
        let mut call = Box::pin(call);
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            futures_util::FutureExt::now_or_never(&mut call)
        }));
        let (task, answer, held) = match polled {
            Ok(Some((answer, held))) => (None, Some(answer), held),
            Ok(None) => (Some(tokio::spawn(call)), None, None),
            Err(_) => (None, Some(lost()), None),
        };
        Self {
            task,
            answer,
            held,
            lost,
        }
    }

    /// The answer, once: `None` until it has come.
    pub fn take(&mut self) -> Option<A> {
        if let Some(task) = &mut self.task
            && task.is_finished()
        {
            let finished = futures_util::FutureExt::now_or_never(task);
            self.finish(finished);
        }
        let answer = self.answer.take();
        if answer.is_some() {
            self.held = None;
        }
        answer
    }

    fn finish(&mut self, finished: Option<Result<(A, Option<WasiBody>), tokio::task::JoinError>>) {
        self.task = None;
        (self.answer, self.held) = match finished {
            Some(Ok((answer, held))) => (Some(answer), held),
            Some(Err(_)) | None => (Some((self.lost)()), None),
        };
    }
}

impl<A: Send + 'static> Drop for Pending<A> {
    /// Dropping the pending call abandons it.
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

#[async_trait::async_trait]
impl<A: Send + 'static> wasmtime_wasi::p2::Pollable for Pending<A> {
    async fn ready(&mut self) {
        if let Some(task) = &mut self.task {
            let finished = task.await;
            self.finish(Some(finished));
        }
    }
}

/// The pending call a guest's handle names, as the table holds it: the
/// bindings' `pending-call` is only a marker type (one per generation of
/// the bindings); the table's entry is a [`Pending`].
fn entry<A: Send + 'static, R: 'static>(call: &Resource<R>) -> Resource<Pending<A>> {
    if call.owned() {
        Resource::new_own(call.rep())
    } else {
        Resource::new_borrow(call.rep())
    }
}

/// `pending-call.subscribe`: a pollable ready once the answer has come.
pub fn subscribe<A: Send + 'static, R: 'static>(
    table: &mut ResourceTable,
    call: Resource<R>,
) -> wasmtime::Result<Resource<DynPollable>> {
    wasmtime_wasi::p2::subscribe(table, entry::<A, R>(&call))
}

/// `pending-call.get`: the answer, once.
pub fn take<A: Send + 'static, R: 'static>(
    table: &mut ResourceTable,
    call: Resource<R>,
) -> wasmtime::Result<Option<A>> {
    Ok(table.get_mut(&entry::<A, R>(&call))?.take())
}

/// Dropping a `pending-call`: the call is abandoned if still running.
pub fn remove<A: Send + 'static, R: 'static>(
    table: &mut ResourceTable,
    call: Resource<R>,
) -> wasmtime::Result<()> {
    table.delete(entry::<A, R>(&call))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime_wasi::p2::Pollable;

    fn lost() -> i32 {
        -1
    }

    #[tokio::test]
    async fn a_call_that_need_not_wait_has_answered_when_it_is_started() {
        let mut pending = Pending::start(async { (7, None) }, lost);
        assert!(
            pending.task.is_none(),
            "no task for a call that never waits"
        );
        assert_eq!(pending.take(), Some(7));
        assert_eq!(pending.take(), None, "the answer is handed over once");
    }

    #[tokio::test]
    async fn a_call_that_waits_goes_on_in_a_task_of_its_own() {
        let (answer, answered) = tokio::sync::oneshot::channel::<i32>();
        let mut pending =
            Pending::start(async move { (answered.await.unwrap_or(0) + 1, None) }, lost);
        assert!(pending.task.is_some(), "a call that waits has a task");
        assert_eq!(pending.take(), None, "no answer before it has come");
        answer.send(41).unwrap();
        pending.ready().await;
        assert_eq!(pending.take(), Some(42));
    }

    #[tokio::test]
    async fn a_call_that_panics_when_it_is_started_answers_lost() {
        let mut pending = Pending::start(
            async {
                if lost() < 0 {
                    panic!("a bug in a callee's host code");
                }
                (1, None)
            },
            lost,
        );
        assert_eq!(pending.take(), Some(-1));
    }
}
