//! The log's JSON lines, formatted straight into the line buffer.
//!
//! The line is the one tracing-subscriber's JSON formatter writes with
//! flattened fields and no span context — `timestamp` (RFC 3339, UTC, to the
//! microsecond), `level`, the event's fields in the order they were given
//! (`message` first), `target` — byte for byte (a test compares them). What
//! differs is the way there: that formatter goes through serde's map
//! serializer, an adaptor that checks every written chunk is UTF-8, and a
//! fresh `String` for the timestamp; at one access line per request that was
//! a measurable part of a hello request. Here each value is escaped and
//! appended as it is visited.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// One JSON object per event, one event per line.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
    N: for<'writer> FormatFields<'writer> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Events bridged from the `log` crate carry their real level and
        // target in fields; the line shows those (the fields stay too, as
        // tracing-subscriber's formatter leaves them).
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let timestamp = humantime::format_rfc3339_micros(std::time::SystemTime::now());
        write!(writer, "{{\"timestamp\":\"{timestamp}\",\"level\":\"")?;
        writer.write_str(level_name(meta.level()))?;
        writer.write_char('"')?;
        let mut fields = FieldWriter {
            writer: &mut writer,
            result: Ok(()),
            raw_fields: meta.target() == GUEST_TARGET,
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str(",\"target\":")?;
        write_str(&mut writer, meta.target())?;
        writer.write_str("}\n")
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

/// Appends each visited field as `,"name":value`. The first error stops
/// the rest (the line is then dropped by the caller, as with serde's).
struct FieldWriter<'a, 'w> {
    writer: &'a mut Writer<'w>,
    result: fmt::Result,
    /// A droplet's line: its `fields` is a JSON object the host wrote
    /// (serde_json, from the guest's pairs), written as an object.
    raw_fields: bool,
}

/// The target of droplets' own log lines.
pub const GUEST_TARGET: &str = "droplet::guest";

impl FieldWriter<'_, '_> {
    /// Writes `,"name":` then the value `write` produces.
    fn entry(&mut self, field: &Field, write: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self
                .writer
                .write_char(',')
                .and_then(|()| write_str(self.writer, field.name()))
                .and_then(|()| self.writer.write_char(':'))
                .and_then(|()| write(self.writer));
        }
    }
}

impl Visit for FieldWriter<'_, '_> {
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, |writer| {
            writer.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, |writer| {
            writer.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, |writer| {
            writer.write_str(itoa::Buffer::new().format(value))
        });
    }

    /// As serde_json writes a float: the shortest text that reads back as
    /// the same value, always with a `.` or an exponent; not a number is
    /// `null`.
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.entry(field, |writer| {
            if value.is_finite() {
                writer.write_str(zmij::Buffer::new().format_finite(value))
            } else {
                writer.write_str("null")
            }
        });
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if self.raw_fields && field.name() == "fields" && value.starts_with('{') {
            self.entry(field, |writer| writer.write_str(value));
            return;
        }
        self.entry(field, |writer| write_str(writer, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.entry(field, |writer| {
            writer.write_char('"')?;
            write!(Escaping(&mut *writer), "{value:?}")?;
            writer.write_char('"')
        });
    }
}

/// Writes `text` as a JSON string.
fn write_str(writer: &mut Writer<'_>, text: &str) -> fmt::Result {
    writer.write_char('"')?;
    Escaping(&mut *writer).write_str(text)?;
    writer.write_char('"')
}

/// Escapes what it is given for the inside of a JSON string, as serde_json
/// does: `"` and `\`, the short forms for the usual control characters,
/// `\u00XX` for the others; everything else as is.
struct Escaping<'a, 'w>(&'a mut Writer<'w>);

impl Write for Escaping<'_, '_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let bytes = text.as_bytes();
        let mut clean_from = 0;
        for (at, &byte) in bytes.iter().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0x00..=0x1f => "",
                _ => continue,
            };
            // Escaped bytes are ASCII, so `at` is a char boundary.
            self.0.write_str(&text[clean_from..at])?;
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            clean_from = at + 1;
        }
        self.0.write_str(&text[clean_from..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::layer::SubscriberExt;

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        /// The lines written, each without its timestamp's value.
        fn lines(&self) -> Vec<String> {
            let bytes = self.0.lock().map(|bytes| bytes.clone()).unwrap_or_default();
            String::from_utf8_lossy(&bytes)
                .lines()
                .map(|line| {
                    let value = line.find("\"timestamp\":\"").map(|at| at + 13);
                    match value.and_then(|at| line[at..].find('"').map(|len| (at, at + len))) {
                        Some((start, end)) => format!("{}{}", &line[..start], &line[end..]),
                        None => line.to_string(),
                    }
                })
                .collect()
        }
    }

    /// Every kind of field, text that needs escaping, a message with
    /// arguments, and a record bridged from the `log` crate.
    fn events() {
        let error = io::Error::other("disk \"full\"");
        tracing::info!(
            target: "droplet::access",
            trace_id = "0af7651916cd43dd8448eb211c80319c",
            droplet = Some("hello"),
            status_code = 200_u16,
            duration_ms = 0.386,
            whole = 30.0,
            tiny = 1e-7,
            huge = 1.5e300,
            nan = f64::NAN,
            negative = -42_i64,
            big = u64::MAX,
            yes = true,
            absent = None::<&str>,
            "request"
        );
        tracing::warn!(
            quote = "a \"b\" \\ c\nd\re\tf\u{8}\u{c}\u{1}\u{1f} é ✓ \u{7f}",
            debug = ?vec!["x\"y"],
            display = %"shown\twith tab",
            error = &error as &dyn std::error::Error,
            "panicked at {}:{}",
            "src/lib.rs",
            7
        );
        tracing::error!("");
        tracing::debug!(target: "custom", n = 1, "lowered");
        tracing::trace!(big = 1_u128 << 100, small = -1_i128);
        let record = log::Record::builder()
            .args(format_args!("from the log crate"))
            .level(log::Level::Warn)
            .target("some::dependency")
            .module_path_static(Some("some::dependency::module"))
            .file_static(Some("src/module.rs"))
            .line(Some(12))
            .build();
        tracing_log::format_trace(&record).ok();
    }

    /// The lines `events` gives through tracing-subscriber's JSON layer, with
    /// its own formatter or with ours, inside a span (which the line must
    /// not show).
    fn capture(ours: bool) -> Vec<String> {
        let out = Captured::default();
        let writer = out.clone();
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(move || writer.clone());
        let run = || {
            let span = tracing::info_span!("outer", field = 1);
            let _inside = span.enter();
            events();
        };
        if ours {
            let layer = layer
                .event_format(JsonLines)
                .with_filter(LevelFilter::TRACE);
            tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), run);
        } else {
            let layer = layer.with_filter(LevelFilter::TRACE);
            tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), run);
        }
        out.lines()
    }

    #[test]
    fn lines_match_tracing_subscribers_json_byte_for_byte() {
        let ours = capture(false);
        let theirs = capture(true);
        assert_eq!(ours.len(), 6, "{ours:#?}");
        assert_eq!(ours, theirs);
    }

    #[test]
    fn every_line_is_json_with_a_timestamp_to_the_microsecond() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .event_format(JsonLines)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, events);
        let bytes = out.0.lock().map(|bytes| bytes.clone()).unwrap_or_default();
        let text = String::from_utf8(bytes).unwrap();
        for line in text.lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            let stamp = value["timestamp"].as_str().unwrap();
            assert_eq!(stamp.len(), "2026-11-27T05:11:39.256015Z".len(), "{stamp}");
            assert!(humantime::parse_rfc3339(stamp).is_ok(), "{stamp}");
        }
        assert!(text.contains("\"nan\":null"), "{text}");
    }
}
