//! The commands that talk to a running host through its admin API:
//! `droplet list`, `deploy`, `rollback` and `rm`.

use std::path::PathBuf;

use anyhow::Context;
use droplet_host::client::{self, JsonClient};
use http::Method;

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
    /// Its manifest (`.toml`).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    #[command(flatten)]
    pub host: HostArgs,
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

/// `droplet list`.
pub async fn list(args: HostArgs) -> anyhow::Result<()> {
    let (status, body) = client(&args)?
        .send(Method::GET, "/_admin/droplets", None)
        .await?;
    check(status, &body)?;
    let header = [
        "NAME",
        "VERSION",
        "STATE",
        "BUDGET_MS",
        "REQUESTS",
        "ERRORS",
    ]
    .map(String::from);
    let mut rows = vec![header];
    for droplet in body["droplets"].as_array().into_iter().flatten() {
        let requests: Vec<u64> = droplet["stats"]["requests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_u64)
            .collect();
        let total: u64 = requests.iter().sum();
        let errors: u64 = requests.iter().skip(3).sum();
        let text = |key: &str| droplet[key].as_str().unwrap_or("?").to_string();
        rows.push([
            text("name"),
            text("version"),
            text("state"),
            droplet["budget_ms"].to_string(),
            total.to_string(),
            errors.to_string(),
        ]);
    }
    print!("{}", table(&rows));
    Ok(())
}

/// Rows as aligned columns, each as wide as its widest cell: text columns
/// to the left, the three numeric ones to the right.
fn table(rows: &[[String; 6]]) -> String {
    let widths: [usize; 6] =
        std::array::from_fn(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0));
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(column, (cell, width))| {
                if column < 3 {
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

/// `droplet rollback`.
pub async fn rollback(args: NameArgs) -> anyhow::Result<()> {
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

/// `droplet rm`.
pub async fn rm(args: RmArgs) -> anyhow::Result<()> {
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
