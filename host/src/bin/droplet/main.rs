//! `droplet`: the command line of the droplet host. Each command's flags and
//! work live in their own module: [`serve`], [`remote`] (admin API
//! commands), [`author`] (`new`, `build`, `token`).

mod author;
mod build;
mod failure;
mod jobs;
mod progress;
mod remote;
mod replay;
mod rollout;
mod scaffold;
mod serve;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use droplet_host::guest::host_memory::Counted;
use droplet_host::ops::child_env::NO_DOTENV;

/// mimalloc: every request allocates and frees hundreds of small blocks
/// (headers, the guest's request and response records, wasmtime's per-store
/// tables) across threads; glibc's malloc spent over a tenth of the host's
/// CPU in them (profile in bench/README.md). Wrapped in the counter that
/// holds each call to the host memory it may make the host hold
/// ([`droplet_host::guest::host_memory`]).
#[global_allocator]
static ALLOCATOR: Counted<mimalloc::MiMalloc> = Counted(mimalloc::MiMalloc);

/// Serve many WebAssembly droplets from one process.
#[derive(Parser)]
#[command(name = "droplet", version, about)]
struct Cli {
    /// On an error, also print where it happened (a backtrace).
    #[arg(long, global = true)]
    backtrace: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every droplet in a directory over HTTP.
    Serve(Box<serve::ServeArgs>),
    /// Mint an HS256 token from JWT_SECRET, for development.
    Token(author::TokenArgs),
    /// List the droplets of a host.
    List(remote::HostArgs),
    /// Deploy a module (and optionally a manifest) to a host.
    Deploy(remote::DeployArgs),
    /// Serve the previous version of a droplet again.
    Rollback(remote::NameArgs),
    /// Follow or end a canary rollout (`droplet deploy --canary` starts one).
    #[command(subcommand)]
    Rollout(rollout::RolloutCommand),
    /// Remove a droplet from a host.
    Rm(remote::RmArgs),
    /// Run a recorded call again, locally, and compare its answer.
    Replay(Box<replay::ReplayArgs>),
    /// List or fetch a host's recorded calls.
    #[command(subcommand)]
    Recording(replay::RecordingCommand),
    /// A host's queues: list, dead letters, re-drive.
    #[command(subcommand)]
    Queue(jobs::QueueCommand),
    /// A host's schedules: next and last runs.
    #[command(subcommand)]
    Schedule(jobs::ScheduleCommand),
    /// Create a new droplet crate.
    New(author::NewArgs),
    /// Build a droplet crate and copy it into a droplets directory.
    Build(author::BuildArgs),
}

fn main() -> ExitCode {
    // Read before clap (which reads `.env`'s values through the
    // environment), so that a bad `.env` fails as every error does.
    let backtrace = std::env::args_os().any(|arg| arg == "--backtrace");
    if backtrace {
        // SAFETY: the process has one thread yet: nothing reads the
        // environment concurrently.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "1") };
    }
    let dotenv = match load_dotenv() {
        Ok(dotenv) => dotenv,
        Err(err) => return failure::report(&err, backtrace),
    };
    let cli = match command()
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches))
    {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    match run(cli, dotenv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => failure::report(&err, backtrace),
    }
}

/// The command line, with environment variables named in `--help` but
/// never their values (clap would print `[env: DROPLET_DIR=]` for one
/// that is unset, and a secret's value for one that is set).
fn command() -> clap::Command {
    fn hide_values(command: clap::Command) -> clap::Command {
        let command = command.mut_args(|arg| arg.hide_env_values(true));
        let names: Vec<String> = command
            .get_subcommands()
            .map(|sub| sub.get_name().to_string())
            .collect();
        names.into_iter().fold(command, |command, name| {
            command.mut_subcommand(name, hide_values)
        })
    }
    hide_values(Cli::command())
}

fn run(cli: Cli, dotenv: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::serve(*args, dotenv),
        Command::Token(args) => author::token(args),
        Command::List(args) => remote(remote::list(args)),
        Command::Deploy(args) => remote(remote::deploy(args)),
        Command::Rollback(args) => remote(remote::rollback(args)),
        Command::Rollout(command) => remote(rollout::rollout(command)),
        Command::Rm(args) => remote(remote::rm(args)),
        Command::Replay(args) => remote(replay::replay(*args)),
        Command::Recording(command) => remote(replay::recording(command)),
        Command::Queue(command) => remote(jobs::queue(command)),
        Command::Schedule(command) => remote(jobs::schedule(command)),
        Command::New(args) => author::new(args),
        Command::Build(args) => author::build(args),
    }
}

/// Reads `.env` from the working directory — only there, never from a
/// parent directory — unless [`NO_DOTENV`] is set. It comes first, so its
/// values reach clap's `env` lookups; variables already set win over it. A
/// missing file is fine, a malformed one is not. The file read, if any.
fn load_dotenv() -> anyhow::Result<Option<std::path::PathBuf>> {
    let disabled =
        std::env::var(NO_DOTENV).is_ok_and(|value| !matches!(value.trim(), "" | "0" | "false"));
    if disabled {
        return Ok(None);
    }
    match dotenvy::from_path(".env") {
        Ok(()) => Ok(Some(
            std::env::current_dir().map_or_else(|_| ".env".into(), |dir| dir.join(".env")),
        )),
        Err(err) if err.not_found() => Ok(None),
        Err(err) => anyhow::bail!("cannot read .env: {err}"),
    }
}

/// Runs a command that talks to a host.
fn remote(command: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(command)
}
