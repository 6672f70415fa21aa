//! The host's log: JSON lines for machines (the default) or pretty lines for
//! humans, filtered by `RUST_LOG` (default `info`).
//!
//! Lines are handed to a dedicated writer thread and written to stdout in
//! batches, so a request never waits on a `write` syscall for its access-log
//! line. The channel applies backpressure rather than dropping lines.

use std::io::BufWriter;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, fields at the top level.
    Json,
    /// Human-readable lines.
    Pretty,
}

/// Installs the global subscriber, writing to stdout. Keep the returned guard
/// alive until exit: dropping it flushes the lines still queued.
pub fn init(format: LogFormat) -> WorkerGuard {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("log-writer")
        .finish(BufWriter::new(std::io::stdout()));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
        LogFormat::Pretty => builder.with_ansi(false).init(),
    }
    log_panics();
    guard
}

/// Logs a panic as one error line of the host's log (message and location,
/// tagged with the thread), instead of raw text on stderr. Installed by
/// [`init`].
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|message| message.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_string());
        let location = info
            .location()
            .map(|location| format!("{}:{}", location.file(), location.line()));
        tracing::error!(
            panic = %message,
            location = location.as_deref(),
            thread = std::thread::current().name(),
            "the host panicked; the request it was serving answers 500"
        );
    }));
}
