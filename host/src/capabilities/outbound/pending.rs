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

    /// A call running in `task`.
    pub(super) fn started(
        task: tokio::task::JoinHandle<(A, Option<WasiBody>)>,
        lost: fn() -> A,
    ) -> Self {
        Self {
            task: Some(task),
            answer: None,
            held: None,
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
