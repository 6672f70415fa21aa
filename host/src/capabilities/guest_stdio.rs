//! A guest's stdout and stderr: written by WASI, split into lines, and each
//! line logged through the call's [`GuestLog`] (bounded as its log lines
//! are).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
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
        }
    }

    /// `log`'s guest stderr, as warn lines.
    pub fn stderr(log: &Arc<GuestLog>) -> Self {
        GuestStdio {
            log: Arc::clone(log),
            source: Source::Stderr,
        }
    }

    fn writer(&self) -> LineWriter {
        LineWriter {
            log: Arc::clone(&self.log),
            source: self.source,
            partial: Vec::new(),
        }
    }
}

/// Splits a byte stream into lines and logs each; a trailing partial line is
/// logged when the stream is dropped.
struct LineWriter {
    log: Arc<GuestLog>,
    source: Source,
    partial: Vec<u8>,
}

impl LineWriter {
    fn push(&mut self, bytes: &[u8]) {
        if matches!(self.source, Source::Stderr) {
            self.log.remember_stderr(&String::from_utf8_lossy(bytes));
        }
        for &byte in bytes {
            if byte == b'\n' {
                self.emit_partial();
            } else {
                self.partial.push(byte);
                if self.partial.len() >= MAX_LINE_BYTES {
                    self.emit_partial();
                }
            }
        }
    }

    fn emit_partial(&mut self) {
        let line = String::from_utf8_lossy(&self.partial);
        let line = line.trim_end_matches('\r');
        if !line.is_empty() {
            let level = match self.source {
                Source::Stderr => Level::Warn,
                Source::Stdout | Source::Log => Level::Info,
            };
            self.log.emit(level, self.source, line, None);
        }
        self.partial.clear();
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.emit_partial();
    }
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
