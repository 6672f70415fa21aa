//! What every layer may use to be operated: the log (JSON lines, its
//! writer thread, the dashboard's tail), metrics, OpenTelemetry, the JSON
//! client, the one shutdown, and the clean environment a tool starts a
//! host in. Uses no other layer.

pub mod child_env;
pub mod json_client;
pub mod json_log;
pub mod log_tail;
pub mod log_writer;
pub mod metrics;
pub mod shutdown;
pub mod tail_layer;
pub mod telemetry;
pub mod trace_id;
