//! The recent log lines about droplets, kept in memory for the dashboard's
//! live tail (`GET /_admin/droplets/{name}/logs`).
//!
//! A `tracing` layer beside the JSON output keeps every event that names a
//! `droplet` (guest log lines, stdout/stderr, access lines, failed calls) as
//! the same fields the JSON line has. One ring for the whole host, bounded
//! in lines and in bytes: the oldest lines go first, whichever droplet wrote
//! them. Each line gets a sequence number, so a reader asks for what came
//! after the last line it saw and learns when it fell behind.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Longest text kept of one field; longer text is cut and marked.
const MAX_FIELD_CHARS: usize = 1024;

/// How much the tail keeps.
#[derive(Debug, Clone, Copy)]
pub struct TailLimits {
    /// Lines kept across every droplet; 0 turns the tail off.
    pub lines: usize,
    /// Bytes of line text kept across every droplet.
    pub bytes: usize,
}

/// One kept line.
#[derive(Debug, Clone)]
struct Line {
    seq: u64,
    droplet: Arc<str>,
    trace_id: Option<String>,
    fields: Map<String, Value>,
    bytes: usize,
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

/// The host's tail, once [`crate::telemetry::init`] installed it.
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

    /// Makes this the host's tail and returns the layer that fills it.
    pub fn install(self) -> TailLayer {
        let tail = Arc::new(self);
        let _ = TAIL.set(Arc::clone(&tail));
        TailLayer(tail)
    }

    fn push(&self, droplet: Arc<str>, trace_id: Option<String>, fields: Map<String, Value>) {
        let bytes = fields
            .iter()
            .map(|(key, value)| key.len() + value_bytes(value) + 4)
            .sum::<usize>();
        let Ok(mut ring) = self.ring.lock() else {
            return;
        };
        let seq = ring.next_seq;
        ring.next_seq += 1;
        ring.bytes += bytes;
        ring.lines.push_back(Line {
            seq,
            droplet,
            trace_id,
            fields,
            bytes,
        });
        while ring.lines.len() > self.limits.lines || ring.bytes > self.limits.bytes {
            match ring.lines.pop_front() {
                Some(old) => ring.bytes -= old.bytes,
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
            .filter(|line| line.seq >= start && &*line.droplet == droplet)
            .filter(|line| trace_id.is_none_or(|id| line.trace_id.as_deref() == Some(id)));
        // The newest `limit` of them: a reader that opens the tail wants
        // the latest lines, not the oldest.
        let mut lines: Vec<&Line> = matching.collect();
        let skip = lines.len().saturating_sub(limit);
        lines.drain(..skip);
        TailPage {
            next: ring.next_seq.saturating_sub(1).max(after.unwrap_or(0)),
            missed: after.is_some() && start < oldest,
            lines: lines.into_iter().map(|line| line.fields.clone()).collect(),
        }
    }
}

fn value_bytes(value: &Value) -> usize {
    match value {
        Value::String(text) => text.len(),
        _ => 8,
    }
}

/// The `tracing` layer that keeps droplet lines in the [`LogTail`].
pub struct TailLayer(Arc<LogTail>);

impl TailLayer {
    /// Whether an event with these fields is kept: it names a droplet.
    pub fn wants(metadata: &tracing::Metadata<'_>) -> bool {
        metadata.is_event() && metadata.fields().field("droplet").is_some()
    }
}

impl<S: Subscriber> Layer<S> for TailLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let mut fields = Fields(Map::new());
        fields.0.insert(
            "timestamp".into(),
            Value::String(
                humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            ),
        );
        fields
            .0
            .insert("level".into(), Value::String(metadata.level().to_string()));
        fields.0.insert(
            "target".into(),
            Value::String(metadata.target().to_string()),
        );
        event.record(&mut fields);
        let Some(droplet) = fields.0.get("droplet").and_then(Value::as_str) else {
            return;
        };
        let droplet: Arc<str> = droplet.into();
        let trace_id = fields
            .0
            .get("trace_id")
            .and_then(Value::as_str)
            .map(str::to_string);
        self.0.push(droplet, trace_id, fields.0);
    }
}

/// Records an event's fields as JSON values, text cut at
/// [`MAX_FIELD_CHARS`].
struct Fields(Map<String, Value>);

impl Fields {
    fn text(&mut self, field: &Field, mut text: String) {
        if text.len() > MAX_FIELD_CHARS {
            let mut cut = MAX_FIELD_CHARS;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        self.0.insert(field.name().to_string(), Value::String(text));
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.text(field, format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, value.to_string());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(tail: &LogTail, droplet: &str, trace: &str, message: &str) {
        let mut fields = Map::new();
        fields.insert("message".into(), message.into());
        tail.push(droplet.into(), Some(trace.to_string()), fields);
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
