//! The admin API's request and response bodies: what the handlers build and
//! what the OpenAPI document describes, from the same types.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::rollout_schema::HistoryEntry;
use crate::droplets::fleet::HostServing;
use crate::droplets::manifest::{AuthPolicy, Manifest, RolloutSettings};
use crate::droplets::stats::{Latency, StatsSnapshot};

/// `PUT /_admin/droplets/{name}`: a module, a manifest, or both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    /// The component, base64 (standard alphabet, padded). Left out, the
    /// current module is kept and only the manifest changes.
    pub module: Option<String>,
    /// The manifest's TOML text. Left out, the current version's manifest
    /// is kept (a new droplet gets the defaults); `""` is the defaults.
    pub manifest: Option<String>,
    /// Deploy as a canary beside the current version, judged and promoted
    /// or rolled back by the host; each field given overrides the
    /// manifest's `[rollout]` (`{}`: the manifest's, else the defaults).
    pub canary: Option<RolloutSettings>,
}

/// One droplet as the list shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DropletSummary {
    /// Its name.
    pub name: String,
    /// The version it serves (`{seq}-{hash12}`).
    pub version: String,
    /// `active`, `inactive` (registered, not compiled yet) or `error`.
    pub state: &'static str,
    /// Why it is in `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When this version was published, Unix seconds.
    pub published_at: u64,
    /// Wall-clock budget of one call, ms.
    pub budget_ms: u64,
    /// Memory cap, MiB.
    pub memory_mb: u64,
    /// Calls it may run at once.
    pub max_concurrency: u32,
    /// Whether callers need a token.
    pub auth: AuthPolicy,
    /// Scopes a caller's token must carry.
    pub scopes: Vec<String>,
    /// Its counters since the host started.
    pub stats: StatsSnapshot,
    /// In fleet mode: how far its current version has spread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetState>,
}

/// In fleet mode, a droplet's spread over the fleet.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct FleetState {
    /// The version every host should serve.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Live hosts serving it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serving: Option<u64>,
    /// Live hosts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<u64>,
    /// `"{version} on {serving}/{hosts} hosts"`, or why it is not known.
    pub summary: String,
    /// Every live host's version (detail only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_hosts: Option<Vec<HostServing>>,
    /// Why the fleet's state could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /_admin/droplets`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DropletList {
    /// Every droplet, by name.
    pub droplets: Vec<DropletSummary>,
}

/// `GET /_admin/droplets/{name}`: the summary, its manifest and versions.
#[derive(Debug, Serialize, ToSchema)]
pub struct DropletDetail {
    /// What the list shows.
    #[serde(flatten)]
    pub summary: DropletSummary,
    /// Stored versions, newest first (rollback goes to the next one).
    pub versions: Vec<String>,
    /// The same versions with what happened to each: current, or how its
    /// rollout ended.
    pub history: Vec<HistoryEntry>,
    /// The manifest's `capabilities`, when it has one.
    pub capabilities: Option<Vec<String>>,
    /// What it may import, as enforced.
    pub granted: Vec<String>,
    /// The interfaces its component imports (once compiled).
    pub imports: Option<Vec<String>>,
    /// `droplet` or `wasi:http/proxy` (once compiled).
    pub world: Option<String>,
    /// The manifest as parsed.
    pub manifest: Manifest,
    /// Latency over its last calls.
    pub latency: Latency,
}

/// `PUT /_admin/droplets/{name}`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deployed {
    /// The droplet.
    pub name: String,
    /// The version now serving.
    pub version: String,
    /// False when the same module and manifest were already serving.
    pub changed: bool,
    /// Which manifest the version has: `given` (in the request), `kept`
    /// (the previous version's, none being given) or `default` (a new
    /// droplet deployed without one).
    pub manifest: String,
}

/// `DELETE /_admin/droplets/{name}`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Removed {
    /// The droplet removed.
    pub removed: String,
    /// Whether its kv data was deleted too.
    pub purged: bool,
}

/// `POST /_admin/droplets/{name}/rollback`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct RolledBack {
    /// The droplet.
    pub name: String,
    /// The version serving again.
    pub version: String,
}

/// The host's one error body, on every failure.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code (`unauthorized`, `droplet_not_found`, ...).
    pub code: String,
    /// What happened, for people.
    pub message: String,
    /// The request's trace id.
    pub trace_id: String,
}

/// `GET /_admin/overview`: the dashboard's table, one page of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Overview {
    /// This host.
    pub host: HostOverview,
    /// Droplets matching the filter.
    pub total: usize,
    /// Rows skipped.
    pub offset: usize,
    /// This page, sorted as asked.
    pub droplets: Vec<DropletRow>,
}

/// The host line of the overview.
#[derive(Debug, Serialize, ToSchema)]
pub struct HostOverview {
    /// Droplets loaded.
    pub droplets: usize,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Requests per second over the last 10 s, all droplets.
    pub requests_per_s: f64,
    /// Calls running now, all droplets.
    pub in_flight: i64,
    /// In fleet mode: live hosts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet_hosts: Option<u64>,
}

/// One droplet's row in the overview.
#[derive(Debug, Serialize, ToSchema)]
pub struct DropletRow {
    /// Its name.
    pub name: String,
    /// The version it serves.
    pub version: String,
    /// Health verdict: `active`, `inactive` or `error`.
    pub state: &'static str,
    /// Why it is in `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// In fleet mode: `"{version} on {serving}/{hosts} hosts"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<String>,
    /// Requests per second over the last 10 s.
    pub requests_per_s: f64,
    /// Median latency of its last calls, ms.
    pub p50_ms: f64,
    /// 99th percentile latency of its last calls, ms.
    pub p99_ms: f64,
    /// Share of the last minute's responses that were 5xx, percent.
    pub error_pct: f64,
    /// Requests answered since start.
    pub requests: u64,
    /// Calls that overran their budget (504) since start.
    pub budget_overruns: u64,
    /// Calls that trapped since start.
    pub traps: u64,
    /// Calls running now.
    pub in_flight: i64,
    /// Its kv namespace (read at most every few seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv: Option<KvUsage>,
    /// Requests/s and p99 over the last minutes, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series: Option<Series>,
}

/// A droplet's kv usage.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct KvUsage {
    /// Live keys.
    pub keys: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
}

/// Per-interval traffic, oldest first; the last point is the last full
/// second's interval.
#[derive(Debug, Serialize, ToSchema)]
pub struct Series {
    /// Seconds per point.
    pub step_s: u32,
    /// Unix time (s) at the end of the last point.
    pub end_unix_s: u64,
    /// Requests per second in each interval.
    pub requests_per_s: Vec<f64>,
    /// 5xx responses per second in each interval.
    pub errors_per_s: Vec<f64>,
    /// The worst per-second p99 latency in each interval, ms.
    pub p99_ms: Vec<f64>,
}
