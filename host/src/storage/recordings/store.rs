//! [`RecordingStore`]: the trait both backends implement, what a listing
//! shows of a recording, and the bounds each droplet's recordings are
//! kept within.

use serde::{Deserialize, Serialize};

/// What a listing shows of one recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecordingSummary {
    /// The request's trace id.
    pub trace_id: String,
    /// The droplet called.
    pub droplet: String,
    /// The version that ran.
    pub version: String,
    /// The droplet that called it in process, if one did.
    pub caller: Option<String>,
    /// When the call ended, in milliseconds since the Unix epoch.
    pub recorded_at_ms: u64,
    /// The status the client got.
    pub status: u16,
    /// Why it was kept: `error`, `sampled`, `all` or `requested`.
    pub reason: String,
    /// The host that ran it.
    pub host: String,
    /// The document's size in bytes.
    pub bytes: u64,
}

/// How many recordings, and how many bytes of them, each droplet keeps;
/// past either, the oldest are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Recordings per droplet.
    pub count: u64,
    /// Bytes of recordings per droplet.
    pub bytes: u64,
}

/// The store could not be read or written; the string says why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("recordings are unavailable: {0}")]
pub struct RecordingsUnavailable(pub String);

/// Where recordings are kept.
#[async_trait::async_trait]
pub trait RecordingStore: Send + Sync {
    /// Keeps `document`, replacing one of the same trace id and droplet,
    /// then drops the droplet's oldest past `bounds`.
    async fn put(
        &self,
        summary: &RecordingSummary,
        document: &[u8],
        bounds: Bounds,
    ) -> Result<(), RecordingsUnavailable>;

    /// The newest recordings, of `droplet` or of every droplet, at most
    /// `limit`.
    async fn list(
        &self,
        droplet: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RecordingSummary>, RecordingsUnavailable>;

    /// The recording of `trace_id`: `droplet`'s, or, when the trace's
    /// request reached several droplets, the one the request from outside
    /// reached first.
    async fn get(
        &self,
        trace_id: &str,
        droplet: Option<&str>,
    ) -> Result<Option<(RecordingSummary, Vec<u8>)>, RecordingsUnavailable>;
}

/// Of several recordings of one trace, the call from outside (no caller),
/// else the first recorded.
pub fn outermost(mut found: Vec<RecordingSummary>) -> Option<RecordingSummary> {
    found.sort_by_key(|summary| (summary.caller.is_some(), summary.recorded_at_ms));
    found.into_iter().next()
}
