//! `droplet serve`: its flags (every one also an environment variable),
//! turned into the host's settings, and the process's life: start, serve,
//! shut down in order.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use droplet_host::app::{App, ServeSettings};
use droplet_host::capabilities::config::ConfigEnv;
use droplet_host::droplets::manifest;
use droplet_host::droplets::manifest::RecordMode;
use droplet_host::droplets::recorder::RecordSettings;
use droplet_host::droplets::registry::RegistrySettings;
use droplet_host::http::access_log::AccessLogMode;
use droplet_host::http::connection::ConnectionLimits;
use droplet_host::http::server;
use droplet_host::http::service::Side;
use droplet_host::identity::jwt::{self, JwtSettings};
use droplet_host::ops::log_tail::TailLimits;
use droplet_host::ops::shutdown::Shutdown;
use droplet_host::ops::telemetry::{self, LogFormat};
use droplet_host::storage::database::DatabaseSettings;
use droplet_host::storage::kv::{BackendConfig, Durability};
use droplet_host::storage::queues::QueueLimits;
use droplet_host::storage::recordings::Bounds;

use crate::progress::CompileProgress;

/// How long background tasks get to end after the connections have drained.
const BACKGROUND_GRACE: Duration = Duration::from_secs(5);

/// `--max-memory-mb`'s default (what `droplet build` checks manifests
/// against).
pub const DEFAULT_MAX_MEMORY_MB: u64 = 256;

/// `--kv-durability`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DurabilityArg {
    /// A write returns once on disk (group commit).
    Durable,
    /// A write returns once in memory (flushed every 500 ms and at shutdown).
    Relaxed,
}

impl From<DurabilityArg> for Durability {
    fn from(arg: DurabilityArg) -> Self {
        match arg {
            DurabilityArg::Durable => Durability::Durable,
            DurabilityArg::Relaxed => Durability::Relaxed,
        }
    }
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormatArg {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Pretty,
}

impl From<LogFormatArg> for LogFormat {
    fn from(arg: LogFormatArg) -> Self {
        match arg {
            LogFormatArg::Json => LogFormat::Json,
            LogFormatArg::Pretty => LogFormat::Pretty,
        }
    }
}

/// `--access-log`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum AccessLogArg {
    /// Every request.
    All,
    /// Requests not answered 2xx.
    Errors,
    /// One in `--access-log-sample`, and every error.
    Sampled,
    /// None.
    Off,
}

/// Arguments of `droplet serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port and logs it).
    #[arg(long, env = "DROPLET_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Directory of droplets: `{name}.wasm` with an optional `{name}.toml`.
    #[arg(long = "droplets", env = "DROPLET_DIR", default_value = "droplets")]
    pub droplets_dir: PathBuf,
    /// Directory for the host's data (compiled-code cache, storage).
    #[arg(long = "data", env = "DROPLET_DATA", default_value = "data")]
    pub data_dir: PathBuf,
    /// Directory for compiled code [default: {data}/cache].
    #[arg(long = "cache", env = "DROPLET_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Route `Host: {name}.{domain}` to droplet `name`.
    #[arg(long, env = "DROPLET_DOMAIN")]
    pub domain: Option<String>,
    /// Log format.
    #[arg(long, env = "DROPLET_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormatArg,
    /// MiB of each instance's memory wiped in place (kept mapped) when it is
    /// dropped, rather than returned to the kernel [default: 8; 0.25 with swap].
    #[arg(long, env = "DROPLET_KEEP_RESIDENT_MB")]
    pub keep_resident_mb: Option<usize>,
    /// Idle instance slots that stay tied to the droplet that last ran in
    /// them (its memory image kept mapped, its dirtied pages resident)
    /// [default: every slot]. Lower it to bound resident memory when many
    /// droplets with large memories take turns.
    #[arg(long, env = "DROPLET_WARM_SLOTS")]
    pub warm_slots: Option<u32>,
    /// Which requests get an access-log line: `all`, `errors` (not 2xx),
    /// `sampled` (one in --access-log-sample, and every error) or `off`.
    #[arg(long, env = "DROPLET_ACCESS_LOG", value_enum, default_value = "all")]
    pub access_log: AccessLogArg,
    /// With `--access-log sampled`: log one request in this many.
    #[arg(long, env = "DROPLET_ACCESS_LOG_SAMPLE", default_value_t = 100)]
    pub access_log_sample: u64,
    /// Which droplet calls are recorded for replay (`droplet replay`):
    /// `errors` (every failed call), `sampled:N` (one in N, and every
    /// failed one), `all` or `off`. A manifest's `record` overrides it.
    #[arg(long, env = "DROPLET_RECORD", default_value = "errors")]
    pub record: RecordMode,
    /// The most one recording may hold, in KiB (import calls past it are
    /// not kept, and the recording says it was cut).
    #[arg(long, env = "DROPLET_RECORD_MAX_KB", default_value_t = 1024)]
    pub record_max_kb: usize,
    /// Recordings each droplet keeps; the oldest go first.
    #[arg(long, env = "DROPLET_RECORD_KEEP", default_value_t = 100)]
    pub record_keep: u64,
    /// MiB of recordings each droplet keeps; the oldest go first.
    #[arg(long, env = "DROPLET_RECORD_KEEP_MB", default_value_t = 64)]
    pub record_keep_mb: u64,
    /// Jobs one queue may hold (waiting, in flight and dead); a send past
    /// it fails with `full`.
    #[arg(long, env = "DROPLET_QUEUE_MAX_JOBS", default_value_t = 100_000)]
    pub queue_max_jobs: u64,
    /// The largest job payload, in KiB.
    #[arg(long, env = "DROPLET_QUEUE_MAX_PAYLOAD_KB", default_value_t = 256)]
    pub queue_max_payload_kb: usize,
    /// Scheduled and queued calls that may run at once across every
    /// droplet; the rest of the host stays for requests [default: twice
    /// the cores].
    #[arg(long, env = "DROPLET_MAX_BACKGROUND_CALLS")]
    pub max_background_calls: Option<u32>,
    /// Log lines naming a droplet kept in memory for the dashboard's live
    /// tail, across all droplets (0: no tail).
    #[arg(long, env = "DROPLET_LOG_TAIL_LINES", default_value_t = 5000)]
    pub log_tail_lines: usize,
    /// Memory the dashboard's log tail may take, in MiB.
    #[arg(long, env = "DROPLET_LOG_TAIL_MB", default_value_t = 4)]
    pub log_tail_mb: usize,
    /// Seconds in-flight requests get to finish on shutdown.
    #[arg(long, env = "DROPLET_SHUTDOWN_GRACE_S", default_value_t = 30)]
    pub shutdown_grace_s: u64,
    /// Client connections open at once [default: half the open-file limit].
    #[arg(long, env = "DROPLET_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds a connection may sit idle (no request in flight, no bytes,
    /// from accept on) before it is closed.
    #[arg(long, env = "DROPLET_IDLE_TIMEOUT_S", default_value_t = 30)]
    pub idle_timeout_s: u64,
    /// Instances that may run at once across all droplets.
    #[arg(long, env = "DROPLET_MAX_INSTANCES", default_value_t = 1000)]
    pub max_instances: u32,
    /// Response bytes the host holds at once, in MiB, across every call and
    /// every response still being sent; past it, calls answer 503 host_busy.
    #[arg(long, env = "DROPLET_MAX_RESPONSE_BUFFER_MB", default_value_t = 512)]
    pub max_response_buffer_mb: usize,
    /// Request-body bytes the host holds at once, in MiB, across every
    /// request being read or answered (a declared length is held before
    /// the body is read); past it, a request answers 503 host_busy.
    #[arg(long, env = "DROPLET_MAX_REQUEST_BUFFER_MB", default_value_t = 256)]
    pub max_request_buffer_mb: usize,
    /// Host memory, in MiB, all running calls together may make the host
    /// hold on its heap (wasi:http resources, strings handed to imports,
    /// buffers); past it, the call that asked for more answers 503
    /// host_busy. Each call also has its own limit: its memory_mb plus 48.
    #[arg(long, env = "DROPLET_MAX_GUEST_HELD_MB", default_value_t = 1024)]
    pub max_guest_held_mb: usize,
    /// Outbound HTTP requests in flight at once across every droplet; past
    /// it a droplet's request fails at once.
    #[arg(long, env = "DROPLET_MAX_OUTBOUND_CONNECTIONS", default_value_t = 256)]
    pub max_outbound_connections: usize,
    /// Droplet-to-droplet calls one request from outside may cause, all
    /// together (its whole tree); past it, a call answers 429
    /// too_many_calls. Each of them also takes a concurrency slot of the
    /// droplet the request reached first.
    #[arg(long, env = "DROPLET_MAX_INTERNAL_CALLS", default_value_t = 100)]
    pub max_internal_calls: u32,
    /// The largest `memory_mb` a droplet's manifest may ask for.
    #[arg(long, env = "DROPLET_MAX_MEMORY_MB", default_value_t = DEFAULT_MAX_MEMORY_MB)]
    pub max_memory_mb: u64,
    /// Host environment variables manifests may expand with `${VAR}`, besides
    /// those named DROPLET_CONFIG_* (comma-separated). The host's secrets are
    /// never expanded.
    #[arg(long, env = "DROPLET_CONFIG_ENV", value_delimiter = ',')]
    pub config_env: Vec<String>,
    /// `durable`: a kv write returns once on disk (group commit);
    /// `relaxed`: once in memory (flushed every 500 ms).
    #[arg(
        long,
        env = "DROPLET_KV_DURABILITY",
        value_enum,
        default_value = "durable"
    )]
    pub kv_durability: DurabilityArg,
    /// The kv quota, in MiB, of droplets whose manifest sets no
    /// `kv_quota_mb` (0: unlimited).
    #[arg(long, env = "DROPLET_KV_DEFAULT_QUOTA_MB", default_value_t = 100)]
    pub kv_default_quota_mb: u64,
    /// The most memory the kv store's page cache may use, in MiB.
    #[arg(long, env = "DROPLET_KV_CACHE_MB", default_value_t = 128)]
    pub kv_cache_mb: u64,
    /// PostgreSQL URL (`postgres://user@host:5432/db`): kv and deployments
    /// live there, shared by every host of a fleet. Unset: sled and files
    /// under --data.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Connections in the PostgreSQL pool.
    #[arg(long, env = "DROPLET_DATABASE_POOL_SIZE", default_value_t = 16)]
    pub database_pool_size: usize,
    /// Seconds start-up keeps retrying an unreachable database before it
    /// gives up.
    #[arg(long, env = "DROPLET_DATABASE_CONNECT_TIMEOUT_S", default_value_t = 30)]
    pub database_connect_timeout_s: u64,
    /// This host's id in a fleet [default: {hostname}:{port}].
    #[arg(long, env = "DROPLET_HOST_ID")]
    pub host_id: Option<String>,
    /// The largest kv value, in KiB.
    #[arg(long, env = "DROPLET_KV_MAX_VALUE_KB", default_value_t = 1024)]
    pub kv_max_value_kb: usize,
    /// Public key (PEM, or a path to one) for RS256/ES256 tokens.
    #[arg(long, env = "REGISTRY_PUBLIC_KEY", hide_env_values = true)]
    pub registry_public_key: Option<String>,
    /// JSON Web Key Set file; keys are picked by `kid`.
    #[arg(long, env = "JWKS_PATH")]
    pub jwks_path: Option<PathBuf>,
    /// HS256 secret, for development.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// The audience tokens must name.
    #[arg(long, env = "JWT_AUDIENCE", default_value = jwt::DEFAULT_AUDIENCE)]
    pub jwt_audience: String,
    /// The issuer tokens must name, if set.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    #[arg(long, env = "JWT_LEEWAY_S", default_value_t = jwt::DEFAULT_LEEWAY_S)]
    pub jwt_leeway_s: u64,
    /// Serve the admin API and dashboard on this address instead of beside
    /// the droplets (recommended in production: droplet content then never
    /// shares the dashboard's origin). `/_admin` on --listen answers 404.
    #[arg(long, env = "DROPLET_ADMIN_LISTEN")]
    pub admin_listen: Option<std::net::SocketAddr>,
    /// Register droplets at start and compile each on its first request.
    #[arg(long, env = "DROPLET_LAZY")]
    pub lazy: bool,
    /// Do not watch the droplets directory for changes.
    #[arg(long, env = "DROPLET_NO_WATCH")]
    pub no_watch: bool,
    /// Largest deploy body the admin API accepts, in MiB.
    #[arg(long, env = "DROPLET_ADMIN_MAX_BODY_MB", default_value_t = 64)]
    pub admin_max_body_mb: usize,
    /// Seconds a request body (droplet or admin) may take to arrive.
    #[arg(long, env = "DROPLET_BODY_TIMEOUT_S", default_value_t = 30)]
    pub body_timeout_s: u64,
    /// `production` refuses to start with an insecure setup.
    #[arg(long, env = "ENVIRONMENT", default_value = "development")]
    pub environment: String,
    /// Register every droplet with this registry (`POST {url}/register`).
    #[arg(long, env = "REGISTRY_URL")]
    pub registry_url: Option<String>,
    /// Bearer token for the registry.
    #[arg(long, env = "REGISTRY_TOKEN", hide_env_values = true)]
    pub registry_token: Option<String>,
    /// The host's public URL; droplets are registered at `{url}/{name}`
    /// [default: http://{listen}].
    #[arg(long, env = "PUBLIC_URL")]
    pub public_url: Option<String>,
}

/// `droplet serve`; `dotenv` is the `.env` file that was read, if any.
pub fn serve(args: ServeArgs, dotenv: Option<PathBuf>) -> anyhow::Result<()> {
    let _telemetry = telemetry::init(
        args.log_format.into(),
        TailLimits {
            lines: args.log_tail_lines,
            bytes: args.log_tail_mb.saturating_mul(1 << 20),
        },
    )?;
    anyhow::ensure!(args.max_instances > 0, "--max-instances must be at least 1");
    anyhow::ensure!(
        args.max_memory_mb >= manifest::DEFAULT_MEMORY_MB,
        "--max-memory-mb must be at least the default memory_mb of {}",
        manifest::DEFAULT_MEMORY_MB
    );
    let settings = ServeSettings {
        listen: args.listen,
        droplets_dir: args.droplets_dir,
        cache_dir: args.cache_dir,
        domain: args.domain,
        shutdown_grace: Duration::from_secs(args.shutdown_grace_s),
        connections: ConnectionLimits {
            max_connections: args
                .max_connections
                .unwrap_or_else(ConnectionLimits::default_max_connections)
                .max(1),
            idle_timeout: Duration::from_secs(args.idle_timeout_s.max(1)),
        },
        max_instances: args.max_instances,
        max_memory_mb: args.max_memory_mb,
        config_env: ConfigEnv {
            allowed: args
                .config_env
                .iter()
                .map(|var| var.trim().to_string())
                .filter(|var| !var.is_empty())
                .collect(),
        },
        kv: match args.database_url {
            Some(url) => BackendConfig::Postgres {
                database: DatabaseSettings {
                    url,
                    pool_size: args.database_pool_size.max(1),
                    connect_timeout: Duration::from_secs(args.database_connect_timeout_s),
                },
                durability: args.kv_durability.into(),
            },
            None => BackendConfig::Sled {
                dir: args.data_dir.join("kv"),
                durability: args.kv_durability.into(),
                cache_bytes: args.kv_cache_mb.saturating_mul(1 << 20),
            },
        },
        host_id: args.host_id,
        response_buffer_bytes: args.max_response_buffer_mb.saturating_mul(1 << 20),
        request_buffer_bytes: args.max_request_buffer_mb.saturating_mul(1 << 20),
        guest_held_bytes: args.max_guest_held_mb.saturating_mul(1 << 20),
        max_outbound_in_flight: args.max_outbound_connections.max(1),
        max_internal_calls: args.max_internal_calls,
        keep_resident_bytes: args.keep_resident_mb.map(|mb| mb.saturating_mul(1 << 20)),
        warm_slots: args.warm_slots,
        record: RecordSettings {
            mode: args.record,
            max_bytes: args.record_max_kb.saturating_mul(1024),
            bounds: Bounds {
                count: args.record_keep.max(1),
                bytes: args.record_keep_mb.saturating_mul(1 << 20),
            },
        },
        queue_limits: QueueLimits {
            max_jobs: args.queue_max_jobs.max(1),
            max_payload_bytes: args.queue_max_payload_kb.saturating_mul(1024),
        },
        max_background_calls: args
            .max_background_calls
            .unwrap_or_else(|| {
                let cores = std::thread::available_parallelism().map_or(1, usize::from);
                u32::try_from(cores * 2).unwrap_or(u32::MAX)
            })
            .max(1),
        access_log: match args.access_log {
            AccessLogArg::All => AccessLogMode::All,
            AccessLogArg::Errors => AccessLogMode::Errors,
            AccessLogArg::Sampled => AccessLogMode::Sampled(args.access_log_sample.max(1)),
            AccessLogArg::Off => AccessLogMode::Off,
        },
        kv_default_quota_bytes: (args.kv_default_quota_mb > 0)
            .then(|| args.kv_default_quota_mb.saturating_mul(1 << 20)),
        data_dir: args.data_dir,
        kv_max_value_bytes: args.kv_max_value_kb.saturating_mul(1024),
        lazy: args.lazy,
        watch: !args.no_watch,
        admin_max_body_bytes: args.admin_max_body_mb.saturating_mul(1 << 20),
        body_read_timeout: Duration::from_secs(args.body_timeout_s.max(1)),
        jwt: JwtSettings {
            public_key: args.registry_public_key,
            jwks_path: args.jwks_path,
            secret: args.jwt_secret,
            audience: args.jwt_audience,
            issuer: args.jwt_issuer,
            leeway_s: args.jwt_leeway_s,
        },
    };
    let production = args.environment.eq_ignore_ascii_case("production");
    let admin_listen = args.admin_listen;
    let registry = args.registry_url.map(|url| RegistrySettings {
        url,
        token: args.registry_token,
        public_url: args
            .public_url
            .unwrap_or_else(|| format!("http://{}", args.listen)),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // Bound first: a taken port is said at once, before any droplet loads.
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let addr = listener.local_addr()?;
        let admin_listener = match admin_listen {
            Some(admin) => Some(
                tokio::net::TcpListener::bind(admin)
                    .await
                    .with_context(|| format!("cannot listen on {admin} (--admin-listen)"))?,
            ),
            None => None,
        };
        let admin_addr = admin_listener
            .as_ref()
            .map(|listener| listener.local_addr())
            .transpose()?;
        let shutdown = Shutdown::new();
        let metrics = droplet_host::ops::metrics::install(&shutdown)?;
        let mut settings = settings;
        settings.listen = addr;
        let app = App::start(
            &settings,
            Some(metrics),
            &shutdown,
            Arc::new(CompileProgress::new()),
        )
        .await?;
        if production {
            app.check_production(&settings.jwt).map_err(|why| {
                anyhow::anyhow!("refusing to start with ENVIRONMENT=production: {why}")
            })?;
        }
        if let Some(registry) = registry {
            app.droplets.notify(droplet_host::droplets::registry::spawn(
                registry, &shutdown,
            )?);
        }
        if let Some(fleet) = &app.fleet {
            fleet.spawn(Arc::clone(&app.droplets), &shutdown);
        }
        droplet_host::droplets::rollout::judge::Judge::spawn(
            Arc::clone(&app.droplets),
            app.host_id.clone(),
            app.fleet.as_ref().map(|fleet| fleet.rollout_hints()),
            &shutdown,
        );
        droplet_host::jobs::supervisor::spawn(&app);
        if settings.watch {
            droplet_host::droplets::watch::spawn(
                Arc::clone(&app.droplets),
                settings.droplets_dir.clone(),
                &shutdown,
            )?;
        }
        let signal = shutdown.clone();
        tokio::spawn(async move {
            server::shutdown_signal().await;
            signal.trigger();
        });
        let keys = app.verifier().is_some();
        tracing::info!(
            addr = %addr,
            droplets = app.droplets.len(),
            kv_backend = settings.kv.name(),
            database = app.database.as_ref().map(|db| db.target().to_string()),
            host_id = app.fleet.as_ref().map(|fleet| fleet.host_id().to_string()),
            jwt_keys = keys,
            admin_api = keys,
            max_connections = settings.connections.max_connections,
            dotenv = dotenv.as_ref().map(|path| path.display().to_string()),
            admin_addr = admin_addr.map(|admin| admin.to_string()),
            "listening on http://{addr}"
        );
        let (public_side, admin) = match admin_listener {
            Some(admin) => (Side::Droplets, Some(admin)),
            None => (Side::Both, None),
        };
        let public = server::serve(
            listener,
            Arc::clone(&app),
            settings.connections,
            settings.shutdown_grace,
            public_side,
        );
        match admin {
            Some(admin) => {
                let admin = server::serve(
                    admin,
                    Arc::clone(&app),
                    settings.connections,
                    settings.shutdown_grace,
                    Side::Admin,
                );
                tokio::join!(public, admin);
            }
            None => public.await,
        }
        if !shutdown.wait_for_tasks(BACKGROUND_GRACE).await {
            tracing::warn!(
                "background tasks still running after {BACKGROUND_GRACE:?}; exiting anyway"
            );
        }
        match app.kv().flush().await {
            Ok(()) => tracing::info!("kv storage flushed"),
            Err(err) => tracing::error!(error = %err, "the last kv flush failed"),
        }
        anyhow::Ok(())
    })?;
    tracing::info!("stopped");
    Ok(())
}
