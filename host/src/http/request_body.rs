//! Reading request bodies under a size limit, for the droplet call and the
//! admin API alike: refused as soon as they are known to be too large (from
//! `content-length` before reading anything, else while reading), and
//! held against the host-wide budget of request bytes ([`BodyBudget`])
//! from before the first byte is read (a declared length) or as each piece
//! arrives, until the request is answered. A body can also be passed on as
//! it arrives ([`streamed`]), under the same limit, time and budget,
//! counted piece by piece.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::HostError;

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// It is over the limit.
    TooLarge,
    /// It did not arrive within the time allowed.
    TimedOut,
    /// The connection failed while it was read.
    Unreadable,
    /// The host holds as many request bytes as it allows.
    HostBusy,
}

impl BodyError {
    /// What the client is told, for a route whose limit is `limit_kb`.
    pub fn host_error(self, limit_kb: u64) -> HostError {
        match self {
            BodyError::TooLarge => HostError::BodyTooLarge { limit_kb },
            BodyError::TimedOut => {
                HostError::BadRequest("the request body did not arrive in time".to_string())
            }
            BodyError::Unreadable => {
                HostError::BadRequest("the request body could not be read".to_string())
            }
            BodyError::HostBusy => HostError::HostBusy(
                "the host holds as many request bytes as it allows; retry shortly".to_string(),
            ),
        }
    }
}

/// The host-wide budget of request-body bytes held at once, across every
/// request being read or answered.
#[derive(Clone)]
pub struct BodyBudget(Arc<Semaphore>);

impl BodyBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Self {
        Self(Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))))
    }

    /// Bytes not held by any request now.
    pub fn available(&self) -> usize {
        self.0.available_permits()
    }

    fn take(&self, held: &mut Option<OwnedSemaphorePermit>, bytes: usize) -> Result<(), BodyError> {
        if bytes == 0 {
            return Ok(());
        }
        let permits = u32::try_from(bytes).map_err(|_| BodyError::HostBusy)?;
        let permit = Arc::clone(&self.0)
            .try_acquire_many_owned(permits)
            .map_err(|_| BodyError::HostBusy)?;
        match held {
            Some(held) => held.merge(permit),
            None => *held = Some(permit),
        }
        Ok(())
    }
}

/// A request body read whole, its bytes held against the budget until
/// this (or its [`BodyHeld`]) is dropped.
#[derive(Debug, Default)]
pub struct ReadBody {
    /// The body.
    pub bytes: Bytes,
    held: BodyHeld,
}

/// A body's share of the budget, given back when dropped.
#[derive(Debug, Default)]
pub struct BodyHeld(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl ReadBody {
    /// The bytes (the only reference to them, so that handing them to the
    /// guest's request copies nothing) and the share of the budget.
    pub fn into_parts(self) -> (Bytes, BodyHeld) {
        (self.bytes, self.held)
    }
}

/// The body's declared length; refused when it is over `limit`.
fn declared_length(headers: &http::HeaderMap, limit: usize) -> Result<Option<u64>, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    Ok(declared)
}

/// Reads `body` whole, refusing it past `limit` bytes, after `timeout`,
/// or when `budget` cannot hold it.
pub async fn read_limited<B>(
    headers: &http::HeaderMap,
    body: B,
    limit: usize,
    timeout: Option<Duration>,
    budget: &BodyBudget,
) -> Result<ReadBody, BodyError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = declared_length(headers, limit)?;
    // Most requests (a GET) have none: no reader and no timer for them.
    if body.is_end_stream() {
        return Ok(ReadBody::default());
    }
    let mut held = None;
    // A declared length is held before a byte is read.
    let mut reserved = declared.map_or(0, |length| length as usize);
    budget.take(&mut held, reserved)?;
    let collect = async {
        let mut body = std::pin::pin!(body);
        let mut read = BytesMut::with_capacity(reserved);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| BodyError::Unreadable)?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let len = read.len().saturating_add(data.len());
            if len > limit {
                return Err(BodyError::TooLarge);
            }
            if len > reserved {
                budget.take(&mut held, len - reserved)?;
                reserved = len;
            }
            read.extend_from_slice(&data);
        }
        Ok(read.freeze())
    };
    let bytes = match timeout {
        Some(timeout) => tokio::time::timeout(timeout, collect)
            .await
            .map_err(|_| BodyError::TimedOut)??,
        None => collect.await?,
    };
    Ok(ReadBody {
        bytes,
        held: BodyHeld(held),
    })
}

/// `body`, passed on as it arrives: refused at once when its declared
/// length is over `limit`; otherwise it fails past `limit` bytes, after
/// `timeout`, or when `budget` cannot hold the piece being passed on (each
/// piece is held until the next is asked for).
pub fn streamed<B>(
    headers: &http::HeaderMap,
    body: B,
    limit: usize,
    timeout: Duration,
    budget: &BodyBudget,
) -> Result<StreamedBody<B>, BodyError> {
    declared_length(headers, limit)?;
    Ok(StreamedBody {
        inner: body,
        limit,
        read: 0,
        budget: budget.clone(),
        held: None,
        timeout: Box::pin(tokio::time::sleep(timeout)),
    })
}

/// A request body passed on as it arrives ([`streamed`]).
pub struct StreamedBody<B> {
    inner: B,
    limit: usize,
    read: usize,
    budget: BodyBudget,
    held: Option<OwnedSemaphorePermit>,
    timeout: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl<B> http_body::Body for StreamedBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BodyError>>> {
        use std::task::Poll;
        let this = self.get_mut();
        this.held = None;
        let frame = match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending if this.timeout.as_mut().poll(cx).is_ready() => {
                return Poll::Ready(Some(Err(BodyError::TimedOut)));
            }
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Ready(Some(Err(_))) => return Poll::Ready(Some(Err(BodyError::Unreadable))),
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        if let Some(data) = frame.data_ref() {
            this.read = this.read.saturating_add(data.len());
            if this.read > this.limit {
                return Poll::Ready(Some(Err(BodyError::TooLarge)));
            }
            if let Err(busy) = this.budget.take(&mut this.held, data.len()) {
                return Poll::Ready(Some(Err(busy)));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::Full;

    use super::*;

    fn length(value: &'static str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, value.parse().unwrap());
        headers
    }

    fn budget() -> BodyBudget {
        BodyBudget::new(1 << 20)
    }

    #[tokio::test]
    async fn bodies_within_the_limit_are_read() {
        let body = Full::new(Bytes::from_static(b"abcd"));
        let read = read_limited(&http::HeaderMap::new(), body, 4, None, &budget()).await;
        assert_eq!(read.map(|read| read.bytes), Ok(Bytes::from_static(b"abcd")));
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused_declared_or_not() {
        let body = || Full::new(Bytes::from_static(b"abcde"));
        let none = http::HeaderMap::new();
        let read = read_limited(&none, body(), 4, None, &budget()).await;
        assert_eq!(read.err(), Some(BodyError::TooLarge));
        let declared =
            read_limited(&length("999"), Full::new(Bytes::new()), 4, None, &budget()).await;
        assert_eq!(declared.err(), Some(BodyError::TooLarge));
    }

    #[tokio::test]
    async fn bodies_are_held_against_the_budget_until_dropped() {
        let budget = BodyBudget::new(10);
        let body = || Full::new(Bytes::from_static(b"abcdef"));
        let none = http::HeaderMap::new();
        let first = read_limited(&none, body(), 100, None, &budget)
            .await
            .expect("within the budget");
        assert_eq!(budget.available(), 4);
        // Declared or not, a second one does not fit while the first is held.
        let second = read_limited(&none, body(), 100, None, &budget).await;
        assert_eq!(second.err(), Some(BodyError::HostBusy));
        let declared = read_limited(&length("6"), body(), 100, None, &budget).await;
        assert_eq!(declared.err(), Some(BodyError::HostBusy));
        drop(first);
        assert_eq!(budget.available(), 10);
        assert!(
            read_limited(&length("6"), body(), 100, None, &budget)
                .await
                .is_ok()
        );
    }
}
