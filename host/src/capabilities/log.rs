//! `fp:droplet/log`, and the capture of guest stdout/stderr.
//!
//! Every line a droplet writes — through the import or by printing — becomes
//! one event in the host's log, tagged with the droplet's name, version and
//! the request's trace id. A per-request bound keeps a chatty or hostile
//! droplet from flooding the host: past it, lines are dropped and counted,
//! and one warning at the end of the call says how many.

use std::sync::{Arc, Mutex};

use wasmtime::component::{HasSelf, Linker};

use super::call_context::CallContext;
use super::capability::{Capability, StoreData};
use super::recording::Tape;
use super::recording::entry::LogLine;
use crate::bindings::fp::droplet::log::{self as wit, Host, Level};
use crate::droplets::manifest::{Manifest, ManifestError};

/// Most lines one request may log.
pub const MAX_LINES_PER_CALL: u32 = 256;
/// Most message bytes one request may log.
pub const MAX_BYTES_PER_CALL: usize = 64 * 1024;
/// A printed line longer than this is split.
pub const MAX_LINE_BYTES: usize = 8 * 1024;
/// A field key or value longer than this is truncated (and counted).
const MAX_FIELD_BYTES: usize = 1024;
/// How much of the end of stderr is kept to explain a trap.
const STDERR_TAIL_BYTES: usize = 2048;

/// The log capability: it has no host-wide state; the host's own log is
/// where its lines go.
#[derive(Debug, Default)]
pub struct LogCapability;

impl Capability for LogCapability {
    const GRANT: Option<&'static str> = Some("log");
    const INTERFACES: &'static [&'static str] = &["fp:droplet/log"];
    type Grant = ();
    type Access = Arc<GuestLog>;

    fn link<T: StoreData>(
        linker: &mut Linker<T>,
        access: fn(&mut T) -> &mut Arc<GuestLog>,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, HasSelf<Arc<GuestLog>>>(linker, access)
    }

    fn grant(&self, _manifest: &Manifest) -> Result<(), ManifestError> {
        Ok(())
    }

    /// A fresh log for one call, tagged with its droplet, version and
    /// trace id. Stdout and stderr go to it too, granted or not.
    fn for_call(&self, _grant: &(), call: &CallContext<'_>) -> Arc<GuestLog> {
        let log = GuestLog::new(
            Arc::clone(call.droplet),
            Arc::clone(call.version),
            Arc::clone(call.trace_id),
        );
        Arc::new(match &call.tape {
            Some(tape) => log.with_tape(tape.clone()),
            None => log,
        })
    }
}

/// Where one call's guest log lines go.
pub struct GuestLog {
    droplet: Arc<str>,
    version: Arc<str>,
    trace_id: Arc<str>,
    /// Where the call's lines are recorded too, when it is recorded.
    tape: Option<Tape>,
    /// Budget and counters; a `std` mutex because it is held only for a few
    /// instructions and never across an await.
    state: Mutex<LogState>,
}

#[derive(Default)]
struct LogState {
    lines: u32,
    /// Every byte logged so far: messages, field keys and values.
    bytes: usize,
    dropped: u32,
    /// Field keys or values cut to [`MAX_FIELD_BYTES`].
    truncated: u32,
    /// The last bytes the guest wrote to stderr, whatever the budget: a Rust
    /// panic message lands there just before the trap it explains.
    stderr_tail: String,
}

/// Which stream a captured line came from.
#[derive(Clone, Copy)]
pub enum Source {
    /// The `log` import.
    Log,
    /// The guest's stdout.
    Stdout,
    /// The guest's stderr.
    Stderr,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Log => "log",
            Source::Stdout => "stdout",
            Source::Stderr => "stderr",
        }
    }
}

macro_rules! guest_event {
    ($level:expr, $log:expr, $source:expr, $fields:expr, $message:expr) => {
        tracing::event!(
            target: "droplet::guest",
            $level,
            droplet = %$log.droplet,
            version = %$log.version,
            trace_id = %$log.trace_id,
            source = $source.as_str(),
            fields = $fields,
            "{}",
            $message
        )
    };
}

/// A level's name in the WIT (`info`).
pub fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

impl GuestLog {
    /// A log for one call of `droplet` at `version`, for request `trace_id`.
    pub fn new(droplet: Arc<str>, version: Arc<str>, trace_id: Arc<str>) -> Self {
        Self {
            droplet,
            version,
            trace_id,
            tape: None,
            state: Mutex::new(LogState::default()),
        }
    }

    /// The same log, its lines kept on `tape` too.
    pub fn with_tape(mut self, tape: Tape) -> Self {
        self.tape = Some(tape);
        self
    }

    /// Logs one line if the call's budget admits all of it: the message and
    /// the fields' JSON count alike.
    pub fn emit(&self, level: Level, source: Source, message: &str, fields: Option<&str>) {
        let size = message.len() + fields.map_or(0, str::len);
        let admitted = match self.state.lock() {
            Ok(mut state) => {
                if state.lines < MAX_LINES_PER_CALL && state.bytes + size <= MAX_BYTES_PER_CALL {
                    state.lines += 1;
                    state.bytes += size;
                    true
                } else {
                    state.dropped += 1;
                    false
                }
            }
            Err(_) => false,
        };
        if !admitted {
            return;
        }
        if let Some(tape) = &self.tape {
            tape.log(LogLine {
                level: level_name(level).to_string(),
                source: source.as_str().to_string(),
                message: message.to_string(),
                fields: fields.map(str::to_string),
            });
        }
        match level {
            Level::Trace => guest_event!(tracing::Level::TRACE, self, source, fields, message),
            Level::Debug => guest_event!(tracing::Level::DEBUG, self, source, fields, message),
            Level::Info => guest_event!(tracing::Level::INFO, self, source, fields, message),
            Level::Warn => guest_event!(tracing::Level::WARN, self, source, fields, message),
            Level::Error => guest_event!(tracing::Level::ERROR, self, source, fields, message),
        }
    }

    pub fn remember_stderr(&self, text: &str) {
        if let Ok(mut state) = self.state.lock() {
            state.stderr_tail.push_str(text);
            if state.stderr_tail.len() > STDERR_TAIL_BYTES {
                let mut cut = state.stderr_tail.len() - STDERR_TAIL_BYTES;
                while !state.stderr_tail.is_char_boundary(cut) {
                    cut += 1;
                }
                state.stderr_tail.drain(..cut);
            }
        }
    }

    /// What the guest's last stderr output says about why it stopped: the
    /// panic message of a Rust panic, or the last line it wrote.
    pub fn failure_hint(&self) -> Option<String> {
        let tail = self.state.lock().ok()?.stderr_tail.clone();
        explain_stderr(&tail)
    }

    /// Counts field keys or values that were cut short.
    fn count_truncated(&self, count: u32) {
        if count > 0
            && let Ok(mut state) = self.state.lock()
        {
            state.truncated += count;
        }
    }

    /// Ends the call's log: says how many lines were dropped and how many
    /// fields were truncated, if any.
    pub fn finish(&self) {
        let (dropped, truncated) = self
            .state
            .lock()
            .map(|state| (state.dropped, state.truncated))
            .unwrap_or((0, 0));
        if dropped > 0 || truncated > 0 {
            tracing::warn!(
                target: "droplet::guest",
                droplet = %self.droplet,
                version = %self.version,
                trace_id = %self.trace_id,
                dropped,
                truncated_fields = truncated,
                "droplet log over its limits: at most {MAX_LINES_PER_CALL} lines and {MAX_BYTES_PER_CALL} bytes (messages and fields) per request, {MAX_FIELD_BYTES} bytes per field key or value"
            );
        }
    }
}

/// Picks the useful part of a guest's stderr: for a Rust panic,
/// `panicked at {location}: {message}`; otherwise the last non-empty line.
fn explain_stderr(tail: &str) -> Option<String> {
    let lines: Vec<&str> = tail
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("note: run with `RUST_BACKTRACE"))
        .collect();
    if let Some(at) = lines.iter().rposition(|line| line.contains("panicked at ")) {
        let header = lines[at];
        let location = header
            .split_once("panicked at ")
            .map(|(_, location)| location.trim_end_matches(':'))
            .unwrap_or(header);
        let message = lines[at + 1..].join(" ");
        return Some(if message.is_empty() {
            format!("panicked at {location}")
        } else {
            format!("panicked at {location}: {message}")
        });
    }
    lines.last().map(|line| line.to_string())
}

impl Host for Arc<GuestLog> {
    async fn log(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        self.log_import(level, &message, fields);
    }
}

impl GuestLog {
    /// One line through the `log` import: its fields as a JSON object,
    /// each key and value cut to [`MAX_FIELD_BYTES`] (and counted).
    pub fn log_import(&self, level: Level, message: &str, fields: Vec<(String, String)>) {
        let mut truncated = 0;
        let fields = (!fields.is_empty()).then(|| {
            let object: serde_json::Map<String, serde_json::Value> = fields
                .into_iter()
                .map(|(key, value)| {
                    let key = truncate(key, &mut truncated);
                    let value = truncate(value, &mut truncated);
                    (key, serde_json::Value::String(value))
                })
                .collect();
            serde_json::Value::Object(object).to_string()
        });
        self.count_truncated(truncated);
        self.emit(level, Source::Log, message, fields.as_deref());
    }
}

/// `text` cut to [`MAX_FIELD_BYTES`] (on a character boundary), counting
/// the cut in `truncated`.
fn truncate(mut text: String, truncated: &mut u32) -> String {
    if text.len() > MAX_FIELD_BYTES {
        let mut cut = MAX_FIELD_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
        *truncated += 1;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_output_is_explained() {
        let tail = "\nthread '<unnamed>' panicked at examples/panic/src/lib.rs:7:5:\nboom at /x\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            explain_stderr(tail).as_deref(),
            Some("panicked at examples/panic/src/lib.rs:7:5: boom at /x")
        );
    }

    #[test]
    fn other_output_gives_its_last_line() {
        assert_eq!(
            explain_stderr("memory allocation of 1048576 bytes failed\n").as_deref(),
            Some("memory allocation of 1048576 bytes failed")
        );
        assert_eq!(explain_stderr(""), None);
    }

    #[test]
    fn fields_count_toward_the_budget_and_are_truncated() {
        let log = GuestLog::new("d".into(), "v".into(), "t".into());
        let huge = "x".repeat(1 << 20);
        let mut truncated = 0;
        let cut = truncate(huge, &mut truncated);
        assert_eq!(truncated, 1);
        assert!(cut.len() <= MAX_FIELD_BYTES + '…'.len_utf8());
        // A line whose fields alone are over the budget is dropped.
        let fields = format!("{{\"k\":\"{}\"}}", "y".repeat(MAX_BYTES_PER_CALL));
        log.emit(Level::Info, Source::Log, "m", Some(&fields));
        let state = log.state.lock().unwrap();
        assert_eq!((state.lines, state.dropped), (0, 1));
    }

    #[test]
    fn log_budget_drops_and_counts() {
        let log = GuestLog::new("d".into(), "v".into(), "t".into());
        for _ in 0..MAX_LINES_PER_CALL + 5 {
            log.emit(Level::Info, Source::Log, "x", None);
        }
        let state = log.state.lock().unwrap();
        assert_eq!(state.lines, MAX_LINES_PER_CALL);
        assert_eq!(state.dropped, 5);
    }
}
