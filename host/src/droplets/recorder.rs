//! [`Recorder`]: which calls are recorded, and the writer that keeps them
//! off the request path. A call is taped when its droplet's mode (its
//! manifest's `record`, else the host's `--record`) could keep it; once it
//! is over, the tape is kept or dropped ([`Recorder::keep`]) and a kept one
//! is queued to the writer, which serializes it and hands it to the
//! [`RecordingStore`] — never the request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use super::manifest::{Manifest, RecordMode};
use crate::capabilities::recording::{Recording, Tape};
use crate::ops::shutdown::Shutdown;
use crate::storage::recordings::{Bounds, RecordingStore, RecordingSummary};

/// Recordings waiting for the writer; past this, new ones are dropped and
/// counted (`droplet_recordings_dropped_total`).
const QUEUE: usize = 64;

/// The host's recording settings.
#[derive(Debug, Clone, Copy)]
pub struct RecordSettings {
    /// The mode of droplets whose manifest names none.
    pub mode: RecordMode,
    /// The most one recording may hold, in bytes: calls past it are not
    /// kept, and the recording says it was cut.
    pub max_bytes: usize,
    /// What each droplet keeps.
    pub bounds: Bounds,
}

impl Default for RecordSettings {
    fn default() -> Self {
        Self {
            mode: RecordMode::Errors,
            max_bytes: 1 << 20,
            bounds: Bounds {
                count: 100,
                bytes: 64 << 20,
            },
        }
    }
}

/// Why a taped call may be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The request asked, with an admin token.
    Requested,
    /// The mode records every call.
    All,
    /// It is the one in N of `sampled:N`.
    Sampled,
    /// Kept only if it fails.
    Error,
}

impl Reason {
    /// Its name in the recording.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Requested => "requested",
            Reason::All => "all",
            Reason::Sampled => "sampled",
            Reason::Error => "error",
        }
    }
}

/// Decides what is taped and kept; writes what is kept.
pub struct Recorder {
    settings: RecordSettings,
    store: Arc<dyn RecordingStore>,
    calls: AtomicU64,
    queue: mpsc::Sender<Recording>,
    /// The second a dropped recording was last warned about.
    warned: AtomicU64,
}

impl Recorder {
    /// The recorder, its writer running under `shutdown`.
    pub fn start(
        settings: RecordSettings,
        store: Arc<dyn RecordingStore>,
        shutdown: &Shutdown,
    ) -> Arc<Self> {
        let (queue, pending) = mpsc::channel(QUEUE);
        shutdown.spawn_until_triggered(write(pending, Arc::clone(&store), settings.bounds));
        Arc::new(Self {
            settings,
            store,
            calls: AtomicU64::new(0),
            queue,
            warned: AtomicU64::new(0),
        })
    }

    /// Where recordings are kept.
    pub fn store(&self) -> &Arc<dyn RecordingStore> {
        &self.store
    }

    /// A tape for a call of a droplet with `manifest`, and why it may be
    /// kept; `None` when it will not be.
    pub fn tape(&self, manifest: &Manifest, requested: bool) -> Option<(Tape, Reason)> {
        let reason = match (requested, manifest.record.unwrap_or(self.settings.mode)) {
            (true, _) => Reason::Requested,
            (false, RecordMode::Off) => return None,
            (false, RecordMode::All) => Reason::All,
            (false, RecordMode::Errors) => Reason::Error,
            (false, RecordMode::Sampled(n)) => {
                if self
                    .calls
                    .fetch_add(1, Ordering::Relaxed)
                    .is_multiple_of(u64::from(n))
                {
                    Reason::Sampled
                } else {
                    Reason::Error
                }
            }
        };
        Some((Tape::new(self.settings.max_bytes), reason))
    }

    /// Queues `recording` for the writer if `reason` or its failure keeps
    /// it; never waits.
    pub fn keep(&self, reason: Reason, failed: bool, recording: impl FnOnce(&str) -> Recording) {
        let reason = match (reason, failed) {
            (Reason::Error, false) => return,
            (reason, _) => reason,
        };
        let recording = recording(reason.as_str());
        let droplet = recording.droplet.clone();
        match self.queue.try_send(recording) {
            Ok(()) => {
                metrics::counter!("droplet_recordings_total", "droplet" => droplet, "reason" => reason.as_str())
                    .increment(1);
            }
            Err(_) => {
                metrics::counter!("droplet_recordings_dropped_total").increment(1);
                // One line a second at most, however many are dropped.
                let now = super::rollout::plan::now_ms() / 1000;
                if self.warned.swap(now, Ordering::Relaxed) != now {
                    tracing::warn!(droplet = %droplet, "recordings are being dropped: the writer is behind (droplet_recordings_dropped_total counts them)");
                }
            }
        }
    }
}

/// The writer: serializes each queued recording and keeps it.
async fn write(
    mut pending: mpsc::Receiver<Recording>,
    store: Arc<dyn RecordingStore>,
    bounds: Bounds,
) {
    while let Some(recording) = pending.recv().await {
        let document = match serde_json::to_vec(&recording) {
            Ok(document) => document,
            Err(err) => {
                tracing::error!(error = %err, "a recording could not be serialized");
                continue;
            }
        };
        let summary = RecordingSummary {
            trace_id: recording.trace_id,
            droplet: recording.droplet,
            version: recording.version,
            caller: recording.caller,
            recorded_at_ms: recording.recorded_at_ms,
            status: recording.outcome.status(),
            reason: recording.reason,
            host: recording.host,
            bytes: document.len() as u64,
        };
        if let Err(err) = store.put(&summary, &document, bounds).await {
            tracing::warn!(droplet = %summary.droplet, trace_id = %summary.trace_id, error = %err, "a recording was not kept");
        }
    }
}
