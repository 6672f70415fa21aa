//! `droplet`: the command line of the droplet host.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use droplet_host::app::{App, ServeSettings};
use droplet_host::jwt::{self, JwtSettings};
use droplet_host::kv::sled::Durability;
use droplet_host::telemetry::{self, LogFormat};
use droplet_host::{manifest, server};

/// Serve many WebAssembly droplets from one process.
#[derive(Parser)]
#[command(name = "droplet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every droplet in a directory over HTTP.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port and logs it).
    #[arg(long, env = "DROPLET_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory of droplets: `{name}.wasm` with an optional `{name}.toml`.
    #[arg(long = "droplets", env = "DROPLET_DIR", default_value = "droplets")]
    droplets_dir: PathBuf,
    /// Directory for the host's data (compiled-code cache, storage).
    #[arg(long = "data", env = "DROPLET_DATA", default_value = "data")]
    data_dir: PathBuf,
    /// Directory for compiled code [default: {data}/cache].
    #[arg(long = "cache", env = "DROPLET_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Route `Host: {name}.{domain}` to droplet `name`.
    #[arg(long, env = "DROPLET_DOMAIN")]
    domain: Option<String>,
    /// Log format.
    #[arg(long, env = "DROPLET_LOG_FORMAT", value_enum, default_value = "json")]
    log_format: LogFormat,
    /// Seconds in-flight requests get to finish on shutdown.
    #[arg(long, env = "DROPLET_SHUTDOWN_GRACE_S", default_value_t = 30)]
    shutdown_grace_s: u64,
    /// Instances that may run at once across all droplets.
    #[arg(long, env = "DROPLET_MAX_INSTANCES", default_value_t = 1000)]
    max_instances: u32,
    /// The largest `memory_mb` a droplet's manifest may ask for.
    #[arg(long, env = "DROPLET_MAX_MEMORY_MB", default_value_t = 256)]
    max_memory_mb: u64,
    /// `durable`: a kv write returns once on disk (group commit);
    /// `relaxed`: once in memory (flushed every 500 ms).
    #[arg(
        long,
        env = "DROPLET_KV_DURABILITY",
        value_enum,
        default_value = "durable"
    )]
    kv_durability: Durability,
    /// The largest kv value, in KiB.
    #[arg(long, env = "DROPLET_KV_MAX_VALUE_KB", default_value_t = 1024)]
    kv_max_value_kb: usize,
    /// Public key (PEM, or a path to one) for RS256/ES256 tokens.
    #[arg(long, env = "REGISTRY_PUBLIC_KEY", hide_env_values = true)]
    registry_public_key: Option<String>,
    /// JSON Web Key Set file; keys are picked by `kid`.
    #[arg(long, env = "JWKS_PATH")]
    jwks_path: Option<PathBuf>,
    /// HS256 secret, for development.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// The audience tokens must name.
    #[arg(long, env = "JWT_AUDIENCE", default_value = jwt::DEFAULT_AUDIENCE)]
    jwt_audience: String,
    /// The issuer tokens must name, if set.
    #[arg(long, env = "JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    #[arg(long, env = "JWT_LEEWAY_S", default_value_t = jwt::DEFAULT_LEEWAY_S)]
    jwt_leeway_s: u64,
}

fn main() -> anyhow::Result<()> {
    // `.env` first, so its values reach clap's `env` lookups; a missing file
    // is fine, a malformed one is not.
    match dotenvy::dotenv() {
        Ok(_) => {}
        Err(err) if err.not_found() => {}
        Err(err) => anyhow::bail!("cannot read .env: {err}"),
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let _log_guard = telemetry::init(args.log_format);
    anyhow::ensure!(args.max_instances > 0, "--max-instances must be at least 1");
    anyhow::ensure!(
        args.max_memory_mb >= manifest::DEFAULT_MEMORY_MB,
        "--max-memory-mb must be at least the default memory_mb of {}",
        manifest::DEFAULT_MEMORY_MB
    );
    let settings = ServeSettings {
        listen: args.listen,
        droplets_dir: args.droplets_dir,
        data_dir: args.data_dir,
        cache_dir: args.cache_dir,
        domain: args.domain,
        shutdown_grace: Duration::from_secs(args.shutdown_grace_s),
        max_instances: args.max_instances,
        max_memory_mb: args.max_memory_mb,
        kv_durability: args.kv_durability,
        kv_max_value_bytes: args.kv_max_value_kb.saturating_mul(1024),
        jwt: JwtSettings {
            public_key: args.registry_public_key,
            jwks_path: args.jwks_path,
            secret: args.jwt_secret,
            audience: args.jwt_audience,
            issuer: args.jwt_issuer,
            leeway_s: args.jwt_leeway_s,
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let app = App::start(&settings).await?;
        let listener = tokio::net::TcpListener::bind(settings.listen).await?;
        let addr = listener.local_addr()?;
        tracing::info!(addr = %addr, droplets = app.droplets.len(), "listening on http://{addr}");
        server::serve(
            listener,
            app,
            server::shutdown_signal(),
            settings.shutdown_grace,
        )
        .await;
        anyhow::Ok(())
    })?;
    tracing::info!("stopped");
    Ok(())
}
