//! [`App`]: the state of a running host, shared by every connection and
//! background task, and [`App::start`], which builds it once from
//! [`ServeSettings`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::capabilities::Capabilities;
use crate::capabilities::auth::AuthCapability;
use crate::capabilities::config::ConfigCapability;
use crate::capabilities::kv::KvCapability;
use crate::capabilities::log::LogCapability;
use crate::capabilities::outbound::access::OutboundCapability;
use crate::capabilities::outbound::{InternalCalls, Outbound};
use crate::capabilities::queue::QueueCapability;
use crate::capabilities::response_body::BodyCapability;
use crate::capabilities::streaming::StreamingCapability;
use crate::droplets::fleet::Fleet;
use crate::droplets::loader::Loader;
use crate::droplets::recorder::Recorder;
use crate::droplets::store::DeploymentStore;
use crate::droplets::store::file::FileStore;
use crate::droplets::store::postgres::PostgresStore;
use crate::droplets::{Droplets, LoadProgress};
use crate::guest::code_cache::CodeCache;
use crate::guest::runtime::{Runtime, RuntimeSettings};
use crate::http::request_body::BodyBudget;
use crate::identity::jwt::{JwtSettings, Verifier};
use crate::ops::shutdown::Shutdown;
use crate::storage::database::Database;
use crate::storage::kv::{KvBackend, OpenBackend};
use crate::storage::queues::QueueStore;
use crate::storage::queues::postgres::PostgresQueues;
use crate::storage::queues::sled::SledQueues;
use crate::storage::recordings::RecordingStore;
use crate::storage::recordings::file::FileRecordings;
use crate::storage::recordings::postgres::PostgresRecordings;

use super::settings::ServeSettings;
use super::start_error::{StartError, default_host_id, lock_data_dir};

/// The host's shared state.
pub struct App {
    /// Engine, linker, ticker.
    pub runtime: Arc<Runtime>,
    /// The droplets, by name.
    pub droplets: Arc<Droplets>,
    /// Routing domain for `Host`-based routing.
    pub domain: Option<String>,
    /// The host-wide half of every capability droplets import.
    pub capabilities: Arc<Capabilities>,
    /// Largest admin deploy body.
    pub admin_max_body_bytes: usize,
    /// Longest a request body may take to arrive: a trickling body is
    /// refused then, on droplet and admin routes alike.
    pub body_read_timeout: Duration,
    /// Renders `/metrics`; `None` when no recorder is installed.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Instance slots across all droplets: a call takes one before it
    /// instantiates, so the pooling allocator is never asked for more than it
    /// has and a full pool is a clean 503, not an error.
    pub instance_slots: Arc<Semaphore>,
    /// The host-wide budget of request-body bytes held at once.
    pub request_bodies: BodyBudget,
    /// The size of the instance pool, for the 503 that says it is full.
    pub max_instances: u32,
    /// In-process calls one request from outside may cause, all together.
    pub max_internal_calls: u32,
    /// When the host started.
    pub started: Instant,
    /// The host's shutdown: `/health` and new droplet calls answer 503 once
    /// it has begun.
    pub shutdown: Shutdown,
    /// The database, when kv and deployments live in PostgreSQL.
    pub database: Option<Arc<Database>>,
    /// This host's part in a fleet (PostgreSQL only).
    pub fleet: Option<Arc<Fleet>>,
    /// This host's id: in the fleet's records, and in the rollout
    /// decisions it makes.
    pub host_id: String,
    /// Which requests get an access-log line.
    pub access_log: crate::http::access_log::AccessLog,
    /// Records calls for replay and keeps them.
    pub recorder: Arc<Recorder>,
    /// Queued jobs and schedule runs (sled here, PostgreSQL on a fleet).
    pub queues: Arc<dyn QueueStore>,
    /// Background calls (scheduled and queued) that may run at once,
    /// across every droplet: the rest of the instance pool stays for
    /// requests.
    pub background_slots: Arc<Semaphore>,
    /// kv usage the dashboard read lately.
    pub kv_usage: crate::storage::kv::usage_cache::UsageCache,
    /// Held while the host runs: one host per data directory.
    _data_lock: std::fs::File,
}

impl App {
    /// Opens the kv backend, builds the runtime and loads every droplet in
    /// the droplets directory. Background tasks run under `shutdown`.
    pub async fn start(
        settings: &ServeSettings,
        metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
        shutdown: &Shutdown,
        progress: Arc<dyn LoadProgress + Send>,
    ) -> Result<Arc<Self>, StartError> {
        let verifier = Verifier::from_settings(&settings.jwt)
            .map_err(StartError::Jwt)?
            .map(Arc::new);
        std::fs::create_dir_all(&settings.data_dir)
            .map_err(|err| StartError::io("create the data directory", &settings.data_dir, err))?;
        let data_lock = lock_data_dir(&settings.data_dir)?;
        let OpenBackend { kv, database } = settings.kv.open(shutdown).await?;
        let queues: Arc<dyn QueueStore> = match &database {
            Some(database) => Arc::new(PostgresQueues::new(
                Arc::clone(database),
                settings.queue_limits,
            )),
            None => Arc::new(
                SledQueues::open(&settings.data_dir.join("queues"), settings.queue_limits)
                    .map_err(StartError::Queues)?,
            ),
        };
        let capabilities = Arc::new(Capabilities {
            kv: KvCapability {
                backend: kv,
                max_value_bytes: settings.kv_max_value_bytes,
                default_quota_bytes: settings.kv_default_quota_bytes,
            },
            log: LogCapability,
            config: ConfigCapability {
                env: settings.config_env.clone(),
            },
            auth: AuthCapability { verifier },
            body: BodyCapability::new(settings.response_buffer_bytes),
            outbound: OutboundCapability {
                outbound: Arc::new(
                    Outbound::new(settings.max_outbound_in_flight).map_err(StartError::Outbound)?,
                ),
            },
            streaming: StreamingCapability,
            queue: QueueCapability {
                store: Arc::clone(&queues),
                sent: Arc::new(tokio::sync::Notify::new()),
            },
        });
        let runtime = Arc::new(Runtime::new(&RuntimeSettings {
            max_instances: settings.max_instances,
            max_memory_mb: settings.max_memory_mb,
            keep_resident_bytes: settings.keep_resident_bytes,
            warm_slots: settings.warm_slots,
            max_held_bytes: settings.guest_held_bytes,
        })?);
        let cache_dir = settings
            .cache_dir
            .clone()
            .unwrap_or_else(|| settings.data_dir.join("cache"));
        let cache = CodeCache::new(Some(cache_dir), runtime.engine());
        let loader = Arc::new(Loader::new(
            Arc::clone(&runtime),
            cache,
            settings.max_memory_mb,
            Arc::clone(&capabilities),
        ));
        let host_id = settings
            .host_id
            .clone()
            .unwrap_or_else(|| default_host_id(settings.listen.port()));
        let (store, fleet): (Arc<dyn DeploymentStore>, _) = match &database {
            Some(database) => {
                let store = Arc::new(PostgresStore::new(Arc::clone(database)));
                (store.clone() as _, Some(Fleet::new(store, host_id.clone())))
            }
            None => (
                Arc::new(FileStore::new(settings.data_dir.join("deployments"))) as _,
                None,
            ),
        };
        let recordings: Arc<dyn RecordingStore> = match &database {
            Some(database) => Arc::new(PostgresRecordings::new(Arc::clone(database))),
            None => Arc::new(FileRecordings::new(settings.data_dir.join("recordings"))),
        };
        let recorder = Recorder::start(settings.record, recordings, shutdown);
        let droplets_dir = settings.droplets_dir.clone();
        std::fs::create_dir_all(&droplets_dir)
            .map_err(|err| StartError::io("create the droplets directory", &droplets_dir, err))?;
        // Registered now, compiled once the host listens (unless lazy).
        let droplets = Arc::new(Droplets::load(&droplets_dir, store, loader, true, &()).await?);
        if !settings.lazy {
            shutdown.spawn_until_triggered(Arc::clone(&droplets).warm_up(progress));
        }
        let app = Arc::new(Self {
            runtime,
            droplets,
            domain: settings
                .domain
                .as_deref()
                .map(crate::http::router::normalize_host),
            capabilities,
            admin_max_body_bytes: settings.admin_max_body_bytes,
            body_read_timeout: settings.body_read_timeout,
            metrics,
            instance_slots: Arc::new(Semaphore::new(settings.max_instances as usize)),
            request_bodies: BodyBudget::new(settings.request_buffer_bytes),
            max_instances: settings.max_instances,
            max_internal_calls: settings.max_internal_calls,
            started: Instant::now(),
            shutdown: shutdown.clone(),
            database,
            fleet,
            host_id,
            access_log: crate::http::access_log::AccessLog::new(settings.access_log),
            recorder,
            kv_usage: crate::storage::kv::usage_cache::UsageCache::default(),
            queues,
            background_slots: Arc::new(Semaphore::new(settings.max_background_calls as usize)),
            _data_lock: data_lock,
        });
        // `*.droplet.internal` is answered by this host, in process.
        let internal: std::sync::Weak<dyn InternalCalls> = Arc::downgrade(&app) as _;
        app.capabilities.outbound.outbound.set_internal(internal);
        Ok(app)
    }

    /// Verifies bearer tokens (the auth capability's); `None` when no keys
    /// are configured.
    pub fn verifier(&self) -> Option<&Verifier> {
        self.capabilities.auth.verifier.as_deref()
    }

    /// The kv backend every droplet's namespace lives in.
    pub fn kv(&self) -> &Arc<dyn KvBackend> {
        &self.capabilities.kv.backend
    }

    /// Refuses an insecure production setup, saying exactly why: a droplet
    /// with `auth = "jwt"` and no keys to verify tokens, or an admin API
    /// enabled by an HS256 secret shorter than 32 bytes.
    pub fn check_production(&self, jwt: &JwtSettings) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.verifier().is_none() {
            let protected: Vec<String> = self
                .droplets
                .list()
                .iter()
                .filter(|droplet| {
                    droplet.manifest.auth == crate::droplets::manifest::AuthPolicy::Jwt
                })
                .map(|droplet| droplet.name.to_string())
                .collect();
            if !protected.is_empty() {
                problems.push(format!(
                    "droplet(s) {} require auth = \"jwt\" but no keys are configured (set REGISTRY_PUBLIC_KEY or JWKS_PATH)",
                    protected.join(", ")
                ));
            }
        }
        if let Some(secret) = &jwt.secret
            && secret.len() < 32
        {
            problems.push(format!(
                "JWT_SECRET is {} bytes; it enables the admin API, so production needs at least 32 random bytes (or use REGISTRY_PUBLIC_KEY / JWKS_PATH)",
                secret.len()
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}
