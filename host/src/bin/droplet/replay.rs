//! Record and replay from the command line: `droplet replay TRACE_ID|FILE
//! [--wasm FILE]` runs a recorded call again, locally, with every import
//! answered from the recording, and says whether it answered the same;
//! `droplet recording list|get` reads recordings from a host.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use droplet_host::capabilities::recording::{Outcome, Recording};
use droplet_host::guest::replay::{Replayed, Replayer};

use crate::failure::{Failure, code};
use crate::remote::{HostArgs, call, fetch};

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// A trace id (its recording is fetched from the host), or a recording
    /// saved with `droplet recording get -o FILE`.
    pub recording: String,
    /// Run this build instead of the version that ran (a fixed one): where
    /// its import calls differ from the recording, the first difference is
    /// named and the replay stops there.
    #[arg(long)]
    pub wasm: Option<PathBuf>,
    /// Which droplet's recording, when the request reached several
    /// [default: the one it reached first].
    #[arg(long)]
    pub droplet: Option<String>,
    /// Print {"recorded", "replayed", "identical", "divergence"} as JSON.
    #[arg(long)]
    pub json: bool,
    /// Refused: a replay never reaches live kv, network or clocks.
    #[arg(long)]
    pub continue_live: bool,
    /// The guest's budget [default: the recorded call's].
    #[arg(long)]
    pub budget_ms: Option<u64>,
    #[command(flatten)]
    pub host: HostArgs,
}

#[derive(clap::Subcommand)]
pub enum RecordingCommand {
    /// The newest recordings on a host.
    List(ListArgs),
    /// One recording, as JSON (`-o FILE` saves it, for `droplet replay FILE`).
    Get(GetArgs),
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// Only this droplet's.
    #[arg(long)]
    pub droplet: Option<String>,
    /// Print the admin API's JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub host: HostArgs,
}

#[derive(clap::Args)]
pub struct GetArgs {
    /// The request's trace id.
    pub trace_id: String,
    /// Which droplet's, when the request reached several.
    #[arg(long)]
    pub droplet: Option<String>,
    /// Write it to this file instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub host: HostArgs,
}

fn recording_path(trace_id: &str, droplet: Option<&str>) -> String {
    let query = droplet.map_or_else(String::new, |droplet| format!("?droplet={droplet}"));
    format!("/_admin/recordings/{trace_id}{query}")
}

/// `droplet recording …`.
pub async fn recording(command: RecordingCommand) -> anyhow::Result<()> {
    match command {
        RecordingCommand::List(args) => {
            let query = args
                .droplet
                .as_deref()
                .map_or_else(String::new, |droplet| format!("?droplet={droplet}"));
            let body = call(
                &args.host,
                http::Method::GET,
                &format!("/_admin/recordings{query}"),
                None,
            )
            .await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&body)?);
                return Ok(());
            }
            println!(
                "{:<34} {:<12} {:>6} {:<10} {:>9}  VERSION",
                "TRACE_ID", "DROPLET", "STATUS", "REASON", "BYTES"
            );
            for recording in body["recordings"].as_array().into_iter().flatten() {
                let text = |key: &str| recording[key].as_str().unwrap_or("").to_string();
                println!(
                    "{:<34} {:<12} {:>6} {:<10} {:>9}  {}",
                    text("trace_id"),
                    text("droplet"),
                    recording["status"],
                    text("reason"),
                    recording["bytes"],
                    text("version")
                );
            }
            Ok(())
        }
        RecordingCommand::Get(args) => {
            let document = fetch(
                &args.host,
                &recording_path(&args.trace_id, args.droplet.as_deref()),
            )
            .await?;
            match &args.output {
                Some(path) => std::fs::write(path, &document)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => println!("{}", String::from_utf8_lossy(&document)),
            }
            Ok(())
        }
    }
}

/// `droplet replay`.
pub async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    if args.continue_live {
        return Err(Failure::new(
            code::GENERAL,
            "--continue-live is refused: a replay answers every import from the recording and never reaches live kv, network or clocks",
            "replay shows where a build departs from what happened; to see what it does live, deploy it (`droplet deploy --canary`)",
        )
        .into());
    }
    let from_file = std::path::Path::new(&args.recording).is_file();
    let document = if from_file {
        std::fs::read(&args.recording).with_context(|| format!("cannot read {}", args.recording))?
    } else {
        fetch(
            &args.host,
            &recording_path(&args.recording, args.droplet.as_deref()),
        )
        .await?
        .to_vec()
    };
    let recording = Recording::parse(&document).map_err(|err| {
        Failure::new(
            code::GENERAL,
            err.to_string(),
            "save a recording with `droplet recording get TRACE_ID -o FILE`",
        )
    })?;
    let (module, ran) = match &args.wasm {
        Some(path) => (
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
            path.display().to_string(),
        ),
        None => {
            let path = format!(
                "/_admin/droplets/{}/versions/{}/module",
                recording.droplet, recording.version
            );
            (
                fetch(&args.host, &path).await?.to_vec(),
                format!("version {}", recording.version),
            )
        }
    };
    // The guest's lines, as it writes them.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter("droplet::guest=trace")
        .without_time()
        .with_target(false)
        .try_init();
    let replayer = Replayer::new()?;
    let pre = replayer.prepare(&module).map_err(|err| {
        Failure::new(
            code::REFUSED,
            err.to_string(),
            "give a droplet built for wasm32-wasip2",
        )
    })?;
    let budget = Duration::from_millis(args.budget_ms.unwrap_or(recording.budget_ms));
    let replayed = replayer.replay(&pre, &recording, budget).await;
    let identical = replayed.outcome == recording.outcome && replayed.divergence.is_none();
    if args.json {
        let report = serde_json::json!({
            "trace_id": recording.trace_id,
            "droplet": recording.droplet,
            "version": recording.version,
            "module": ran,
            "recorded": view(&recording.outcome),
            "replayed": view(&replayed.outcome),
            "identical": identical,
            "divergence": replayed.divergence,
            "progress": replayed.progress,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", describe(&recording, &replayed, &ran, identical));
    }
    if identical {
        Ok(())
    } else {
        Err(Failure::new(
            code::REPLAY_DIFFERS,
            "the replayed call did not answer as the recorded one",
            "the comparison above says where they differ",
        )
        .into())
    }
}

/// An outcome as the report shows it (the body as text).
fn view(outcome: &Outcome) -> serde_json::Value {
    match outcome {
        Outcome::Response {
            status,
            headers,
            body,
        } => serde_json::json!({
            "status": status,
            "headers": headers,
            "body": String::from_utf8_lossy(&body.0),
        }),
        Outcome::Failure {
            status,
            code,
            message,
        } => serde_json::json!({
            "status": status,
            "code": code,
            "message": message,
        }),
    }
}

fn line(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Response { status, body, .. } => {
            let text = String::from_utf8_lossy(&body.0);
            let cut: String = text.chars().take(400).collect();
            format!("{status} {cut}")
        }
        Outcome::Failure {
            status,
            code,
            message,
        } => format!("{status} {code}: {message}"),
    }
}

fn describe(recording: &Recording, replayed: &Replayed, ran: &str, identical: bool) -> String {
    let mut out = format!(
        "{} trace {} — recorded on {} ({}), replayed with {ran}\n",
        recording.droplet, recording.trace_id, recording.host, recording.version
    );
    out.push_str(&format!("  recorded  {}\n", line(&recording.outcome)));
    out.push_str(&format!("  replayed  {}\n", line(&replayed.outcome)));
    if let Some(divergence) = &replayed.divergence {
        out.push_str(&format!("  diverged  {}\n", divergence.message));
    }
    let progress = &replayed.progress;
    out.push_str(&format!(
        "  {} import calls replayed, {} recorded calls not made\n",
        progress.calls_replayed, progress.calls_left
    ));
    out.push_str(if identical {
        "  identical\n"
    } else {
        "  different\n"
    });
    out
}
