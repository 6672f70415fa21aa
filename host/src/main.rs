//! `droplet`: the command line of the droplet host.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use droplet_host::app::{App, ServeSettings};
use droplet_host::client::{self, JsonClient};
use droplet_host::jwt::{self, JwtSettings};
use droplet_host::kv::sled::Durability;
use droplet_host::registry::RegistrySettings;
use droplet_host::runtime::{Runtime, RuntimeSettings};
use droplet_host::scaffold;
use droplet_host::telemetry::{self, LogFormat};
use droplet_host::{manifest, server};
use http::Method;

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
    Serve(Box<ServeArgs>),
    /// Mint an HS256 token from JWT_SECRET, for development.
    Token(TokenArgs),
    /// List the droplets of a host.
    List(HostArgs),
    /// Deploy a module (and optionally a manifest) to a host.
    Deploy(DeployArgs),
    /// Serve the previous version of a droplet again.
    Rollback(NameArgs),
    /// Remove a droplet from a host.
    Rm(RmArgs),
    /// Create a new droplet crate.
    New(NewArgs),
    /// Build a droplet crate and copy it into a droplets directory.
    Build(BuildArgs),
}

#[derive(clap::Args)]
struct NewArgs {
    /// The droplet's name.
    name: String,
    /// Where to create it [default: ./NAME].
    #[arg(long)]
    path: Option<PathBuf>,
    /// The droplet SDK (the repository's `guest-sdk`) [default: the one this binary was built from].
    #[arg(long)]
    sdk: Option<PathBuf>,
}

#[derive(clap::Args)]
struct BuildArgs {
    /// The droplet crate.
    #[arg(default_value = ".")]
    path: PathBuf,
    /// Where to copy the built droplet (a running host watches it).
    #[arg(long = "droplets", env = "DROPLET_DIR", default_value = "droplets")]
    droplets_dir: PathBuf,
}

#[derive(clap::Args)]
struct TokenArgs {
    /// Scopes to grant (repeat, or separate with spaces).
    #[arg(long = "scope", required = true)]
    scopes: Vec<String>,
    /// The token's subject.
    #[arg(long, default_value = "developer")]
    sub: String,
    /// How long the token is valid (e.g. 30m, 1h, 7d).
    #[arg(long, default_value = "1h")]
    ttl: humantime::Duration,
    /// HS256 secret.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// Audience.
    #[arg(long, env = "JWT_AUDIENCE", default_value = jwt::DEFAULT_AUDIENCE)]
    jwt_audience: String,
    /// Issuer, if the host requires one.
    #[arg(long, env = "JWT_ISSUER")]
    jwt_issuer: Option<String>,
}

#[derive(clap::Args)]
struct HostArgs {
    /// The host's URL.
    #[arg(long, env = "DROPLET_HOST", default_value = "http://127.0.0.1:8080")]
    host: String,
    /// A bearer token with scope droplets:admin (see `droplet token`).
    #[arg(long, env = "DROPLET_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(clap::Args)]
struct NameArgs {
    /// The droplet.
    name: String,
    #[command(flatten)]
    host: HostArgs,
}

#[derive(clap::Args)]
struct RmArgs {
    /// The droplet.
    name: String,
    /// Also delete its key-value data.
    #[arg(long)]
    purge: bool,
    #[command(flatten)]
    host: HostArgs,
}

#[derive(clap::Args)]
struct DeployArgs {
    /// The droplet's name.
    name: String,
    /// The module (`.wasm`).
    file: PathBuf,
    /// Its manifest (`.toml`).
    #[arg(long)]
    manifest: Option<PathBuf>,
    #[command(flatten)]
    host: HostArgs,
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
    /// Register droplets at start and compile each on its first request.
    #[arg(long, env = "DROPLET_LAZY")]
    lazy: bool,
    /// Do not watch the droplets directory for changes.
    #[arg(long, env = "DROPLET_NO_WATCH")]
    no_watch: bool,
    /// Largest deploy body the admin API accepts, in MiB.
    #[arg(long, env = "DROPLET_ADMIN_MAX_BODY_MB", default_value_t = 64)]
    admin_max_body_mb: usize,
    /// `production` refuses to start with an insecure setup.
    #[arg(long, env = "ENVIRONMENT", default_value = "development")]
    environment: String,
    /// Register every droplet with this registry (`POST {url}/register`).
    #[arg(long, env = "REGISTRY_URL")]
    registry_url: Option<String>,
    /// Bearer token for the registry.
    #[arg(long, env = "REGISTRY_TOKEN", hide_env_values = true)]
    registry_token: Option<String>,
    /// The host's public URL; droplets are registered at `{url}/{name}`
    /// [default: http://{listen}].
    #[arg(long, env = "PUBLIC_URL")]
    public_url: Option<String>,
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
        Command::Serve(args) => serve(*args),
        Command::Token(args) => token(args),
        Command::List(args) => remote(list(args)),
        Command::Deploy(args) => remote(deploy(args)),
        Command::Rollback(args) => remote(rollback(args)),
        Command::Rm(args) => remote(rm(args)),
        Command::New(args) => new(args),
        Command::Build(args) => build(args),
    }
}

fn new(args: NewArgs) -> anyhow::Result<()> {
    let dir = args.path.unwrap_or_else(|| PathBuf::from(&args.name));
    let sdk = args
        .sdk
        .or_else(scaffold::default_sdk_path)
        .context("cannot find the droplet SDK: pass --sdk PATH (the repository's guest-sdk)")?;
    scaffold::new_droplet(&args.name, &dir, &sdk)?;
    println!("created droplet {} in {}", args.name, dir.display());
    println!(
        "next: cd {} && droplet build --droplets <your droplets dir>",
        dir.display()
    );
    Ok(())
}

fn build(args: BuildArgs) -> anyhow::Result<()> {
    // Checks the component against the world with a small runtime of its own.
    let runtime = Runtime::new(&RuntimeSettings {
        max_instances: 1,
        max_memory_mb: 64,
    })?;
    let check = |wasm: &[u8]| -> Result<(), String> {
        let component = wasmtime::component::Component::new(runtime.engine(), wasm)
            .map_err(|err| format!("{err:#}"))?;
        runtime.link(&component).map(|_| ())
    };
    let name = scaffold::build_droplet(&args.path, &args.droplets_dir, check)?;
    println!(
        "built {name}: {}",
        args.droplets_dir.join(format!("{name}.wasm")).display()
    );
    Ok(())
}

/// Runs a command that talks to a host.
fn remote(command: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(command)
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    anyhow::ensure!(!args.jwt_secret.is_empty(), "JWT_SECRET is empty");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let scope = args
        .scopes
        .iter()
        .flat_map(|scope| scope.split_whitespace())
        .collect::<Vec<_>>()
        .join(" ");
    let mut claims = serde_json::json!({
        "sub": args.sub,
        "aud": args.jwt_audience,
        "iat": now,
        "exp": now + args.ttl.as_secs(),
        "scope": scope,
    });
    if let Some(issuer) = args.jwt_issuer {
        claims["iss"] = issuer.into();
    }
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(args.jwt_secret.as_bytes()),
    )?;
    println!("{token}");
    Ok(())
}

fn client(args: &HostArgs) -> anyhow::Result<JsonClient> {
    JsonClient::new(&args.host, args.token.clone())
}

/// Fails with the host's own message unless `status` is a success.
fn check(status: u16, body: &serde_json::Value) -> anyhow::Result<()> {
    anyhow::ensure!(
        (200..300).contains(&status),
        "{status}: {}",
        client::error_message(body)
    );
    Ok(())
}

async fn list(args: HostArgs) -> anyhow::Result<()> {
    let (status, body) = client(&args)?
        .send(Method::GET, "/_admin/droplets", None)
        .await?;
    check(status, &body)?;
    println!(
        "{:<24} {:<20} {:<9} {:>9} {:>10} {:>8}",
        "NAME", "VERSION", "STATE", "BUDGET_MS", "REQUESTS", "ERRORS"
    );
    for droplet in body["droplets"].as_array().into_iter().flatten() {
        let requests: Vec<u64> = droplet["stats"]["requests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_u64)
            .collect();
        let total: u64 = requests.iter().sum();
        let errors: u64 = requests.iter().skip(3).sum();
        println!(
            "{:<24} {:<20} {:<9} {:>9} {:>10} {:>8}",
            droplet["name"].as_str().unwrap_or("?"),
            droplet["version"].as_str().unwrap_or("?"),
            droplet["state"].as_str().unwrap_or("?"),
            droplet["budget_ms"],
            total,
            errors
        );
    }
    Ok(())
}

async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    use base64::Engine;
    let module = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let manifest = match &args.manifest {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        ),
        None => None,
    };
    let body = serde_json::json!({
        "module": base64::engine::general_purpose::STANDARD.encode(module),
        "manifest": manifest,
    });
    let path = format!("/_admin/droplets/{}", args.name);
    let (status, body) = client(&args.host)?
        .send(Method::PUT, &path, Some(body))
        .await?;
    check(status, &body)?;
    let verb = if body["changed"] == true {
        "deployed"
    } else {
        "unchanged"
    };
    println!(
        "{} {verb}: version {}",
        args.name,
        body["version"].as_str().unwrap_or("?")
    );
    Ok(())
}

async fn rollback(args: NameArgs) -> anyhow::Result<()> {
    let path = format!("/_admin/droplets/{}/rollback", args.name);
    let (status, body) = client(&args.host)?.send(Method::POST, &path, None).await?;
    check(status, &body)?;
    println!(
        "{} rolled back: version {}",
        args.name,
        body["version"].as_str().unwrap_or("?")
    );
    Ok(())
}

async fn rm(args: RmArgs) -> anyhow::Result<()> {
    let query = if args.purge { "?purge=true" } else { "" };
    let path = format!("/_admin/droplets/{}{query}", args.name);
    let (status, body) = client(&args.host)?
        .send(Method::DELETE, &path, None)
        .await?;
    check(status, &body)?;
    let purged = if args.purge { " (kv data purged)" } else { "" };
    println!("{} removed{purged}", args.name);
    Ok(())
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
        lazy: args.lazy,
        watch: !args.no_watch,
        admin_max_body_bytes: args.admin_max_body_mb.saturating_mul(1 << 20),
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
        let metrics = droplet_host::prometheus::install()?;
        let app = App::start(&settings, Some(metrics)).await?;
        if production {
            app.check_production(&settings.jwt).map_err(|why| {
                anyhow::anyhow!("refusing to start with ENVIRONMENT=production: {why}")
            })?;
        }
        if let Some(registry) = registry {
            app.droplets
                .notify(droplet_host::registry::spawn(registry)?);
        }
        let listener = tokio::net::TcpListener::bind(settings.listen).await?;
        let addr = listener.local_addr()?;
        // Kept alive until the server stops: dropping it ends the watch.
        let _watcher = if settings.watch {
            Some(droplet_host::watch::spawn(
                Arc::clone(&app),
                settings.droplets_dir.clone(),
            )?)
        } else {
            None
        };
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
