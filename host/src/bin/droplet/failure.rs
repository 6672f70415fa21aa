//! How the CLI fails: one line saying what happened, one saying what to
//! do, and an exit code a script can test (documented in the README). A
//! backtrace only with `--backtrace`.

use std::process::ExitCode;

/// Exit codes, as the README documents them.
pub mod code {
    /// Anything not below (a bad flag is clap's 2).
    pub const GENERAL: u8 = 1;
    /// The host refused the token: missing, invalid or without the scope.
    pub const AUTH: u8 = 3;
    /// No such droplet.
    pub const NOT_FOUND: u8 = 4;
    /// The host refused what was sent (a module or manifest that does not
    /// load, a body over its limit).
    pub const REFUSED: u8 = 5;
    /// The host is busy or its store is away: retrying may work.
    pub const UNAVAILABLE: u8 = 6;
    /// The host could not be reached.
    pub const UNREACHABLE: u8 = 7;
    /// `droplet replay`: the replayed call did not answer as recorded.
    pub const REPLAY_DIFFERS: u8 = 8;
}

/// A failure with what to do about it.
#[derive(Debug)]
pub struct Failure {
    /// What happened.
    pub what: String,
    /// What to do.
    pub how: String,
    /// The exit code.
    pub code: u8,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

impl std::error::Error for Failure {}

impl Failure {
    /// A failure of `code`.
    pub fn new(code: u8, what: impl Into<String>, how: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            how: how.into(),
            code,
        }
    }

    /// The host answered `status` with `message` to a command sent to `host`.
    pub fn from_host(host: &str, status: u16, message: &str) -> Self {
        let what = format!("the host answered {status}: {message}");
        let (code, how) = match status {
            401 => (
                code::AUTH,
                "pass an admin token with --token or DROPLET_TOKEN (for development: `droplet token --scope droplets:admin` with the host's JWT_SECRET)".to_string(),
            ),
            403 if message.contains("disabled") || message.contains("no keys") => (
                code::AUTH,
                "configure the host's keys (JWT_SECRET for development, REGISTRY_PUBLIC_KEY or JWKS_PATH) and restart it".to_string(),
            ),
            403 => (
                code::AUTH,
                "use a token with the droplets:admin scope (`droplet token --scope droplets:admin`)".to_string(),
            ),
            404 => (
                code::NOT_FOUND,
                format!("check the name with `droplet list --host {host}`"),
            ),
            400 | 413 | 422 => (
                code::REFUSED,
                "fix what the host names above, then run the command again".to_string(),
            ),
            503 => (
                code::UNAVAILABLE,
                "the host is busy or its deployment store is away: retry shortly".to_string(),
            ),
            _ => (
                code::GENERAL,
                "the host's log has the details under the response's trace id".to_string(),
            ),
        };
        Self { what, how, code }
    }

    /// The host at `host` could not be reached.
    pub fn unreachable(host: &str, why: impl std::fmt::Display) -> Self {
        Self::new(
            code::UNREACHABLE,
            format!("cannot reach the host at {host}: {why}"),
            "is `droplet serve` running there? Point --host (or DROPLET_HOST) at it",
        )
    }
}

/// Prints `err` as the CLI's failure and returns its exit code.
pub fn report(err: &anyhow::Error, backtrace: bool) -> ExitCode {
    let (what, how, code) = match err.downcast_ref::<Failure>() {
        Some(failure) => (failure.what.clone(), failure.how.clone(), failure.code),
        None => (
            format!("{err:#}"),
            "`droplet help COMMAND` shows the command's flags; --backtrace shows where it failed"
                .to_string(),
            code::GENERAL,
        ),
    };
    // One line each, whatever the messages hold.
    let line = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    eprintln!("error: {}", line(&what));
    eprintln!("  hint: {}", line(&how));
    if backtrace {
        eprintln!("{err:?}");
    }
    ExitCode::from(code)
}
