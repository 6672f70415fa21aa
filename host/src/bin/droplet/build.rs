//! `droplet build`: compiles a droplet crate for `wasm32-wasip2`, checks
//! the component as the host will, and copies it (with its manifest) into
//! a droplets directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};

use droplet_host::droplets::name::{NAME_RULE, is_droplet_name};

use crate::scaffold::TARGET;

/// Builds the droplet crate at `path` and copies `{name}.wasm` (and its
/// manifest) into `droplets`. `check` runs the host's load checks on the
/// component and its manifest text (with the host's messages). Returns the
/// droplet's name.
pub fn build_droplet(
    path: &Path,
    droplets: &Path,
    check: impl Fn(&str, &[u8], Option<&str>) -> Result<(), String>,
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

    let target_dir = target_dir(path)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = Command::new(&cargo)
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(&manifest_path)
        .env("CARGO_TARGET_DIR", &target_dir)
        .status()
        .with_context(|| format!("cannot run {cargo}"))?;
    ensure!(status.success(), "cargo build failed for {name}");

    let artifact = target_dir
        .join(TARGET)
        .join("release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    let wasm = std::fs::read(&artifact)
        .with_context(|| format!("the build made no {}", artifact.display()))?;
    let manifest_file = path.join(format!("{name}.toml"));
    let manifest = match std::fs::read_to_string(&manifest_file) {
        Ok(text) => Some(text),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => {
            return Err(err).with_context(|| format!("cannot read {}", manifest_file.display()));
        }
    };
    // Refused here with the host's own words, rather than built and then
    // refused by the host in its log.
    check(&name, &wasm, manifest.as_deref())
        .map_err(|why| anyhow::anyhow!("the host would refuse {name}: {why}"))?;

    std::fs::create_dir_all(droplets)?;
    if let Some(manifest) = &manifest {
        droplet_host::storage::files::write_atomic(
            &droplets.join(format!("{name}.toml")),
            manifest.as_bytes(),
        )?;
    }
    droplet_host::storage::files::write_atomic(&droplets.join(format!("{name}.wasm")), &wasm)?;
    Ok(name)
}

/// Where the crate at `path` is built: `CARGO_TARGET_DIR` when set, the
/// crate's own `build.target-dir` when its `.cargo/config.toml` names one,
/// else one directory shared by every droplet crate of this user
/// (`$XDG_CACHE_HOME/droplet/target`, or `~/.cache/droplet/target`), so
/// that a second droplet reuses the dependencies the first compiled.
fn target_dir(path: &Path) -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let config = path.join(".cargo").join("config.toml");
    if let Ok(text) = std::fs::read_to_string(&config) {
        let parsed: toml::Table = text
            .parse()
            .with_context(|| format!("cannot parse {}", config.display()))?;
        if let Some(dir) = parsed
            .get("build")
            .and_then(|build| build.get("target-dir"))
            .and_then(toml::Value::as_str)
        {
            return Ok(path.join(dir));
        }
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")));
    Ok(match cache {
        Some(cache) => cache.join("droplet").join("target"),
        None => path.join("target"),
    })
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
