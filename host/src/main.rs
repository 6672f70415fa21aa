//! `droplet`: the command line of the droplet host.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use droplet_host::app::{App, ServeSettings};
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
