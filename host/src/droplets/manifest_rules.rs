//! What every part of a manifest is checked against: the limits, and
//! [`ManifestError`], which names the field. A leaf: [`super::manifest`]
//! and the tables it holds ([`super::rollout_settings`],
//! [`super::jobs_spec`]) all use it, and it uses none of them.

/// Default latency budget: the droplet contract's "other endpoints < 1000 ms".
pub const DEFAULT_BUDGET_MS: u64 = 1000;
/// Default linear-memory cap.
pub const DEFAULT_MEMORY_MB: u64 = 64;
/// Default request-body limit.
pub const DEFAULT_MAX_BODY_KB: u64 = 1024;
/// Default number of requests one droplet may run at once.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 100;
/// The longest budget a manifest may ask for.
pub const MAX_BUDGET_MS: u64 = 300_000;
/// Outbound requests one call may send when the manifest does not say.
pub const DEFAULT_MAX_OUTBOUND_REQUESTS: u32 = 16;
/// The most outbound requests a manifest may allow one call.
pub const MAX_OUTBOUND_REQUESTS: u32 = 1000;
/// The largest body limit a manifest may ask for (64 MiB).
pub const MAX_BODY_KB: u64 = 64 * 1024;

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not valid TOML, or a field of the wrong type, or an unknown field.
    #[error("{0}")]
    Parse(String),
    /// A field's value is out of range.
    #[error("`{field}` {problem}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// A `${VAR}` in `[config]` names an unset environment variable.
    #[error("config `{key}` names ${{{var}}}, which is not set in the host's environment")]
    MissingEnv {
        /// The config key.
        key: String,
        /// The variable.
        var: String,
    },
    /// A `${VAR}` in `[config]` names a variable droplets may not read.
    #[error("config `{key}` names ${{{var}}}, which droplets may not read: {rule}")]
    RefusedEnv {
        /// The config key.
        key: String,
        /// The variable.
        var: String,
        /// The rule it breaks.
        rule: String,
    },
}
