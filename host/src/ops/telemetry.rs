//! The host's log and traces.
//!
//! - **Log**: JSON lines for machines (the default) or pretty lines for
//!   humans, filtered by `RUST_LOG` (default `info`). JSON lines are
//!   formatted in place ([`crate::ops::json_log`]); lines are written to stdout
//!   in batches by a thread of their own ([`crate::ops::log_writer`]), so a
//!   request neither waits on a `write` syscall for its access line nor
//!   wakes a thread per line. A full buffer holds logging threads back
//!   rather than dropping lines.
//! - **Tail**: the lines naming a droplet are also kept in memory for the
//!   dashboard ([`crate::ops::log_tail`]).
//! - **Traces**: with `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, spans of target
//!   [`TRACE_TARGET`] are exported over OTLP/HTTP (`http/protobuf`, or
//!   `http/json` by `OTEL_EXPORTER_OTLP_PROTOCOL`) in batches from a thread
//!   of their own. Unset, no layer wants those spans: each `info_span!` of
//!   that target is one cached "disabled" check.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt, LevelFilter, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::ops::json_log::JsonLines;
use crate::ops::log_tail::{LogTail, TailLimits, TeeWriter};
use crate::ops::log_writer::{LogWriter, LogWriterGuard};
use crate::ops::tail_layer::TailLayer;

/// The target of the spans exported as OpenTelemetry traces (and never
/// written to the log).
pub const TRACE_TARGET: &str = "droplet::trace";

/// Whether traces are exported: set once by [`init`].
static TRACING: AtomicBool = AtomicBool::new(false);

/// Whether OpenTelemetry traces are exported, so a caller can skip work
/// (parsing `traceparent`, recording attributes) that only spans need.
pub fn traces_on() -> bool {
    TRACING.load(Ordering::Relaxed)
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, fields at the top level.
    Json,
    /// Human-readable lines.
    Pretty,
}

/// The installed log and traces. Keep it alive until exit: dropping it
/// exports the spans still queued and flushes the lines still queued.
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    _log: LogWriterGuard,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(tracer) = self.tracer.take()
            && let Err(err) = tracer.shutdown()
        {
            tracing::warn!(error = %err, "the last traces could not be exported");
        }
    }
}

/// An environment variable's value, unless unset or blank.
fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

/// Why the log or the trace exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// An OTLP protocol other than the two supported.
    #[error(
        "OTEL_EXPORTER_OTLP_PROTOCOL={0} is not supported: use http/protobuf (the default) or http/json"
    )]
    Protocol(String),
    /// The exporter refused its configuration.
    #[error("cannot build the OTLP trace exporter: {0}")]
    Exporter(String),
    /// The log's writer thread could not start.
    #[error("cannot start the log writer thread: {0}")]
    Writer(std::io::Error),
    /// A global subscriber was already installed.
    #[error("cannot install the log: {0}")]
    Install(String),
}

/// The OTLP trace exporter the standard variables ask for, if any.
fn otlp_tracer() -> Result<Option<SdkTracerProvider>, TelemetryError> {
    let endpoint =
        env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"));
    let disabled = env("OTEL_SDK_DISABLED").is_some_and(|value| value.eq_ignore_ascii_case("true"))
        || env("OTEL_TRACES_EXPORTER").is_some_and(|value| value.eq_ignore_ascii_case("none"));
    if endpoint.is_none() || disabled {
        return Ok(None);
    }
    let protocol = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/protobuf".to_string());
    let protocol = match protocol.as_str() {
        "http/protobuf" => Protocol::HttpBinary,
        "http/json" => Protocol::HttpJson,
        other => return Err(TelemetryError::Protocol(other.to_string())),
    };
    // The exporter reads the endpoint, headers and timeout variables itself.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()
        .map_err(|err| TelemetryError::Exporter(err.to_string()))?;
    let service = env("OTEL_SERVICE_NAME").unwrap_or_else(|| "droplet".to_string());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build();
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build(),
    ))
}

/// Installs the global subscriber: the log on stdout, the droplet-line
/// tail kept within `tail`, and the OTLP exporter when the standard
/// variables ask for one.
pub fn init(format: LogFormat, tail: TailLimits) -> Result<Telemetry, TelemetryError> {
    let (writer, guard) = LogWriter::start(std::io::stdout()).map_err(TelemetryError::Writer)?;
    let tail = (tail.lines > 0).then(|| LogTail::new(tail).install());
    let tracer = otlp_tracer()?;
    TRACING.store(tracer.is_some(), Ordering::Relaxed);
    let directives = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    subscriber(format, directives.as_deref(), writer, tail, tracer.as_ref())
        .try_init()
        .map_err(|err| TelemetryError::Install(err.to_string()))?;
    log_panics();
    Ok(Telemetry {
        tracer,
        _log: guard,
    })
}

/// The log filter without `RUST_LOG`: `info`, but PostgreSQL's notices
/// (`schema already exists, skipping`, which tokio-postgres logs at info)
/// only from warnings up.
pub const DEFAULT_DIRECTIVES: &str = "info,tokio_postgres=warn";

/// The subscriber [`init`] installs: the log written to `writer`, filtered
/// by `directives` (`RUST_LOG`'s syntax; [`DEFAULT_DIRECTIVES`] when absent
/// or invalid), the
/// tail (if any) and the trace exporter (if any).
///
/// Every layer has its own filter, and a layer that is not wanted is left
/// out rather than added as `None`: an absent `Option` layer counts as
/// interested in everything, which would make every disabled span (the
/// request's and its steps', with traces off) a live one in the registry.
fn subscriber<W>(
    format: LogFormat,
    directives: Option<&str>,
    writer: W,
    tail: Option<Arc<LogTail>>,
    tracer: Option<&SdkTracerProvider>,
) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    let filter = || {
        directives
            .and_then(|directives| EnvFilter::try_new(directives).ok())
            .unwrap_or_else(|| EnvFilter::new(DEFAULT_DIRECTIVES))
    };
    // Every filter says how verbose it can be: combined with `and`, a filter
    // without a hint leaves the whole subscriber without one, and then every
    // `log` record of every dependency (wasmtime, hyper, sled, at debug and
    // trace) would be converted and filtered instead of skipped at its call.
    let not_a_trace = || {
        filter_fn(|meta| !meta.target().starts_with(TRACE_TARGET))
            .with_max_level_hint(LevelFilter::TRACE)
    };
    let log_filter = || filter().and(not_a_trace());
    let log = tracing_subscriber::fmt::layer();
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::with_capacity(3);
    // JSON lines go to the tail as written; pretty ones through a layer.
    match format {
        LogFormat::Json => layers.push(
            log.event_format(JsonLines)
                .with_writer(TeeWriter::new(writer, tail))
                .with_filter(log_filter())
                .boxed(),
        ),
        LogFormat::Pretty => {
            layers.push(
                log.with_ansi(false)
                    .with_writer(writer)
                    .with_filter(log_filter())
                    .boxed(),
            );
            if let Some(tail) = tail {
                layers.push(
                    TailLayer::new(tail)
                        .with_filter(filter().and(
                            filter_fn(TailLayer::wants).with_max_level_hint(LevelFilter::TRACE),
                        ))
                        .boxed(),
                );
            }
        }
    }
    if let Some(provider) = tracer {
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("droplet"))
                .with_location(false)
                .with_threads(false)
                .with_filter(
                    filter_fn(|meta| meta.target() == TRACE_TARGET)
                        .with_max_level_hint(LevelFilter::INFO),
                )
                .boxed(),
        );
    }
    Registry::default().with(layers)
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

/// The span of one request: the root of its trace (or a child of the
/// caller's `traceparent`). Disabled, at no cost, when traces are off.
pub fn request_span(method: &http::Method, path: &str) -> tracing::Span {
    tracing::info_span!(
        target: TRACE_TARGET,
        "request",
        otel.kind = "server",
        otel.name = %format_args!("{method} {}", span_route(path)),
        http.request.method = %method,
        url.path = %path,
        droplet = tracing::field::Empty,
        droplet.version = tracing::field::Empty,
        droplet.trace_id = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

/// A request's span name keeps only the path's first segment (the droplet
/// or the host endpoint): names must not grow with every URL.
fn span_route(path: &str) -> String {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    format!("/{first}")
}

/// The request's trace id, tying `span` to it: with a valid `traceparent`
/// the span continues that trace; without, the span's own new trace id is
/// the request's (so `x-trace-id` finds the trace), unless the request
/// brings an `x-request-id`, which stays its id in the log and on the span.
pub fn adopt_trace(span: &tracing::Span, headers: &http::HeaderMap) -> String {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let given = crate::ops::trace_id::given_trace_id(headers);
    if !traces_on() || span.is_disabled() {
        return given.unwrap_or_else(crate::ops::trace_id::new_trace_id);
    }
    let parent = opentelemetry_sdk::propagation::TraceContextPropagator::new()
        .extract(&HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    let id = given
        .unwrap_or_else(|| format!("{:032x}", span.context().span().span_context().trace_id()));
    span.record("droplet.trace_id", id.as_str());
    id
}

/// Reads `traceparent`/`tracestate` from request headers.
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// A child span of the current one (a step of a request: `queue`,
/// `instantiate`, `guest`, a kv operation, an outbound request).
#[macro_export]
macro_rules! step_span {
    ($name:literal $(, $($fields:tt)*)?) => {
        tracing::info_span!(target: $crate::ops::telemetry::TRACE_TARGET, $name $(, $($fields)*)?)
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::log_tail::TailLimits;

    /// With traces off, the request's span and its steps are disabled
    /// (nothing is allocated for them), in both log formats and with or
    /// without the tail, while the log still takes the host's events (the
    /// filter is given, so a user's `RUST_LOG` cannot change the result).
    #[test]
    fn spans_cost_nothing_with_traces_off() {
        for format in [LogFormat::Json, LogFormat::Pretty] {
            for tail_lines in [0, 10] {
                let tail = (tail_lines > 0).then(|| {
                    Arc::new(LogTail::new(TailLimits {
                        lines: tail_lines,
                        bytes: 1 << 16,
                    }))
                });
                let subscriber = subscriber(format, None, std::io::sink, tail, None);
                tracing::subscriber::with_default(subscriber, || {
                    let request = request_span(&http::Method::GET, "/hello/");
                    assert!(request.is_disabled(), "{format:?}, tail {tail_lines}");
                    let step = crate::step_span!("guest");
                    assert!(step.is_disabled(), "{format:?}, tail {tail_lines}");
                    assert!(tracing::enabled!(target: "droplet::access", tracing::Level::INFO));
                });
            }
        }
    }
}
