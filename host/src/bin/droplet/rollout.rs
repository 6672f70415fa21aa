//! Canary deploys from the command line: `droplet deploy --canary` (its
//! flags) and `droplet rollout status|promote|abort`.

use http::Method;

use crate::remote::{HostArgs, call};

/// `droplet deploy --canary` and the thresholds that override the
/// manifest's `[rollout]`.
#[derive(clap::Args)]
pub struct CanaryArgs {
    /// Deploy beside the current version as a canary: the host gives it a
    /// growing share of requests, judges it against the current version,
    /// and promotes it or rolls it back by itself.
    #[arg(long)]
    pub canary: bool,
    /// The canary's share at each step, percent, rising [default: 5,25,50].
    #[arg(long, requires = "canary", value_delimiter = ',')]
    pub steps: Option<Vec<u8>>,
    /// The least time a step lasts, seconds [default: 30].
    #[arg(long, requires = "canary")]
    pub step_seconds: Option<u64>,
    /// Canary requests a step needs before it is judged [default: 100].
    #[arg(long, requires = "canary")]
    pub min_requests: Option<u64>,
    /// How far the canary's error rate may exceed the current version's,
    /// percentage points [default: 5].
    #[arg(long, requires = "canary")]
    pub max_error_rate: Option<f64>,
    /// How many times the current version's p95 latency the canary's may
    /// be [default: 1.5].
    #[arg(long, requires = "canary")]
    pub max_p95_ratio: Option<f64>,
    /// A canary p95 under this many ms is never judged slow [default: 50].
    #[arg(long, requires = "canary")]
    pub p95_floor_ms: Option<u64>,
}

impl CanaryArgs {
    /// The deploy body's `canary` field: `None` for a plain deploy.
    pub fn body(&self) -> Option<serde_json::Value> {
        self.canary.then(|| {
            let mut over = serde_json::Map::new();
            let mut set = |key: &str, value: serde_json::Value| {
                if !value.is_null() {
                    over.insert(key.to_string(), value);
                }
            };
            set("steps", serde_json::json!(self.steps));
            set("step_seconds", serde_json::json!(self.step_seconds));
            set("min_requests", serde_json::json!(self.min_requests));
            set("max_error_rate", serde_json::json!(self.max_error_rate));
            set("max_p95_ratio", serde_json::json!(self.max_p95_ratio));
            set("p95_floor_ms", serde_json::json!(self.p95_floor_ms));
            serde_json::Value::Object(over)
        })
    }
}

#[derive(clap::Subcommand)]
pub enum RolloutCommand {
    /// The step, both versions' figures and every decision of a droplet's
    /// newest rollout.
    Status(StatusArgs),
    /// Make the canary the current version now.
    Promote(crate::remote::NameArgs),
    /// End the rollout now: every request goes to the current version.
    Abort(crate::remote::NameArgs),
}

#[derive(clap::Args)]
pub struct StatusArgs {
    /// The droplet.
    pub name: String,
    /// Print the admin API's JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub host: HostArgs,
}

/// `droplet rollout …`.
pub async fn rollout(command: RolloutCommand) -> anyhow::Result<()> {
    let (args, verb) = match command {
        RolloutCommand::Status(args) => {
            let path = format!("/_admin/droplets/{}/rollout", args.name);
            let body = call(&args.host, Method::GET, &path, None).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&body)?);
            } else {
                print!("{}", describe(&body));
            }
            return Ok(());
        }
        RolloutCommand::Promote(args) => (args, "promote"),
        RolloutCommand::Abort(args) => (args, "abort"),
    };
    let path = format!("/_admin/droplets/{}/rollout/{verb}", args.name);
    let body = call(&args.host, Method::POST, &path, None).await?;
    print!("{}", describe(&body));
    Ok(())
}

/// A rollout's status as lines of text.
pub fn describe(rollout: &serde_json::Value) -> String {
    let text = |value: &serde_json::Value| value.as_str().unwrap_or("?").to_string();
    let mut out = format!(
        "{}: {} — canary {} at {} % beside {}\n",
        text(&rollout["name"]),
        text(&rollout["state"]),
        text(&rollout["canary"]),
        rollout["share"],
        text(&rollout["stable"]),
    );
    if let Some(reason) = rollout["reason"].as_str() {
        out.push_str(&format!("  why: {reason}\n"));
    }
    for side in ["canary", "stable"] {
        let figures = &rollout["figures"][side];
        if figures.is_object() {
            out.push_str(&format!(
                "  {side:<6}  {} requests, {} errors ({} %), p95 {} ms\n",
                figures["requests"], figures["errors"], figures["error_rate"], figures["p95_ms"]
            ));
        }
    }
    for decision in rollout["decisions"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<9} {:>3} % -> {:>3} %  by {}: {}\n",
            text(&decision["action"]),
            decision["from_share"].as_u64().unwrap_or(0),
            decision["to_share"].as_u64().unwrap_or(0),
            text(&decision["by"]),
            text(&decision["reason"]),
        ));
    }
    out
}
