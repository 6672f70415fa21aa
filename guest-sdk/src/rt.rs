//! A small async executor over `wasi:io` pollables: run several outbound
//! calls at once from one request.
//!
//! A droplet's handler may be `async` (`droplet!(async handle)`); inside
//! any handler, [`block_on`] runs a future to its end. While every future
//! waits, the instance waits in the host (`wasi:io/poll`) for whichever is
//! ready first, so concurrent requests take about as long as the slowest.
//!
//! ```no_run
//! use droplet_sdk::{fetch, rt, Request, Result};
//!
//! async fn handle(_req: Request) -> Result<String> {
//!     let (a, b) = rt::join(
//!         fetch::send(fetch::FetchRequest::get("https://a.example.com/")),
//!         fetch::send(fetch::FetchRequest::get("https://b.example.com/")),
//!     )
//!     .await;
//!     Ok(format!("{} and {}", a?.status(), b?.status()))
//! }
//!
//! droplet_sdk::droplet!(async handle);
//! ```

use std::cell::RefCell;
use std::future::Future;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use wasip2::io::poll::Pollable;

thread_local! {
    /// What the futures being run wait for, registered as they return
    /// `Pending`; cleared after each wait.
    static WAITING: RefCell<Vec<Rc<Pollable>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `future` to its end: polls it, and while it waits, blocks in the
/// host until one of the pollables it waits for is ready.
///
/// A future that waits on nothing this executor knows (not a `wasi:io`
/// pollable, through the SDK) would wait forever: that ends the call with
/// a panic saying so.
///
/// ```
/// let answer = droplet_sdk::rt::block_on(async { 40 + 2 });
/// assert_eq!(answer, 42);
/// ```
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            WAITING.with(|waiting| waiting.borrow_mut().clear());
            return output;
        }
        let waiting = WAITING.with(|waiting| std::mem::take(&mut *waiting.borrow_mut()));
        assert!(
            !waiting.is_empty(),
            "droplet_sdk::rt::block_on: the future waits on nothing the executor can wait for"
        );
        let pollables: Vec<&Pollable> = waiting.iter().map(|pollable| pollable.as_ref()).collect();
        wasip2::io::poll::poll(&pollables);
        // Every future polls again and registers what it still waits for.
    }
}

/// Waits until `pollable` is ready.
pub(crate) async fn ready(pollable: Pollable) {
    let pollable = Rc::new(pollable);
    std::future::poll_fn(|_cx| {
        if pollable.ready() {
            Poll::Ready(())
        } else {
            WAITING.with(|waiting| waiting.borrow_mut().push(Rc::clone(&pollable)));
            Poll::Pending
        }
    })
    .await;
}

/// Runs `a` and `b` at once; both outputs when both are done.
///
/// ```
/// let (a, b) = droplet_sdk::rt::block_on(droplet_sdk::rt::join(async { 1 }, async { "two" }));
/// assert_eq!((a, b), (1, "two"));
/// ```
pub async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut out_a, mut out_b) = (None, None);
    std::future::poll_fn(|cx| {
        if out_a.is_none()
            && let Poll::Ready(value) = a.as_mut().poll(cx)
        {
            out_a = Some(value);
        }
        if out_b.is_none()
            && let Poll::Ready(value) = b.as_mut().poll(cx)
        {
            out_b = Some(value);
        }
        match (out_a.take(), out_b.take()) {
            (Some(a), Some(b)) => Poll::Ready((a, b)),
            (a, b) => {
                (out_a, out_b) = (a, b);
                Poll::Pending
            }
        }
    })
    .await
}

/// Runs every future at once; their outputs, in order, when all are done.
///
/// ```
/// let squares = droplet_sdk::rt::block_on(droplet_sdk::rt::join_all((1..=3).map(|n| async move { n * n })));
/// assert_eq!(squares, [1, 4, 9]);
/// ```
pub async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(outputs.iter_mut().filter_map(Option::take).collect())
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_keep_their_order() {
        let doubled = block_on(join_all((1..=3).map(|n| async move { n * 2 })));
        assert_eq!(doubled, [2, 4, 6]);
        assert_eq!(block_on(join(async { 1 }, async { "b" })), (1, "b"));
    }
}
