//! The author's commands: `droplet new`, `droplet build` and
//! `droplet token` (development tokens).

use std::path::PathBuf;

use crate::scaffold;
use crate::serve::DEFAULT_MAX_MEMORY_MB;
use droplet_host::capabilities;
use droplet_host::capabilities::outbound::allow::Allowlist;
use droplet_host::droplets::loader::LoadError;
use droplet_host::droplets::manifest::{Manifest, ManifestError};
use droplet_host::guest::runtime::{Linked, Runtime, RuntimeSettings};
use droplet_host::identity::jwt;

#[derive(clap::Args)]
pub struct NewArgs {
    /// The droplet's name.
    pub name: String,
    /// Where to create it [default: ./NAME].
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// Depend on this SDK checkout (the repository's `guest-sdk`) by path,
    /// instead of the SDK this binary carries, vendored into the crate.
    #[arg(long)]
    pub sdk: Option<PathBuf>,
    /// What to start from: `api` (a router, kv and config), `static` (a
    /// static site) or `proxy` (forwards to an upstream).
    #[arg(long, value_enum, default_value_t)]
    pub template: scaffold::Template,
}

#[derive(clap::Args)]
pub struct BuildArgs {
    /// The droplet crate.
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Where to copy the built droplet (a running host watches it).
    #[arg(long = "droplets", env = "DROPLET_DIR", default_value = "droplets")]
    pub droplets_dir: PathBuf,
}

#[derive(clap::Args)]
pub struct TokenArgs {
    /// Scopes to grant (repeat, or separate with spaces).
    #[arg(long = "scope", required = true)]
    pub scopes: Vec<String>,
    /// The token's subject.
    #[arg(long, default_value = "developer")]
    pub sub: String,
    /// How long the token is valid (e.g. 30m, 1h, 7d).
    #[arg(long, default_value = "1h")]
    pub ttl: humantime::Duration,
    /// HS256 secret.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
    /// Audience.
    #[arg(long, env = "JWT_AUDIENCE", default_value = jwt::DEFAULT_AUDIENCE)]
    pub jwt_audience: String,
    /// Issuer, if the host requires one.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
}

/// `droplet new`.
pub fn new(args: NewArgs) -> anyhow::Result<()> {
    let dir = args.path.unwrap_or_else(|| PathBuf::from(&args.name));
    scaffold::new_droplet(&args.name, &dir, args.sdk.as_deref(), args.template)?;
    println!("created droplet {} in {}", args.name, dir.display());
    println!(
        "next: droplet build {} --droplets DIR   (DIR: the droplets directory your host watches, e.g. ./droplets)",
        dir.display()
    );
    Ok(())
}

/// `droplet build`.
pub fn build(args: BuildArgs) -> anyhow::Result<()> {
    // Checks the component against the world with a small runtime of its own.
    let runtime = Runtime::new(&RuntimeSettings {
        max_instances: 1,
        max_memory_mb: 64,
        keep_resident_bytes: None,
        warm_slots: None,
        max_held_bytes: 1 << 30,
    })?;
    // The checks the host runs when it loads a version, with the host's
    // own messages: the manifest, the imports against its grants, the
    // world.
    let check = |name: &str, wasm: &[u8], manifest: Option<&str>| -> Result<(), String> {
        let invalid = |cause| LoadError::Manifest {
            name: name.to_string(),
            cause,
        };
        let manifest = match manifest {
            Some(text) => Manifest::parse(text, DEFAULT_MAX_MEMORY_MB)
                .map_err(|cause| invalid(cause).to_string())?,
            None => Manifest::default(),
        };
        Allowlist::parse(&manifest.allowed_outbound_hosts).map_err(|problem| {
            invalid(ManifestError::Invalid {
                field: "allowed_outbound_hosts",
                problem,
            })
            .to_string()
        })?;
        let component =
            wasmtime::component::Component::new(runtime.engine(), wasm).map_err(|err| {
                LoadError::NotAComponent {
                    name: name.to_string(),
                    reason: format!("{err:#}"),
                }
                .to_string()
            })?;
        let imports: Vec<String> = component
            .component_type()
            .imports(runtime.engine())
            .map(|(import, _)| import.to_string())
            .collect();
        let linked = runtime.link(&component).map_err(|cause| {
            LoadError::Link {
                name: name.to_string(),
                cause,
            }
            .to_string()
        })?;
        let standard = matches!(linked, Linked::Proxy(_));
        capabilities::check_imports(&manifest, &imports, standard).map_err(|reason| {
            LoadError::NotGranted {
                name: name.to_string(),
                reason,
            }
            .to_string()
        })
    };
    let name = crate::build::build_droplet(&args.path, &args.droplets_dir, check)?;
    println!(
        "built {name}: {}",
        args.droplets_dir.join(format!("{name}.wasm")).display()
    );
    Ok(())
}

/// `droplet token`.
pub fn token(args: TokenArgs) -> anyhow::Result<()> {
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
