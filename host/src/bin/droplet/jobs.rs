//! `droplet queue list|dead|redrive` and `droplet schedule list`: a host's
//! queues and schedules, through its admin API.

use crate::remote::{HostArgs, call};

#[derive(clap::Subcommand)]
pub enum QueueCommand {
    /// Every queue: depth, oldest job, in flight, retrying, dead.
    List(JsonArgs),
    /// A queue's dead-letter list.
    Dead(QueueArgs),
    /// Makes a queue's dead jobs (or one, with --job) ready again.
    Redrive(RedriveArgs),
}

#[derive(clap::Subcommand)]
pub enum ScheduleCommand {
    /// Every schedule: its next instant and last run.
    List(JsonArgs),
}

#[derive(clap::Args)]
pub struct JsonArgs {
    /// Print the admin API's JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub host: HostArgs,
}

#[derive(clap::Args)]
pub struct QueueArgs {
    /// The queue.
    pub queue: String,
    /// Print the admin API's JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub host: HostArgs,
}

#[derive(clap::Args)]
pub struct RedriveArgs {
    /// The queue.
    pub queue: String,
    /// Only this dead job.
    #[arg(long)]
    pub job: Option<u64>,
    #[command(flatten)]
    pub host: HostArgs,
}

fn text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// `droplet queue …`.
pub async fn queue(command: QueueCommand) -> anyhow::Result<()> {
    match command {
        QueueCommand::List(args) => {
            let body = call(&args.host, http::Method::GET, "/_admin/queues", None).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&body)?);
                return Ok(());
            }
            println!(
                "{:<24} {:>7} {:>9} {:>8} {:>6} {:>10}  CONSUMERS",
                "QUEUE", "DEPTH", "IN_FLIGHT", "RETRYING", "DEAD", "OLDEST_MS"
            );
            for queue in body["queues"].as_array().into_iter().flatten() {
                let consumers: Vec<String> = queue["consumers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(text)
                    .collect();
                println!(
                    "{:<24} {:>7} {:>9} {:>8} {:>6} {:>10}  {}",
                    text(&queue["queue"]),
                    text(&queue["depth"]),
                    text(&queue["in_flight"]),
                    text(&queue["retrying"]),
                    text(&queue["dead"]),
                    text(&queue["oldest_age_ms"]),
                    consumers.join(",")
                );
            }
            Ok(())
        }
        QueueCommand::Dead(args) => {
            let path = format!("/_admin/queues/{}/dead", args.queue);
            let body = call(&args.host, http::Method::GET, &path, None).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&body)?);
                return Ok(());
            }
            println!("{:<10} {:>8}  {:<40} ERROR", "JOB", "ATTEMPTS", "PAYLOAD");
            for job in body["jobs"].as_array().into_iter().flatten() {
                let payload = job["payload"].as_str().map_or_else(
                    || "(binary)".to_string(),
                    |text| text.chars().take(40).collect(),
                );
                println!(
                    "{:<10} {:>8}  {:<40} {}",
                    text(&job["id"]),
                    text(&job["attempts"]),
                    payload,
                    text(&job["error"])
                );
            }
            Ok(())
        }
        QueueCommand::Redrive(args) => {
            let query = args
                .job
                .map_or_else(String::new, |job| format!("?job={job}"));
            let path = format!("/_admin/queues/{}/redrive{query}", args.queue);
            let body = call(&args.host, http::Method::POST, &path, None).await?;
            println!(
                "{} job(s) of {} ready again",
                text(&body["redriven"]),
                args.queue
            );
            Ok(())
        }
    }
}

/// `droplet schedule …`.
pub async fn schedule(command: ScheduleCommand) -> anyhow::Result<()> {
    let ScheduleCommand::List(args) = command;
    let body = call(&args.host, http::Method::GET, "/_admin/schedules", None).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    println!(
        "{:<16} {:<16} {:<16} {:<21} {:<25} {:>6}",
        "DROPLET", "SCHEDULE", "CRON", "NEXT", "LAST", "STATUS"
    );
    for schedule in body["schedules"].as_array().into_iter().flatten() {
        let last = &schedule["last"];
        println!(
            "{:<16} {:<16} {:<16} {:<21} {:<25} {:>6}",
            text(&schedule["droplet"]),
            text(&schedule["name"]),
            text(&schedule["cron"]),
            text(&schedule["next_at"]),
            text(&last["instant"]),
            text(&last["status"])
        );
    }
    Ok(())
}
