//! The accept loop, connection limits and graceful shutdown.
//!
//! Each connection is served by hyper (HTTP/1.1, and HTTP/2 with prior
//! knowledge) on its own task and watched by a [`GracefulShutdown`]. When the
//! host's [`Shutdown`](crate::ops::shutdown::Shutdown) is triggered the listener
//! is closed first, so no new connection is accepted; then every open
//! connection is told to finish its in-flight requests and close, for at
//! most the grace period. Open connections are capped and each is closed
//! once idle ([`crate::http::connection`]).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::app::App;
use crate::capabilities::response_body::HeldBytes;
use crate::http::connection::{Activity, ConnectionLimits, RateLimitedLog, SendingBody, TrackedIo};
use crate::http::service::{self, Side};

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How often an HTTP/2 connection is pinged, and how long the answer may
/// take before the connection is dropped as dead.
const HTTP2_KEEP_ALIVE: Duration = Duration::from_secs(20);
/// The most an HTTP/1.1 connection's read buffer holds (and so the
/// largest request head).
pub const MAX_HTTP1_BUFFER: usize = 64 << 10;
/// Streams one HTTP/2 connection may have open at once.
pub const MAX_HTTP2_STREAMS: u32 = 100;
/// The longest pause after failed accepts (doubling from 10 ms).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Serves connections from `listener` until the host's shutdown is
/// triggered, then drains them for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    limits: ConnectionLimits,
    grace: Duration,
    side: Side,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        // What one connection's read buffer may grow to (hyper's default
        // is ~400 KiB): a thousand clients trickling bodies would hold
        // that much each. It also bounds a request's head.
        .max_buf_size(MAX_HTTP1_BUFFER);
    builder
        .http2()
        .timer(TokioTimer::new())
        // Each stream may hold a request body: bound how many one
        // connection opens at once (the body budget bounds their bytes).
        .max_concurrent_streams(MAX_HTTP2_STREAMS)
        .keep_alive_interval(Some(HTTP2_KEEP_ALIVE))
        .keep_alive_timeout(HTTP2_KEEP_ALIVE);
    let graceful = GracefulShutdown::new();
    let shutdown = app.shutdown.clone();
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut backoff = Duration::ZERO;
    let mut failures = RateLimitedLog::default();

    loop {
        // At the cap, stop accepting (clients wait in the listen backlog)
        // until a connection closes.
        let permit = tokio::select! {
            permit = Arc::clone(&open).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = shutdown.triggered() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.triggered() => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => {
                backoff = Duration::ZERO;
                stream
            }
            Err(err) => {
                // Out of file descriptors, or a connection reset before
                // accept: back off (doubling) rather than spin, and say so
                // once a second at most.
                failures.accept_failed(&err);
                backoff = (backoff * 2).clamp(Duration::from_millis(10), MAX_ACCEPT_BACKOFF);
                tokio::select! {
                    () = tokio::time::sleep(backoff) => continue,
                    () = shutdown.triggered() => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let activity = Activity::new();
        let app = Arc::clone(&app);
        let requests = Arc::clone(&activity);
        let service = service_fn(move |req| {
            let app = Arc::clone(&app);
            let requests = Arc::clone(&requests);
            let handling = requests.handling();
            async move {
                let mut response = service::handle(app, req, side).await;
                // Sending starts before handling ends: never idle between.
                let sending = requests.sending();
                drop(handling);
                let held = response.extensions_mut().remove::<HeldBytes>();
                Ok::<_, Infallible>(response.map(|body| SendingBody::new(body, sending, held)))
            }
        });
        let io = TokioIo::new(TrackedIo::new(stream, Arc::clone(&activity)));
        let connection = builder.serve_connection(io, service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            tokio::select! {
                served = connection => {
                    if let Err(err) = served {
                        tracing::debug!(error = %err, "connection closed with an error");
                    }
                }
                () = activity.idle(limits.idle_timeout) => {
                    tracing::debug!("idle connection closed");
                }
            }
            drop(permit);
        });
    }

    drop(listener);
    tracing::info!(
        grace_s = grace.as_secs_f64(),
        "shutting down: finishing in-flight requests"
    );
    match tokio::time::timeout(grace, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!("grace period over: closing the remaining connections"),
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM; only SIGINT stops the host");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutdown signal received");
}
