//! [`Recording`]: the document a recorded call is kept as, fetched
//! through the admin API, saved with `droplet recording get` and replayed
//! with `droplet replay`. Its `format` names the version of this layout;
//! a reader refuses one it does not know.

use serde::{Deserialize, Serialize};

use super::entry::Blob;
use super::tape::Reel;

/// This layout's name and version.
pub const FORMAT: &str = "droplet-recording/1";

/// Request headers never kept: the caller's credentials.
pub const UNRECORDED_HEADERS: [&str; 2] = ["authorization", "proxy-authorization"];

/// One recorded droplet call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    /// [`FORMAT`].
    pub format: String,
    /// The request's trace id (an in-process call shares its caller's).
    pub trace_id: String,
    /// The droplet called.
    pub droplet: String,
    /// The version that ran: its module is the one to replay.
    pub version: String,
    /// When the call ended, in milliseconds since the Unix epoch.
    pub recorded_at_ms: u64,
    /// The host that ran it.
    pub host: String,
    /// The world the module served: `fp:droplet/droplet` or
    /// `wasi:http/proxy`.
    #[serde(default = "droplet_world")]
    pub world: String,
    /// Why it was kept: `error`, `sampled`, `all` or `requested`.
    pub reason: String,
    /// The call's budget, in milliseconds.
    pub budget_ms: u64,
    /// The droplet that called it in process, if one did.
    #[serde(default)]
    pub caller: Option<String>,
    /// The request as the guest saw it.
    pub request: RecordedRequest,
    /// The caller's verified claims (their JSON), if it had a valid token.
    pub claims: Option<serde_json::Value>,
    /// Import calls, sources and logs, in order.
    #[serde(flatten)]
    pub reel: Reel,
    /// How the call ended.
    pub outcome: Outcome,
}

/// The request handed to the guest, after the host's header filtering,
/// without its credentials ([`UNRECORDED_HEADERS`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// For a `wasi:http` component: the request URI's authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Upper case.
    pub method: String,
    /// Inside the droplet.
    pub path: String,
    /// Without the `?`.
    pub query: String,
    /// Names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The whole body (for a `wasi:http` component, as far as it read
    /// it).
    pub body: Blob,
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The droplet answered.
    Response {
        /// Its status.
        status: u16,
        /// Its headers, as it set them.
        headers: Vec<(String, String)>,
        /// Its body.
        body: Blob,
    },
    /// The host answered for it: a trap, an overrun, an invalid response.
    Failure {
        /// The status the client got.
        status: u16,
        /// The error's code (`droplet_trap`, `budget_exceeded`…).
        code: String,
        /// The error's message.
        message: String,
    },
}

impl Outcome {
    /// The status the client got.
    pub fn status(&self) -> u16 {
        match self {
            Outcome::Response { status, .. } | Outcome::Failure { status, .. } => *status,
        }
    }
}

fn droplet_world() -> String {
    "fp:droplet/droplet".to_string()
}

/// Why a document is not a recording this host can read.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Not JSON of this layout.
    #[error("not a droplet recording: {0}")]
    Invalid(String),
    /// A layout this host does not know.
    #[error("a recording in format `{0}`, which this droplet does not read (it reads {FORMAT})")]
    Unknown(String),
}

impl Recording {
    /// Parses a recording, refusing an unknown format.
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        #[derive(Deserialize)]
        struct Head {
            format: String,
        }
        let head: Head =
            serde_json::from_slice(bytes).map_err(|err| FormatError::Invalid(err.to_string()))?;
        if head.format != FORMAT {
            return Err(FormatError::Unknown(head.format));
        }
        serde_json::from_slice(bytes).map_err(|err| FormatError::Invalid(err.to_string()))
    }
}
