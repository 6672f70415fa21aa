//! The tail's `tracing` layer, for the pretty log: every event naming a
//! droplet is formatted as a JSON line and offered to the tail (the JSON
//! log offers its lines through the writer instead).

use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use super::log_tail::{LogTail, MAX_FIELD_CHARS};

/// The `tracing` layer that keeps droplet lines in the [`LogTail`] when the
/// log is not JSON (the pretty format).
pub struct TailLayer(Arc<LogTail>);

impl TailLayer {
    /// A layer filling `tail`.
    pub fn new(tail: Arc<LogTail>) -> Self {
        Self(tail)
    }

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
        if fields.0.get("droplet").is_some_and(Value::is_string) {
            self.0.push(&Value::Object(fields.0).to_string());
        }
    }
}

/// Records an event's fields as JSON values, text cut at
/// [`MAX_FIELD_CHARS`].
pub(crate) struct Fields(Map<String, Value>);

impl Fields {
    pub(crate) fn text(&mut self, field: &Field, mut text: String) {
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
