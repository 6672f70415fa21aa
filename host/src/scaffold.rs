//! The author's loop: `droplet new` scaffolds a droplet crate that builds as
//! is, and `droplet build` builds one for `wasm32-wasip2`, checks it is a
//! component of our world, and copies it into a droplets directory (where a
//! running host hot-swaps it).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};

use crate::router::{NAME_RULE, is_droplet_name};

/// The target droplets are built for.
pub const TARGET: &str = "wasm32-wasip2";

/// Where this build of `droplet` finds the SDK by default: the repository it
/// was built from.
pub fn default_sdk_path() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
    sdk.join("Cargo.toml")
        .exists()
        .then(|| sdk.canonicalize().unwrap_or(sdk))
}

/// Creates the crate for droplet `name` in `dir`, depending on the SDK at
/// `sdk`.
pub fn new_droplet(name: &str, dir: &Path, sdk: &Path) -> anyhow::Result<()> {
    ensure!(
        is_droplet_name(name),
        "`{name}` is not a valid droplet name: use {NAME_RULE}"
    );
    ensure!(!dir.exists(), "{} already exists", dir.display());
    ensure!(
        sdk.join("Cargo.toml").exists(),
        "no droplet SDK at {} (pass --sdk PATH to the repository's guest-sdk)",
        sdk.display()
    );
    let sdk = sdk.canonicalize()?;
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::create_dir_all(dir.join(".cargo"))?;
    let files = [
        ("Cargo.toml", cargo_toml(name, &sdk)),
        ("src/lib.rs", LIB_RS.to_string()),
        (&format!("{name}.toml"), MANIFEST.to_string()),
        (".cargo/config.toml", CARGO_CONFIG.to_string()),
        (".gitignore", "/target\n".to_string()),
        ("README.md", readme(name)),
    ];
    for (path, contents) in files {
        std::fs::write(dir.join(path), contents).with_context(|| format!("cannot write {path}"))?;
    }
    Ok(())
}

fn cargo_toml(name: &str, sdk: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
droplet-sdk = {{ path = "{sdk}" }}
serde_json = "1"

# A droplet is its own workspace, wherever it lives.
[workspace]

[profile.release]
codegen-units = 16
"#,
        sdk = sdk.display().to_string().replace('\\', "/")
    )
}

const LIB_RS: &str = r#"//! A droplet: answers every request in a fresh, isolated instance.

use droplet_sdk::{Request, Response, droplet, kv};

fn handle(req: Request) -> Response {
    // One kv call: a durable counter of visits, in this droplet's own namespace.
    let visits = match kv::increment("visits", 1) {
        Ok(visits) => visits,
        Err(err) => return Response::error(503, "kv_unavailable", &err.to_string()),
    };
    Response::json(&serde_json::json!({
        "hello": "world",
        "path": req.path(),
        "visits": visits,
    }))
}

droplet!(handle);
"#;

const MANIFEST: &str = r#"# The droplet's manifest: every field is optional.
budget_ms = 1000
memory_mb = 64
capabilities = ["kv"]
"#;

const CARGO_CONFIG: &str = r#"[build]
target = "wasm32-wasip2"
"#;

fn readme(name: &str) -> String {
    format!(
        "# {name}\n\nA droplet.\n\n```sh\ndroplet build              # builds for wasm32-wasip2 and copies {name}.wasm into ./droplets\n\
         droplet serve              # or let a running host pick it up\ncurl localhost:8080/{name}/\n```\n"
    )
}

/// Builds the droplet crate at `path` and copies `{name}.wasm` (and its
/// manifest) into `droplets`. `check` verifies the component against the
/// world. Returns the droplet's name.
pub fn build_droplet(
    path: &Path,
    droplets: &Path,
    check: impl Fn(&[u8]) -> Result<(), String>,
) -> anyhow::Result<String> {
    let manifest_path = path.join("Cargo.toml");
    let cargo_toml = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("{} is not a crate: no Cargo.toml", path.display()))?;
    let parsed: toml::Value = toml::from_str(&cargo_toml)
        .with_context(|| format!("cannot parse {}", manifest_path.display()))?;
    let name = parsed
        .get("package")
        .and_then(|package| package.get("name"))
        .and_then(toml::Value::as_str)
        .context("Cargo.toml has no [package] name")?
        .to_string();
    let depends = parsed
        .get("dependencies")
        .and_then(|deps| deps.get("droplet-sdk"))
        .is_some();
    let cdylib = parsed
        .get("lib")
        .and_then(|lib| lib.get("crate-type"))
        .and_then(toml::Value::as_array)
        .is_some_and(|types| types.iter().any(|kind| kind.as_str() == Some("cdylib")));
    ensure!(
        depends && cdylib,
        "{name} is not a droplet crate: it needs `droplet-sdk` in [dependencies] and crate-type = [\"cdylib\"] in [lib] (see `droplet new`)"
    );
    ensure!(
        is_droplet_name(&name),
        "the package name `{name}` is not a valid droplet name: use {NAME_RULE}"
    );
    ensure_target()?;

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = Command::new(&cargo)
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(&manifest_path)
        .status()
        .with_context(|| format!("cannot run {cargo}"))?;
    ensure!(status.success(), "cargo build failed for {name}");

    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| path.join("target"));
    let artifact = target_dir
        .join(TARGET)
        .join("release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    let wasm = std::fs::read(&artifact)
        .with_context(|| format!("the build made no {}", artifact.display()))?;
    check(&wasm).map_err(|why| anyhow::anyhow!("{name} is not a droplet component: {why}"))?;

    std::fs::create_dir_all(droplets)?;
    let manifest = path.join(format!("{name}.toml"));
    if manifest.exists() {
        crate::fs::write_atomic(
            &droplets.join(format!("{name}.toml")),
            &std::fs::read(&manifest)?,
        )?;
    }
    crate::fs::write_atomic(&droplets.join(format!("{name}.wasm")), &wasm)?;
    Ok(name)
}

/// Fails with the command to run when the wasm target is missing.
fn ensure_target() -> anyhow::Result<()> {
    let Ok(output) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        return Ok(()); // No rustup: let cargo say what is missing.
    };
    let installed = String::from_utf8_lossy(&output.stdout);
    if !installed.lines().any(|line| line.trim() == TARGET) {
        bail!("the {TARGET} target is not installed: run `rustup target add {TARGET}`");
    }
    Ok(())
}
