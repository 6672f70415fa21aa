//! One published version of a droplet, and whether it can serve.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{OnceCell, Semaphore};

use tokio::time::Instant;

use super::loader::{Parsed, Ready};
use super::rollout::window::VersionCounters;
use super::stats::DropletStats;
use super::version::VersionId;
use crate::capabilities::outbound::Chain;
use crate::capabilities::recording::Tape;
use crate::capabilities::{CallContext, Grants};
use crate::droplets::manifest::Manifest;
use crate::identity::policy::Caller;

/// One published version of a droplet.
pub struct Droplet {
    /// Its name, as routed.
    pub name: Arc<str>,
    /// Its manifest (the defaults when the manifest failed to parse).
    pub manifest: Manifest,
    /// What it is running, as shown in `x-droplet-version`.
    pub version: VersionId,
    /// Ready to serve, waiting to be compiled, or why it cannot serve.
    pub state: DropletState,
    /// What its manifest grants each capability, prepared at load.
    pub grants: Grants,
    /// Slots for concurrent calls (`max_concurrency`) of this version.
    pub slots: Arc<Semaphore>,
    /// Counters of this droplet, shared by all its versions.
    pub stats: Arc<DropletStats>,
    /// When this version was published (or loaded at start-up).
    pub published_at: SystemTime,
    /// Counters of this version alone, which a rollout judges.
    pub counters: VersionCounters,
}

/// Whether a droplet version can serve.
pub enum DropletState {
    /// Compiled and linked.
    Ready(Arc<Ready>),
    /// Registered but not compiled yet (`--lazy`): compiled by the first
    /// request, which the others wait for
    /// ([`Droplets::ready`](super::Droplets::ready)).
    Pending(Pending),
    /// Failed to load; the reason is shown to callers and logged.
    Failed(String),
}

/// A version to compile on first use.
#[derive(Default)]
pub struct Pending {
    /// Set by the first request's compilation.
    pub(super) compiled: OnceCell<Result<Arc<Ready>, String>>,
}

impl Droplet {
    /// Version `version` of droplet `name`, counted in `stats`.
    pub fn new(
        name: &str,
        version: VersionId,
        parsed: Parsed,
        state: DropletState,
        stats: Arc<DropletStats>,
    ) -> Self {
        Self {
            name: name.into(),
            slots: Arc::new(Semaphore::new(parsed.manifest.max_concurrency as usize)),
            manifest: parsed.manifest,
            version,
            state,
            grants: parsed.grants,
            stats,
            published_at: SystemTime::now(),
            counters: VersionCounters::default(),
        }
    }

    /// What a call of this version is, for the capabilities to build their
    /// per-call state from.
    pub fn call_context<'a>(
        &'a self,
        trace_id: &'a Arc<str>,
        caller: Caller,
        deadline: Instant,
        chain: Chain,
        tape: Option<Tape>,
    ) -> CallContext<'a> {
        CallContext {
            droplet: &self.name,
            version: self.version.shared(),
            trace_id,
            caller,
            deadline,
            chain,
            tape,
        }
    }

    /// The one health verdict of this version, which `/{name}/health`,
    /// `/{name}/state` and the admin API all show: `active` when it serves,
    /// `inactive` when registered but not compiled yet, `error` (with why)
    /// when it failed to load or most of its recent calls trapped or
    /// overran.
    pub fn health(&self) -> (&'static str, Option<String>) {
        match (self.load_error(), self.state_name()) {
            (Some(reason), _) => ("error", Some(reason.clone())),
            (None, "active") if self.stats.failing() => (
                "error",
                Some("most of its recent calls trapped or overran their budget".to_string()),
            ),
            (None, word) => (word, None),
        }
    }

    /// Its compiled form, once it has one (at load, or compiled since).
    pub fn compiled(&self) -> Option<&Arc<Ready>> {
        match &self.state {
            DropletState::Ready(ready) => Some(ready),
            DropletState::Pending(pending) => pending.compiled.get()?.as_ref().ok(),
            DropletState::Failed(_) => None,
        }
    }

    /// Why it cannot serve, once that is known (at load, or by its
    /// compilation since).
    pub fn load_error(&self) -> Option<&String> {
        match &self.state {
            DropletState::Failed(reason) => Some(reason),
            DropletState::Pending(pending) => pending.compiled.get()?.as_ref().err(),
            DropletState::Ready(_) => None,
        }
    }

    /// `active`, `inactive` (not compiled yet) or `error` (cannot serve),
    /// from its load state alone.
    pub fn state_name(&self) -> &'static str {
        match &self.state {
            DropletState::Ready(_) => "active",
            DropletState::Pending(pending) => match pending.compiled.get() {
                Some(Ok(_)) => "active",
                Some(Err(_)) => "error",
                None => "inactive",
            },
            DropletState::Failed(_) => "error",
        }
    }
}

/// Told how eager loading at start-up goes, so that a terminal can show it
/// (the CLI draws a progress bar). Every method may be called from several
/// threads at once.
pub trait LoadProgress: Sync {
    /// `total` droplets are about to compile.
    fn started(&self, total: usize);
    /// One more has compiled (or failed).
    fn loaded(&self);
    /// All have.
    fn finished(&self);
}

/// No progress shown.
impl LoadProgress for () {
    fn started(&self, _total: usize) {}
    fn loaded(&self) {}
    fn finished(&self) {}
}
