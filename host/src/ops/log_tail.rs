//! The recent log lines about droplets, kept in memory for the dashboard's
//! live tail (`GET /_admin/droplets/{name}/logs`).
//!
//! Every log line that names a `droplet` (guest log lines, stdout/stderr,
//! access lines, failed calls) is kept as written: with the JSON log (the
//! default) the writer hands each formatted line to [`LogTail::offer_json`]
//! ([`TeeWriter`]), which finds the droplet and trace id in the text — one
//! copy, no re-formatting; with the pretty log a `tracing` layer
//! ([`TailLayer`]) records the same fields as JSON. Lines are parsed back
//! into JSON only when read. One ring for the whole host, bounded in lines
//! and in bytes: the oldest lines go first, whichever droplet wrote them.
//! Each line gets a sequence number, so a reader asks for what came after
//! the last line it saw and learns when it fell behind.

use std::collections::VecDeque;
use std::io::Write;
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Map, Value};
use tracing_subscriber::fmt::MakeWriter;

/// Longest text kept of one field; longer text is cut and marked.
pub(crate) const MAX_FIELD_CHARS: usize = 1024;

/// How much the tail keeps.
#[derive(Debug, Clone, Copy)]
pub struct TailLimits {
    /// Lines kept across every droplet; 0 turns the tail off.
    pub lines: usize,
    /// Bytes of line text kept across every droplet.
    pub bytes: usize,
}

/// One kept line: its JSON text, and where in it are what readers filter
/// on (one allocation per line).
#[derive(Debug, Clone)]
struct Line {
    seq: u64,
    text: Box<str>,
    droplet: Range<usize>,
    trace_id: Option<Range<usize>>,
}

impl Line {
    fn droplet(&self) -> &str {
        self.text.get(self.droplet.clone()).unwrap_or_default()
    }

    fn trace_id(&self) -> Option<&str> {
        self.trace_id.clone().and_then(|range| self.text.get(range))
    }
}

#[derive(Default)]
struct Ring {
    lines: VecDeque<Line>,
    bytes: usize,
    next_seq: u64,
}

/// The host's tail of droplet log lines.
pub struct LogTail {
    limits: TailLimits,
    ring: Mutex<Ring>,
}

/// What a reader gets: the matching lines after its cursor.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TailPage {
    /// Matching lines, oldest first: each the fields of its JSON log line
    /// (`timestamp`, `level`, `target`, `message`, `droplet`, `trace_id`, ...).
    #[schema(value_type = Vec<Object>)]
    pub lines: Vec<Map<String, Value>>,
    /// Pass as `after` to get only newer lines.
    pub next: u64,
    /// Lines between `after` and the oldest kept line were dropped (the
    /// reader fell behind the ring).
    pub missed: bool,
}

static TAIL: OnceLock<Arc<LogTail>> = OnceLock::new();

/// The host's tail, once [`crate::ops::telemetry::init`] installed it.
pub fn global() -> Option<&'static Arc<LogTail>> {
    TAIL.get()
}

impl LogTail {
    /// An empty tail keeping at most `limits`.
    pub fn new(limits: TailLimits) -> Self {
        Self {
            limits,
            ring: Mutex::new(Ring::default()),
        }
    }

    /// Makes this the host's tail.
    pub fn install(self) -> Arc<LogTail> {
        let tail = Arc::new(self);
        let _ = TAIL.set(Arc::clone(&tail));
        tail
    }

    /// Keeps `line`, one line of the JSON log, if it names a droplet.
    pub fn offer_json(&self, line: &[u8]) {
        if let Ok(text) = std::str::from_utf8(line) {
            self.push(text.trim_end());
        }
    }

    /// Keeps `text`, a JSON object, if it names a droplet.
    pub(crate) fn push(&self, text: &str) {
        let Some(droplet) = json_text_field(text, "\"droplet\":\"") else {
            return;
        };
        let trace_id = json_text_field(text, "\"trace_id\":\"");
        // Copied before the lock is taken.
        let text = text.into();
        let Ok(mut ring) = self.ring.lock() else {
            return;
        };
        let line = Line {
            seq: ring.next_seq,
            text,
            droplet,
            trace_id,
        };
        ring.next_seq += 1;
        ring.bytes += line.text.len();
        ring.lines.push_back(line);
        while ring.lines.len() > self.limits.lines || ring.bytes > self.limits.bytes {
            match ring.lines.pop_front() {
                Some(old) => ring.bytes -= old.text.len(),
                None => break,
            }
        }
    }

    /// `droplet`'s lines after sequence number `after` (all kept ones when
    /// `None`), only those of `trace_id` when given, at most `limit`.
    pub fn read(
        &self,
        droplet: &str,
        after: Option<u64>,
        trace_id: Option<&str>,
        limit: usize,
    ) -> TailPage {
        let Ok(ring) = self.ring.lock() else {
            return TailPage {
                lines: Vec::new(),
                next: after.unwrap_or(0),
                missed: false,
            };
        };
        let oldest = ring.lines.front().map_or(ring.next_seq, |line| line.seq);
        let start = after.map_or(0, |after| after + 1);
        let matching = ring
            .lines
            .iter()
            .filter(|line| line.seq >= start && line.droplet() == droplet)
            .filter(|line| trace_id.is_none_or(|id| line.trace_id() == Some(id)));
        // Parsed back into JSON here, on the (rare) read, not when logged.
        // The newest `limit` of them: a reader that opens the tail wants
        // the latest lines, not the oldest.
        let mut lines: Vec<&Line> = matching.collect();
        let skip = lines.len().saturating_sub(limit);
        lines.drain(..skip);
        TailPage {
            next: ring.next_seq.saturating_sub(1).max(after.unwrap_or(0)),
            missed: after.is_some() && start < oldest,
            lines: lines
                .into_iter()
                .filter_map(|line| serde_json::from_str(&line.text).ok())
                .collect(),
        }
    }
}

/// Where in `line` the text of the top-level field whose `"key":"` is
/// `pattern` is, as the JSON formatter writes it. A `"` inside any string
/// value is escaped (`\"`), so the pattern only matches a real key; the
/// values looked for (droplet names, trace ids) never contain escapes.
pub(crate) fn json_text_field(line: &str, pattern: &str) -> Option<Range<usize>> {
    let start = line.find(pattern)? + pattern.len();
    let end = start + line[start..].find('"')?;
    Some(start..end)
}

/// A `MakeWriter` for the JSON log: writes each line to `inner` and offers
/// it to the tail.
#[derive(Clone)]
pub struct TeeWriter<W> {
    inner: W,
    tail: Option<Arc<LogTail>>,
}

impl<W> TeeWriter<W> {
    /// Lines written to `inner` and, when given, offered to `tail`.
    pub fn new(inner: W, tail: Option<Arc<LogTail>>) -> Self {
        Self { inner, tail }
    }
}

/// One line's writer of a [`TeeWriter`].
pub struct Tee<'a, W> {
    inner: W,
    tail: Option<&'a LogTail>,
}

impl<'a, W: MakeWriter<'a>> MakeWriter<'a> for TeeWriter<W> {
    type Writer = Tee<'a, W::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        Tee {
            inner: self.inner.make_writer(),
            tail: self.tail.as_deref(),
        }
    }
}

impl<W: Write> Write for Tee<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.inner.write(bytes)
    }

    /// The formatter writes each line with one `write_all`: the line.
    fn write_all(&mut self, line: &[u8]) -> std::io::Result<()> {
        if let Some(tail) = self.tail {
            tail.offer_json(line);
        }
        self.inner.write_all(line)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(tail: &LogTail, droplet: &str, trace: &str, message: &str) {
        let text = serde_json::json!({
            "message": message, "droplet": droplet, "trace_id": trace,
        });
        tail.offer_json(format!("{text}\n").as_bytes());
    }

    #[test]
    fn only_real_droplet_fields_are_found() {
        let tail = LogTail::new(TailLimits {
            lines: 100,
            bytes: 1 << 20,
        });
        // A message that mentions a droplet field is escaped in the JSON.
        let sneaky = serde_json::json!({ "message": "\"droplet\":\"victim\"" });
        tail.offer_json(sneaky.to_string().as_bytes());
        tail.offer_json(b"{\"message\":\"host line\"}");
        assert!(tail.read("victim", None, None, 10).lines.is_empty());
        let real = r#"{"timestamp":"t","level":"INFO","message":"m \"droplet\":\"victim\"","droplet":"mine","trace_id":"abc"}"#;
        tail.offer_json(real.as_bytes());
        assert!(tail.read("victim", None, None, 10).lines.is_empty());
        let page = tail.read("mine", None, Some("abc"), 10);
        assert_eq!(page.lines.len(), 1);
        assert_eq!(page.lines[0]["level"], "INFO");
    }

    #[test]
    fn reads_by_droplet_trace_and_cursor() {
        let tail = LogTail::new(TailLimits {
            lines: 100,
            bytes: 1 << 20,
        });
        line(&tail, "a", "t1", "one");
        line(&tail, "b", "t1", "other");
        line(&tail, "a", "t2", "two");
        let page = tail.read("a", None, None, 10);
        assert_eq!(page.lines.len(), 2);
        assert_eq!(page.next, 2);
        assert!(!page.missed);
        assert_eq!(tail.read("a", None, Some("t2"), 10).lines.len(), 1);
        line(&tail, "a", "t3", "three");
        let newer = tail.read("a", Some(page.next), None, 10);
        assert_eq!(newer.lines.len(), 1);
        assert_eq!(newer.lines[0]["message"], "three");
        // The newest lines win when there are more than asked for.
        assert_eq!(tail.read("a", None, None, 1).lines[0]["message"], "three");
    }

    #[test]
    fn keeps_its_bounds_and_says_when_a_reader_fell_behind() {
        let tail = LogTail::new(TailLimits {
            lines: 10,
            bytes: 1 << 20,
        });
        for n in 0..25 {
            line(&tail, "a", "t", &format!("line {n}"));
        }
        let page = tail.read("a", Some(3), None, 100);
        assert_eq!(page.lines.len(), 10);
        assert!(page.missed);
        let small = LogTail::new(TailLimits {
            lines: 1000,
            bytes: 200,
        });
        for _ in 0..50 {
            line(&small, "a", "t", &"x".repeat(40));
        }
        let kept = small
            .ring
            .lock()
            .map(|ring| ring.bytes)
            .unwrap_or(usize::MAX);
        assert!(kept <= 200, "{kept}");
    }
}
