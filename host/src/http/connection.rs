//! What one client connection may hold: activity tracking for the idle
//! timeout, the count of its requests in flight, and the cap on open
//! connections.
//!
//! A connection is idle when none of its requests is being handled and no
//! response of its is making progress ([`Activity`]). That one rule closes a
//! connection that never sends a byte after accept, an HTTP/1.1 keep-alive
//! connection nobody reuses, an HTTP/2 connection that sent only its preface
//! (or only answers pings), and a client that stopped reading its response.
//! Slowly trickled headers are hyper's `header_read_timeout` as well; slowly
//! trickled bodies the body read timeout.

use crate::capabilities::response_body::HeldBytes;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Limits on client connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once; past it, accepting waits for one to close.
    pub max_connections: usize,
    /// How long a connection may sit idle before it is closed.
    pub idle_timeout: Duration,
}

impl ConnectionLimits {
    /// Half the process's open-file limit (at least 32): the rest stays for
    /// the droplets' memory images, storage, logs and the listener.
    pub fn default_max_connections() -> usize {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `getrlimit` writes one `rlimit` into the valid, initialised
        // struct it is given and reads nothing else.
        let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
        let soft = if read {
            usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
        } else {
            1024
        };
        cap_for_file_limit(soft)
    }
}

/// The connection cap for a soft open-file limit of `soft`: half of it
/// (the other half for the store, the cache, outbound sockets), at least 32.
fn cap_for_file_limit(soft: usize) -> usize {
    (soft / 2).max(32)
}

/// How busy one connection is. Shared by its I/O, its service and its
/// watchdog.
///
/// A connection is busy while one of its requests is being handled, and
/// while a response is being sent *and* bytes are moving; otherwise it is
/// idle since its last request ended (or since accept). Bytes the host sends
/// on its own — HTTP/2 pings — do not count, so a client cannot keep an
/// unused connection open by answering them.
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    /// Milliseconds after `opened` of the last request start or end, or of
    /// the last write while a response was being sent.
    last_ms: AtomicU64,
    /// Requests inside the service.
    handling: AtomicUsize,
    /// Responses whose bodies are being sent.
    sending: AtomicUsize,
}

impl Activity {
    /// A connection opened now.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            last_ms: AtomicU64::new(0),
            handling: AtomicUsize::new(0),
            sending: AtomicUsize::new(0),
        })
    }

    fn touch(&self) {
        let now = self.opened.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// Marks a request as being handled until the guard drops.
    pub fn handling(self: &Arc<Self>) -> Phase {
        self.touch();
        self.handling.fetch_add(1, Ordering::Relaxed);
        Phase {
            activity: Arc::clone(self),
            counter: PhaseKind::Handling,
        }
    }

    /// Marks a response as being sent until the guard (held by its body)
    /// drops. Taken while the request is still being handled, whose end
    /// records the time: nothing to record here.
    pub fn sending(self: &Arc<Self>) -> Phase {
        self.sending.fetch_add(1, Ordering::Relaxed);
        Phase {
            activity: Arc::clone(self),
            counter: PhaseKind::Sending,
        }
    }

    /// How long the connection has been idle (zero while a request is being
    /// handled).
    pub fn idle_for(&self) -> Duration {
        if self.handling.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.opened.elapsed().saturating_sub(last)
    }

    /// Resolves once the connection has been idle for `timeout`.
    pub async fn idle(&self, timeout: Duration) {
        loop {
            let idle = self.idle_for();
            if idle >= timeout {
                return;
            }
            tokio::time::sleep(timeout - idle).await;
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum PhaseKind {
    Handling,
    Sending,
}

/// A request being handled, or a response being sent, on its connection.
pub struct Phase {
    activity: Arc<Activity>,
    counter: PhaseKind,
}

impl Drop for Phase {
    fn drop(&mut self) {
        let counter = match self.counter {
            PhaseKind::Handling => &self.activity.handling,
            PhaseKind::Sending => &self.activity.sending,
        };
        counter.fetch_sub(1, Ordering::Relaxed);
        self.activity.touch();
    }
}

/// A response body that keeps its connection's [`Phase::Sending`] open —
/// and the response bytes it holds against the host's budget held — until
/// hyper has sent it (and dropped it).
pub struct SendingBody<B> {
    inner: B,
    _sending: Phase,
    _held: Option<HeldBytes>,
}

impl<B> SendingBody<B> {
    /// `inner`, sent under `sending`, holding `held`.
    pub fn new(inner: B, sending: Phase, held: Option<HeldBytes>) -> Self {
        Self {
            inner,
            _sending: sending,
            _held: held,
        }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for SendingBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's byte stream: writes made while a response is being sent
/// count as activity.
pub struct TrackedIo<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> TrackedIo<S> {
    /// `inner`, tracked in `activity`.
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }

    fn wrote(&self, written: usize) {
        if written > 0 && self.activity.sending.load(Ordering::Relaxed) > 0 {
            self.activity.touch();
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TrackedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TrackedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = polled {
            this.wrote(written);
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(written)) = polled {
            this.wrote(written);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// One warning a second at most for a repeating failure, saying how many
/// were not logged in between.
#[derive(Default)]
pub struct RateLimitedLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    /// Logs `error` unless a line went out less than a second ago.
    pub fn accept_failed(&mut self, error: &io::Error) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            error = %error,
            suppressed = self.suppressed,
            "accept failed (out of file descriptors?); backing off"
        );
        self.last = Some(now);
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_idle_only_without_requests_or_bytes() {
        let activity = Activity::new();
        std::thread::sleep(Duration::from_millis(10));
        assert!(activity.idle_for() >= Duration::from_millis(10));
        let handling = activity.handling();
        assert_eq!(activity.idle_for(), Duration::ZERO);
        let sending = activity.sending();
        // Idle time restarts when the request ends: it is never more than
        // the time since (however long the machine takes between the
        // lines), give or take the millisecond it is kept in.
        let ended = std::time::Instant::now();
        drop(handling);
        assert!(activity.idle_for() <= ended.elapsed() + Duration::from_millis(1));
        // A response being sent without any bytes moving goes idle too.
        std::thread::sleep(Duration::from_millis(10));
        assert!(activity.idle_for() >= Duration::from_millis(10));
        let sent = std::time::Instant::now();
        drop(sending);
        assert!(activity.idle_for() <= sent.elapsed() + Duration::from_millis(1));
    }

    #[test]
    fn the_default_cap_is_half_the_file_limit_and_at_least_32() {
        assert_eq!(cap_for_file_limit(10_000), 5_000);
        assert_eq!(cap_for_file_limit(1024), 512);
        assert_eq!(cap_for_file_limit(40), 32);
        assert_eq!(cap_for_file_limit(0), 32);
    }
}
