//! A guest's stdout and stderr: written by WASI, split into lines, and each
//! line logged through the call's [`GuestLog`] (bounded as its log lines
//! are). A line written in pieces (`eprint!` per piece, each through a
//! stream of its own) is one log line: the unfinished line is kept per
//! call and per stream, and logged when its newline comes or the call ends.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::log::{GuestLog, MAX_LINE_BYTES, Source};
use crate::bindings::fp::droplet::log::Level;

/// A guest stdio stream that turns written bytes into log lines.
pub struct GuestStdio {
    log: Arc<GuestLog>,
    source: Source,
    /// The line being written, shared by every stream the guest opens on
    /// this stdio in this call.
    partial: Arc<Mutex<Vec<u8>>>,
}

impl Drop for GuestStdio {
    /// The call is over: its last, unfinished line is logged.
    fn drop(&mut self) {
        let mut partial = lock(&self.partial);
        if !partial.is_empty() {
            emit(&self.log, self.source, &partial);
            partial.clear();
        }
    }
}

/// The shared line; a writer that panicked mid-write left bytes, not a
/// broken invariant.
fn lock(partial: &Mutex<Vec<u8>>) -> std::sync::MutexGuard<'_, Vec<u8>> {
    partial
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl IsTerminal for GuestStdio {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStdio {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.writer())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.writer())
    }
}

impl GuestStdio {
    /// `log`'s guest stdout, as info lines.
    pub fn stdout(log: &Arc<GuestLog>) -> Self {
        GuestStdio {
            log: Arc::clone(log),
            source: Source::Stdout,
            partial: Arc::default(),
        }
    }

    /// `log`'s guest stderr, as warn lines.
    pub fn stderr(log: &Arc<GuestLog>) -> Self {
        GuestStdio {
            log: Arc::clone(log),
            source: Source::Stderr,
            partial: Arc::default(),
        }
    }

    fn writer(&self) -> LineWriter {
        LineWriter {
            log: Arc::clone(&self.log),
            source: self.source,
            partial: Arc::clone(&self.partial),
        }
    }
}

/// Splits a byte stream into lines and logs each; a trailing partial line
/// waits in the call's [`GuestStdio`] for the rest.
struct LineWriter {
    log: Arc<GuestLog>,
    source: Source,
    partial: Arc<Mutex<Vec<u8>>>,
}

impl LineWriter {
    fn push(&mut self, bytes: &[u8]) {
        if matches!(self.source, Source::Stderr) {
            self.log.remember_stderr(&String::from_utf8_lossy(bytes));
        }
        let mut partial = lock(&self.partial);
        for &byte in bytes {
            if byte == b'\n' {
                emit(&self.log, self.source, &partial);
                partial.clear();
            } else {
                partial.push(byte);
                if partial.len() >= MAX_LINE_BYTES {
                    emit(&self.log, self.source, &partial);
                    partial.clear();
                }
            }
        }
    }
}

/// Logs one line of a guest's stdout (info) or stderr (warn); an empty
/// line is a line too.
fn emit(log: &GuestLog, source: Source, line: &[u8]) {
    let line = String::from_utf8_lossy(line);
    let line = line.trim_end_matches('\r');
    let level = match source {
        Source::Stderr => Level::Warn,
        Source::Stdout | Source::Log => Level::Info,
    };
    log.emit(level, source, line, None);
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
