//! The droplet manifest: `{name}.toml` beside `{name}.wasm`.
//!
//! Every field is optional and has a default; an unknown field is an error,
//! never silently ignored, so a typo cannot quietly weaken a limit.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::capabilities::outbound::allow::Allowlist;

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
/// The most outbound requests a manifest may allow one call.
pub const MAX_OUTBOUND_REQUESTS: u32 = 1000;
/// The largest body limit a manifest may ask for (64 MiB).
pub const MAX_BODY_KB: u64 = 64 * 1024;

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
    /// `allowed_outbound_hosts`, parsed when the manifest is.
    #[serde(skip)]
    pub outbound: Arc<Allowlist>,
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
    crate::capabilities::outbound::DEFAULT_MAX_REQUESTS
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
            max_outbound_requests: crate::capabilities::outbound::DEFAULT_MAX_REQUESTS,
            outbound: Arc::default(),
        }
    }
}

/// The capabilities a manifest can grant: each is an imported interface
/// ([`grant_for`]). Everything else a component may import — the request
/// and response types (`wasi:http/types` too: a `wasi:http` component
/// needs them to be served) and all of WASI 0.2, with nothing granted —
/// needs no grant.
pub const GRANTABLE: [&str; 5] = ["kv", "log", "config", "auth", "http"];

/// The capability an imported interface needs, if any.
pub fn grant_for(import: &str) -> Option<&'static str> {
    let interface = import.split('@').next().unwrap_or(import);
    match interface {
        "fp:droplet/kv" => Some("kv"),
        "fp:droplet/log" => Some("log"),
        "fp:droplet/config" => Some("config"),
        "fp:droplet/auth" => Some("auth"),
        "wasi:http/outgoing-handler" => Some("http"),
        _ => None,
    }
}

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

/// The prefix of host environment variables every manifest may expand.
pub const CONFIG_ENV_PREFIX: &str = "DROPLET_CONFIG_";

/// The host's own secrets: never expanded into a droplet's config, whatever
/// the operator allows.
pub const HOST_SECRETS: [&str; 6] = [
    "JWT_SECRET",
    "REGISTRY_PUBLIC_KEY",
    "JWKS_PATH",
    "REGISTRY_TOKEN",
    "DATABASE_URL",
    "DROPLET_TOKEN",
];

/// Which host environment variables a manifest's `${VAR}` may read: those
/// named `DROPLET_CONFIG_*`, and those the operator lists explicitly
/// (`--config-env`) — never the host's own secrets.
#[derive(Debug, Clone, Default)]
pub struct ConfigEnv {
    /// Variables the operator exposes besides the `DROPLET_CONFIG_*` ones.
    pub allowed: Vec<String>,
}

impl ConfigEnv {
    /// Why `var` may not be expanded, if it may not.
    fn refusal(&self, var: &str) -> Option<String> {
        if HOST_SECRETS.contains(&var) {
            return Some(format!(
                "{var} is one of the host's own secrets ({}), never handed to droplets",
                HOST_SECRETS.join(", ")
            ));
        }
        if var.starts_with(CONFIG_ENV_PREFIX) || self.allowed.iter().any(|allowed| allowed == var) {
            return None;
        }
        Some(format!(
            "only variables named {CONFIG_ENV_PREFIX}* and those the operator lists in --config-env (DROPLET_CONFIG_ENV) may be expanded"
        ))
    }
}

impl Manifest {
    /// Parses and validates manifest text. `max_memory_mb` is the host's
    /// ceiling for `memory_mb`.
    pub fn parse(text: &str, max_memory_mb: u64) -> Result<Self, ManifestError> {
        let mut manifest: Manifest = toml::from_str(text).map_err(|err| {
            // toml's message spans lines and quotes the source; keep it, on one line.
            ManifestError::Parse(err.message().trim().replace('\n', " "))
        })?;
        manifest.validate(max_memory_mb)?;
        manifest.outbound = Arc::new(Allowlist::parse(&manifest.allowed_outbound_hosts).map_err(
            |problem| ManifestError::Invalid {
                field: "allowed_outbound_hosts",
                problem,
            },
        )?);
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
        if self.auth == AuthPolicy::Public && !self.scopes.is_empty() {
            return invalid(
                "scopes",
                "needs `auth = \"jwt\"`: a public droplet cannot require scopes".to_string(),
            );
        }
        Ok(())
    }

    /// The capabilities this manifest grants: of [`GRANTABLE`], those its
    /// `capabilities` list names (all but `http` when there is no list),
    /// and `http` when `allowed_outbound_hosts` lists anywhere.
    pub fn granted(&self) -> Vec<&'static str> {
        let mut granted: Vec<&'static str> = match &self.capabilities {
            None => vec!["kv", "log", "config", "auth"],
            Some(list) => GRANTABLE
                .iter()
                .copied()
                .filter(|grant| *grant != "http" && list.iter().any(|named| named == grant))
                .collect(),
        };
        if !self.allowed_outbound_hosts.is_empty() {
            granted.push("http");
        }
        granted
    }

    /// Checks a component's `imports` against what this manifest grants;
    /// the error names the first interface not granted and the line to add.
    pub fn check_imports(&self, imports: &[String]) -> Result<(), String> {
        let granted = self.granted();
        for import in imports {
            let Some(needs) = grant_for(import) else {
                continue;
            };
            if granted.contains(&needs) {
                continue;
            }
            return Err(if needs == "http" {
                format!(
                    "it imports {import} (outbound HTTP), which is denied by default: list where it may go in `allowed_outbound_hosts = [\"https://…\"]`"
                )
            } else {
                format!(
                    "it imports {import}, which its manifest does not grant: add \"{needs}\" to `capabilities = [...]`"
                )
            });
        }
        Ok(())
    }

    /// The `[config]` table with every `${VAR}` replaced by the host
    /// environment's value, looked up with `env`; only variables `allowed`
    /// permits are read.
    pub fn resolve_config(
        &self,
        allowed: &ConfigEnv,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<BTreeMap<String, String>, ManifestError> {
        let lookup = |key: &str, var: &str| {
            if let Some(rule) = allowed.refusal(var) {
                return Err(ManifestError::RefusedEnv {
                    key: key.to_string(),
                    var: var.to_string(),
                    rule,
                });
            }
            env(var).ok_or_else(|| ManifestError::MissingEnv {
                key: key.to_string(),
                var: var.to_string(),
            })
        };
        self.config
            .iter()
            .map(|(key, value)| Ok((key.clone(), expand_env(key, value, &lookup)?)))
            .collect()
    }
}

/// Replaces each `${NAME}` in `value` with `lookup(key, NAME)`; `$$`
/// stands for a literal `$`.
fn expand_env(
    key: &str,
    value: &str,
    lookup: &impl Fn(&str, &str) -> Result<String, ManifestError>,
) -> Result<String, ManifestError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{')
            && let Some(end) = inner.find('}')
        {
            let var = &inner[..end];
            out.push_str(&lookup(key, var)?);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
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
    fn config_expands_environment_variables() {
        let manifest = Manifest::parse(
            "[config]\nkey = \"${API_KEY}\"\nmixed = \"a-${API_KEY}-$$-b\"\nplain = \"$5\"\n",
            256,
        )
        .unwrap();
        let env = |name: &str| (name == "API_KEY").then(|| "secret".to_string());
        let allowed = ConfigEnv {
            allowed: vec!["API_KEY".to_string()],
        };
        let config = manifest.resolve_config(&allowed, env).unwrap();
        assert_eq!(config["key"], "secret");
        assert_eq!(config["mixed"], "a-secret-$-b");
        assert_eq!(config["plain"], "$5");
    }

    #[test]
    fn missing_environment_variable_is_an_error() {
        let manifest =
            Manifest::parse("[config]\nkey = \"${DROPLET_CONFIG_NOPE}\"\n", 256).unwrap();
        let err = manifest
            .resolve_config(&ConfigEnv::default(), |_| None)
            .unwrap_err();
        assert!(err.to_string().contains("${DROPLET_CONFIG_NOPE}"), "{err}");
        assert!(err.to_string().contains("not set"), "{err}");
    }

    #[test]
    fn only_allowed_variables_expand_and_host_secrets_never() {
        let env = |_: &str| Some("value".to_string());
        let allowed = ConfigEnv {
            allowed: vec!["API_KEY".into(), "JWT_SECRET".into()],
        };
        let resolve = |var: &str| {
            Manifest::parse(&format!("[config]\nx = \"${{{var}}}\"\n"), 256)
                .unwrap()
                .resolve_config(&allowed, env)
        };
        assert!(resolve("DROPLET_CONFIG_GREETING").is_ok());
        assert!(resolve("API_KEY").is_ok());
        let refused = resolve("HOME").unwrap_err().to_string();
        assert!(
            refused.contains("${HOME}") && refused.contains("DROPLET_CONFIG_"),
            "{refused}"
        );
        for secret in HOST_SECRETS {
            let refused = resolve(secret).unwrap_err().to_string();
            assert!(refused.contains("host's own secrets"), "{refused}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_manifest_text_parses_or_is_refused_without_panicking(text in ".{0,400}") {
            if let Ok(manifest) = Manifest::parse(&text, 256) {
                let _ = manifest.resolve_config(&ConfigEnv::default(), |_| Some("v".into()));
            }
        }

        #[test]
        fn any_config_value_expands_or_is_refused_without_panicking(value in ".{0,200}") {
            let manifest = Manifest {
                config: [("k".to_string(), value)].into_iter().collect(),
                ..Manifest::default()
            };
            let allowed = ConfigEnv { allowed: vec!["A".into()] };
            let _ = manifest.resolve_config(&allowed, |_| Some("v".into()));
        }
    }

    #[test]
    fn imports_need_their_grants() {
        let imports = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let all = imports(&[
            "fp:droplet/types@0.2.0",
            "fp:droplet/kv@0.2.0",
            "fp:droplet/log@0.2.0",
            "wasi:cli/environment@0.2.6",
        ]);
        assert!(
            Manifest::default().check_imports(&all).is_ok(),
            "no list: the sandboxed imports"
        );
        let only_log = Manifest::parse("capabilities = [\"log\", \"greets\"]", 256).unwrap();
        let err = only_log.check_imports(&all).unwrap_err();
        assert!(
            err.contains("fp:droplet/kv@0.2.0") && err.contains("add \"kv\""),
            "{err}"
        );
        let http = imports(&["wasi:http/outgoing-handler@0.2.12"]);
        let err = Manifest::default().check_imports(&http).unwrap_err();
        assert!(err.contains("allowed_outbound_hosts"), "{err}");
        let allowed =
            Manifest::parse("allowed_outbound_hosts = [\"https://x.example\"]", 256).unwrap();
        assert!(allowed.check_imports(&http).is_ok());
        assert_eq!(allowed.granted(), ["kv", "log", "config", "auth", "http"]);
        let none = Manifest::parse("capabilities = []", 256).unwrap();
        assert!(none.granted().is_empty());
        assert!(
            none.check_imports(&imports(&["fp:droplet/types@0.2.0"]))
                .is_ok()
        );
    }
}
