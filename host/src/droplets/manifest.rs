//! The droplet manifest: `{name}.toml` beside `{name}.wasm`.
//!
//! Every field is optional and has a default; an unknown field is an error,
//! never silently ignored, so a typo cannot quietly weaken a limit.

use std::collections::BTreeMap;

use serde::Deserialize;

pub use super::jobs_spec::{Backoff, CatchUp, ConsumeSpec, ScheduleSpec};
pub use super::manifest_rules::{
    DEFAULT_BUDGET_MS, DEFAULT_MAX_BODY_KB, DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_OUTBOUND_REQUESTS,
    DEFAULT_MEMORY_MB, MAX_BODY_KB, MAX_BUDGET_MS, MAX_OUTBOUND_REQUESTS, ManifestError,
};
pub use super::record_mode::RecordMode;
pub use super::rollout_settings::{MAX_MIN_REQUESTS, MAX_STEP_SECONDS, MAX_STEPS, RolloutSettings};

/// Whether a droplet needs a verified bearer token.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum AuthPolicy {
    /// A token is optional; when present and valid its claims are available.
    #[default]
    Public,
    /// A valid bearer token is required.
    Jwt,
}

impl AuthPolicy {
    /// The policy as written in a manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthPolicy::Public => "public",
            AuthPolicy::Jwt => "jwt",
        }
    }
}

/// A parsed, validated manifest (shown by the admin API as parsed, with
/// `${VAR}` references in `config` left unexpanded).
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Wall-clock budget for one call, in milliseconds.
    #[serde(default = "default_budget_ms")]
    pub budget_ms: u64,
    /// Cap on the droplet's linear memory, in MiB.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    /// Largest request body accepted, in KiB.
    #[serde(default = "default_max_body_kb")]
    pub max_body_kb: u64,
    /// Requests this droplet may run at once.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: u32,
    /// Whether callers must present a valid JWT.
    #[serde(default)]
    pub auth: AuthPolicy,
    /// Scopes a caller's token must all carry.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Hand the caller's raw `Authorization` header to the droplet. Off by
    /// default: the host verifies the token and the droplet gets its claims
    /// (`auth::caller()`), so a droplet cannot replay a caller's token
    /// elsewhere unless its operator opts in.
    #[serde(default)]
    pub forward_authorization: bool,
    /// What the droplet may import, when given: of `kv`, `log`, `config`,
    /// `auth` (and `http`, which `allowed_outbound_hosts` grants anyway);
    /// other words only describe it (reported by `/capabilities`). Absent:
    /// `kv`, `log`, `config` and `auth`.
    #[serde(default)]
    pub capabilities: Option<Vec<String>>,
    /// The droplet's id as the registry knows it (defaults to its name).
    #[serde(default)]
    pub id: Option<String>,
    /// Cap on the droplet's key-value data, in MiB.
    #[serde(default)]
    pub kv_quota_mb: Option<u64>,
    /// Values the droplet reads with `config::get`; `${VAR}` names a host
    /// environment variable.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Where outbound HTTP may go: `scheme://host[:port]`, `*.` wildcards
    /// for subdomains. Empty: nowhere.
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// Outbound requests one call may send.
    #[serde(default = "default_max_outbound_requests")]
    pub max_outbound_requests: u32,
    /// How a canary deploy of this version is judged (`[rollout]`);
    /// what is left out takes the documented default.
    #[serde(default)]
    pub rollout: RolloutSettings,
    /// Which of its calls are recorded for replay; `None`: the host's
    /// `--record`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub record: Option<RecordMode>,
    /// Calls at each instant of a cron expression (`[[schedule]]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule: Vec<ScheduleSpec>,
    /// Queues this droplet consumes (`[[consume]]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consume: Vec<ConsumeSpec>,
    /// The queues it may send jobs to (the `queue` capability).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub send_queues: Vec<String>,
}

fn default_budget_ms() -> u64 {
    DEFAULT_BUDGET_MS
}
fn default_memory_mb() -> u64 {
    DEFAULT_MEMORY_MB
}
fn default_max_body_kb() -> u64 {
    DEFAULT_MAX_BODY_KB
}
fn default_max_concurrency() -> u32 {
    DEFAULT_MAX_CONCURRENCY
}
fn default_max_outbound_requests() -> u32 {
    DEFAULT_MAX_OUTBOUND_REQUESTS
}

impl Default for Manifest {
    fn default() -> Self {
        Self {
            budget_ms: DEFAULT_BUDGET_MS,
            memory_mb: DEFAULT_MEMORY_MB,
            max_body_kb: DEFAULT_MAX_BODY_KB,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            auth: AuthPolicy::Public,
            scopes: Vec::new(),
            forward_authorization: false,
            capabilities: None,
            id: None,
            kv_quota_mb: None,
            config: BTreeMap::new(),
            allowed_outbound_hosts: Vec::new(),
            max_outbound_requests: DEFAULT_MAX_OUTBOUND_REQUESTS,
            rollout: RolloutSettings::default(),
            record: None,
            schedule: Vec::new(),
            consume: Vec::new(),
            send_queues: Vec::new(),
        }
    }
}

impl Manifest {
    /// Parses and validates manifest text. `max_memory_mb` is the host's
    /// ceiling for `memory_mb`.
    pub fn parse(text: &str, max_memory_mb: u64) -> Result<Self, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|err| {
            // toml's message spans lines and quotes the source; keep it, on one line.
            ManifestError::Parse(err.message().trim().replace('\n', " "))
        })?;
        manifest.validate(max_memory_mb)?;
        Ok(manifest)
    }

    fn validate(&self, max_memory_mb: u64) -> Result<(), ManifestError> {
        let invalid = |field, problem: String| Err(ManifestError::Invalid { field, problem });
        if self.budget_ms == 0 || self.budget_ms > MAX_BUDGET_MS {
            return invalid(
                "budget_ms",
                format!("must be between 1 and {MAX_BUDGET_MS}"),
            );
        }
        if self.memory_mb == 0 || self.memory_mb > max_memory_mb {
            return invalid(
                "memory_mb",
                format!("must be between 1 and this host's maximum of {max_memory_mb}"),
            );
        }
        if self.max_body_kb > MAX_BODY_KB {
            return invalid("max_body_kb", format!("must be at most {MAX_BODY_KB}"));
        }
        if self.max_outbound_requests > MAX_OUTBOUND_REQUESTS {
            return invalid(
                "max_outbound_requests",
                format!("must be at most {MAX_OUTBOUND_REQUESTS}"),
            );
        }
        if self.max_concurrency == 0 {
            return invalid("max_concurrency", "must be at least 1".to_string());
        }
        self.rollout.validate()?;
        super::jobs_spec::validate(&self.schedule, &self.consume, &self.send_queues)?;
        if self.auth == AuthPolicy::Public && !self.scopes.is_empty() {
            return invalid(
                "scopes",
                "needs `auth = \"jwt\"`: a public droplet cannot require scopes".to_string(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_manifest_gives_defaults() {
        assert_eq!(Manifest::parse("", 256).unwrap(), Manifest::default());
    }

    #[test]
    fn unknown_field_is_named() {
        let err = Manifest::parse("budget_ms = 50\nbudgett = 3\n", 256).unwrap_err();
        assert!(err.to_string().contains("unknown field `budgett`"), "{err}");
    }

    #[test]
    fn out_of_range_values_are_refused() {
        assert!(Manifest::parse("budget_ms = 0", 256).is_err());
        assert!(Manifest::parse("memory_mb = 512", 256).is_err());
        assert!(Manifest::parse("max_concurrency = 0", 256).is_err());
        assert!(Manifest::parse("scopes = [\"a\"]", 256).is_err());
        assert!(Manifest::parse("auth = \"jwt\"\nscopes = [\"a\"]", 256).is_ok());
        assert!(Manifest::parse("auth = \"maybe\"", 256).is_err());
    }

    #[test]
    fn rollout_thresholds_are_checked_and_named() {
        let ok = Manifest::parse("[rollout]\nsteps = [10, 50]\nmin_requests = 20", 256).unwrap();
        assert_eq!(ok.rollout.steps, Some(vec![10, 50]));
        for (text, field) in [
            ("steps = [50, 25]", "rollout.steps"),
            ("steps = [5, 100]", "rollout.steps"),
            ("steps = []", "rollout.steps"),
            ("step_seconds = 0", "rollout.step_seconds"),
            ("min_requests = 0", "rollout.min_requests"),
            ("max_error_rate = 101.0", "rollout.max_error_rate"),
            ("max_error_rate = -1.0", "rollout.max_error_rate"),
            ("max_p95_ratio = 0.5", "rollout.max_p95_ratio"),
        ] {
            let err = Manifest::parse(&format!("[rollout]\n{text}"), 256).unwrap_err();
            assert!(err.to_string().contains(field), "{text}: {err}");
        }
        let over = RolloutSettings {
            min_requests: Some(7),
            ..RolloutSettings::default()
        };
        let merged = ok.rollout.overridden_by(&over);
        assert_eq!(
            (merged.steps, merged.min_requests),
            (Some(vec![10, 50]), Some(7))
        );
    }
}
