//! The commands that talk to a running host through its admin API:
//! `droplet list`, `deploy`, `rollback` and `rm` (`rollout` is in
//! `rollout.rs`).

use std::path::PathBuf;

use anyhow::Context;
use droplet_host::ops::json_client::{self as client, ClientError, JsonClient};
use http::Method;

use crate::failure::{Failure, code};

#[derive(clap::Args)]
pub struct HostArgs {
    /// The host's URL.
    #[arg(long, env = "DROPLET_HOST", default_value = "http://127.0.0.1:8080")]
    pub host: String,
    /// A bearer token with scope droplets:admin (see `droplet token`).
    #[arg(long, env = "DROPLET_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(clap::Args)]
pub struct NameArgs {
    /// The droplet.
    pub name: String,
    #[command(flatten)]
    pub host: HostArgs,
}

#[derive(clap::Args)]
pub struct RmArgs {
    /// The droplet.
    pub name: String,
    /// Also delete its key-value data.
    #[arg(long)]
    pub purge: bool,
    #[command(flatten)]
    pub host: HostArgs,
}

#[derive(clap::Args)]
pub struct DeployArgs {
    /// The droplet's name.
    pub name: String,
    /// The module (`.wasm`).
    pub file: PathBuf,
    /// Its manifest (`.toml`). Left out, the current version's manifest
    /// is kept (a new droplet gets the defaults).
    #[arg(long, conflicts_with = "default_manifest")]
    pub manifest: Option<PathBuf>,
    /// Replace the current manifest with the defaults.
    #[arg(long)]
    pub default_manifest: bool,
    /// On a fleet, return at once instead of waiting until every live host
    /// serves the new version.
    #[arg(long)]
    pub no_wait: bool,
    /// On a fleet, how long to wait for every live host to serve it.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub wait_timeout: std::time::Duration,
    #[command(flatten)]
    pub canary: crate::rollout::CanaryArgs,
    #[command(flatten)]
    pub host: HostArgs,
}

/// Sends one admin API request to the host `args` names; its JSON answer,
/// or a [`Failure`] saying what went wrong and what to do.
pub(crate) async fn call(
    args: &HostArgs,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let bytes = exchange(args, method, path, body).await?;
    Ok(serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
    }))
}

/// Fetches `path` from the admin API of the host `args` names: the
/// answer's bytes as they came (a module, a recording).
pub(crate) async fn fetch(args: &HostArgs, path: &str) -> anyhow::Result<bytes::Bytes> {
    exchange(args, Method::GET, path, None).await
}

async fn exchange(
    args: &HostArgs,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<bytes::Bytes> {
    let client = JsonClient::new(&args.host, args.token.clone()).map_err(|err| {
        Failure::new(
            code::GENERAL,
            err.to_string(),
            "give --host (or DROPLET_HOST) as http://HOST:PORT",
        )
    })?;
    let (status, bytes) = client
        .send_raw(method, path, body)
        .await
        .map_err(|err| match err {
            ClientError::Unreachable { why, .. } => Failure::unreachable(&args.host, why),
            other => Failure::unreachable(&args.host, other),
        })?;
    if !(200..300).contains(&status) {
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
        });
        return Err(Failure::from_host(&args.host, status, &client::error_message(&body)).into());
    }
    Ok(bytes)
}

/// `droplet list`.
pub async fn list(args: HostArgs) -> anyhow::Result<()> {
    let body = call(&args, Method::GET, "/_admin/droplets", None).await?;
    let droplets = body["droplets"].as_array().cloned().unwrap_or_default();
    // In fleet mode every droplet says how far its version has spread.
    let fleet = droplets
        .iter()
        .any(|droplet| droplet.get("fleet").is_some());
    let mut header = vec!["NAME", "VERSION", "STATE"];
    if fleet {
        header.push("FLEET");
    }
    header.extend(["BUDGET_MS", "REQUESTS", "ERRORS"]);
    let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
    for droplet in &droplets {
        let requests: Vec<u64> = droplet["stats"]["requests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_u64)
            .collect();
        let total: u64 = requests.iter().sum();
        let errors: u64 = requests.iter().skip(3).sum();
        let text = |key: &str| droplet[key].as_str().unwrap_or("?").to_string();
        let mut row = vec![text("name"), text("version"), text("state")];
        if fleet {
            row.push(
                droplet["fleet"]["summary"]
                    .as_str()
                    .unwrap_or("-")
                    .to_string(),
            );
        }
        row.extend([
            droplet["budget_ms"].to_string(),
            total.to_string(),
            errors.to_string(),
        ]);
        rows.push(row);
    }
    print!("{}", table(&rows));
    Ok(())
}

/// Rows as aligned columns, each as wide as its widest cell: text columns
/// to the left, the last three (numeric) ones to the right.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths.iter().copied())
            .enumerate()
            .map(|(column, (cell, width))| {
                if column + 3 < columns {
                    format!("{cell:<width$}")
                } else {
                    format!("{cell:>width$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `droplet deploy`.
pub async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    use base64::Engine;
    let module = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let manifest = match &args.manifest {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        ),
        None if args.default_manifest => Some(String::new()),
        None => None,
    };
    let mut body = serde_json::json!({
        "module": base64::engine::general_purpose::STANDARD.encode(module),
        "manifest": manifest,
    });
    if let Some(canary) = args.canary.body() {
        body["canary"] = canary;
    }
    let path = format!("/_admin/droplets/{}", args.name);
    let body = call(&args.host, Method::PUT, &path, Some(body)).await?;
    if args.canary.canary {
        print!("{}", crate::rollout::describe(&body));
        println!(
            "follow it with `droplet rollout status {}`; end it by hand with `droplet rollout promote|abort {}`",
            args.name, args.name
        );
        return Ok(());
    }
    let verb = if body["changed"] == true {
        "deployed"
    } else {
        "unchanged"
    };
    let manifest = match body["manifest"].as_str() {
        Some("kept") => "the current version's manifest, kept".to_string(),
        Some("default") => "the default manifest".to_string(),
        _ => match &args.manifest {
            Some(path) => format!("manifest {}", path.display()),
            None => "the default manifest".to_string(),
        },
    };
    let version = body["version"].as_str().unwrap_or("?").to_string();
    println!("{} {verb}: version {version} ({manifest})", args.name);
    if args.no_wait {
        return Ok(());
    }
    wait_for_hosts(&args.host, &args.name, &version, args.wait_timeout).await
}

/// On a fleet, waits until every live host serves `version` of `name`,
/// printing each change of the count; on a single host, says it serves it.
async fn wait_for_hosts(
    host: &HostArgs,
    name: &str,
    version: &str,
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    let path = format!("/_admin/droplets/{name}");
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = None;
    loop {
        let detail = call(host, Method::GET, &path, None).await?;
        let Some(fleet) = detail.get("fleet") else {
            println!("served by this host");
            return Ok(());
        };
        let counts = (fleet["version"].as_str() == Some(version))
            .then(|| Some((fleet["serving"].as_u64()?, fleet["hosts"].as_u64()?)))
            .flatten();
        if let Some((serving, hosts)) = counts {
            if last != Some((serving, hosts)) {
                println!("served by {serving}/{hosts} hosts");
                last = Some((serving, hosts));
            }
            if serving >= hosts {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            let (serving, hosts) = last.unwrap_or((0, 0));
            return Err(Failure::new(
                code::UNAVAILABLE,
                format!(
                    "after {}, {serving}/{hosts} hosts serve {name} {version}",
                    humantime::format_duration(timeout)
                ),
                format!(
                    "`droplet list --host {}` shows each host's version; a host that cannot serve it says why in its log",
                    host.host
                ),
            )
            .into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// `droplet rollback`.
pub async fn rollback(args: NameArgs) -> anyhow::Result<()> {
    let path = format!("/_admin/droplets/{}/rollback", args.name);
    let body = call(&args.host, Method::POST, &path, None).await?;
    println!(
        "{} rolled back: version {}",
        args.name,
        body["version"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// `droplet rm`.
pub async fn rm(args: RmArgs) -> anyhow::Result<()> {
    let query = if args.purge { "?purge=true" } else { "" };
    let path = format!("/_admin/droplets/{}{query}", args.name);
    call(&args.host, Method::DELETE, &path, None).await?;
    let purged = if args.purge { " (kv data purged)" } else { "" };
    println!("{} removed{purged}", args.name);
    Ok(())
}
