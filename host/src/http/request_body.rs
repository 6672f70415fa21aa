//! Reading request bodies under a size limit, for the droplet call and the
//! admin API alike: refused as soon as they are known to be too large (from
//! `content-length` before reading anything, else while reading).

use std::time::Duration;

use bytes::Bytes;
use http::header;
use http_body_util::{BodyExt, Limited};

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// It is over the limit.
    TooLarge,
    /// It did not arrive within the time allowed.
    TimedOut,
    /// The connection failed while it was read.
    Unreadable,
}

/// Reads `body` whole, refusing it past `limit` bytes or after `timeout`.
pub async fn read_limited<B>(
    headers: &http::HeaderMap,
    body: B,
    limit: usize,
    timeout: Option<Duration>,
) -> Result<Bytes, BodyError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    // Most requests (a GET) have none: no reader and no timer for them.
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    let collect = Limited::new(body, limit).collect();
    let collected = match timeout {
        Some(timeout) => tokio::time::timeout(timeout, collect)
            .await
            .map_err(|_| BodyError::TimedOut)?,
        None => collect.await,
    };
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Unreadable),
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

    #[tokio::test]
    async fn bodies_within_the_limit_are_read() {
        let body = Full::new(Bytes::from_static(b"abcd"));
        let read = read_limited(&http::HeaderMap::new(), body, 4, None).await;
        assert_eq!(read, Ok(Bytes::from_static(b"abcd")));
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused_declared_or_not() {
        let body = || Full::new(Bytes::from_static(b"abcde"));
        let none = http::HeaderMap::new();
        assert_eq!(
            read_limited(&none, body(), 4, None).await,
            Err(BodyError::TooLarge)
        );
        let declared = read_limited(&length("999"), Full::new(Bytes::new()), 4, None).await;
        assert_eq!(declared, Err(BodyError::TooLarge));
    }
}
