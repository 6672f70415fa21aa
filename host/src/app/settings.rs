//! [`ServeSettings`]: what `droplet serve` was asked to do, as the CLI's
//! flags and environment made it.

use std::path::PathBuf;
use std::time::Duration;

use crate::capabilities::config::ConfigEnv;
use crate::droplets::recorder::RecordSettings;
use crate::identity::jwt::JwtSettings;
use crate::storage::kv::BackendConfig;
use crate::storage::queues::QueueLimits;

/// What `droplet serve` was asked to do.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// Address to listen on; port 0 picks a free one.
    pub listen: std::net::SocketAddr,
    /// Directory of `{name}.wasm` (+ `{name}.toml`) droplets.
    pub droplets_dir: PathBuf,
    /// Directory for the host's own data.
    pub data_dir: PathBuf,
    /// Directory for compiled code; defaults to `{data_dir}/cache`.
    pub cache_dir: Option<PathBuf>,
    /// With a domain, `Host: {name}.{domain}` routes to droplet `name`.
    pub domain: Option<String>,
    /// How long in-flight requests may take to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Open connections and their idle timeout.
    pub connections: crate::http::connection::ConnectionLimits,
    /// Instances that may run at once across all droplets.
    pub max_instances: u32,
    /// The largest `memory_mb` a droplet may ask for.
    pub max_memory_mb: u64,
    /// Which host environment variables manifests may expand.
    pub config_env: ConfigEnv,
    /// Which kv backend, and its settings.
    pub kv: BackendConfig,
    /// The largest kv value, in bytes.
    pub kv_max_value_bytes: usize,
    /// The kv quota of droplets whose manifest sets none; `None`: unlimited.
    pub kv_default_quota_bytes: Option<u64>,
    /// JWT keys and rules.
    pub jwt: JwtSettings,
    /// Register droplets at start and compile each on its first request.
    pub lazy: bool,
    /// Watch the droplets directory and swap in changed modules.
    pub watch: bool,
    /// Largest body `PUT /_admin/droplets/{name}` accepts.
    pub admin_max_body_bytes: usize,
    /// Longest a request body (droplet or admin) may take to arrive.
    pub body_read_timeout: Duration,
    /// This host's id in a fleet [default: `{hostname}:{port}`].
    pub host_id: Option<String>,
    /// Response bytes the host holds at once, across every call and every
    /// response still being sent.
    pub response_buffer_bytes: usize,
    /// Request-body bytes the host holds at once, across every request
    /// being read or answered.
    pub request_buffer_bytes: usize,
    /// Host memory all running calls together may make the host hold
    /// (resources, strings and buffers on the host's heap).
    pub guest_held_bytes: usize,
    /// Outbound HTTP requests in flight at once across every droplet.
    pub max_outbound_in_flight: usize,
    /// In-process calls one request from outside may cause, all together.
    pub max_internal_calls: u32,
    /// Which requests get an access-log line.
    pub access_log: crate::http::access_log::AccessLogMode,
    /// Bytes of each instance memory wiped in place on drop; `None`: the
    /// runtime's default.
    pub keep_resident_bytes: Option<usize>,
    /// Idle instance slots kept tied to their last droplet; `None`: all.
    pub warm_slots: Option<u32>,
    /// Which calls are recorded for replay, and how many are kept.
    pub record: RecordSettings,
    /// How many jobs a queue may hold, and how large a payload may be.
    pub queue_limits: QueueLimits,
    /// Scheduled and queued calls that may run at once across every
    /// droplet.
    pub max_background_calls: u32,
}
