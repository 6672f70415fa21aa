//! `fp:droplet/config`: values from the droplet's manifest `[config]`
//! table, with `${VAR}` expanded when the droplet version is loaded — and
//! only from the host environment variables droplets may read
//! ([`ConfigEnv`]): never the host's own secrets.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use super::call_context::CallContext;
use super::capability::{Capability, StoreData};
use super::recording::entry::ConfigValue;
use super::recording::{Call, Reply, Tape};
use crate::bindings::fp::droplet::config::{self as wit, Host};
use crate::droplets::manifest::{Manifest, ManifestError};

/// The host-wide half: which environment variables `${VAR}` may read.
#[derive(Debug, Clone, Default)]
pub struct ConfigCapability {
    /// The rule for `${VAR}`.
    pub env: ConfigEnv,
}

/// A droplet version's `[config]`, resolved.
#[derive(Debug, Default)]
pub struct ConfigTable {
    /// Every key's value, `${VAR}` expanded.
    pub values: BTreeMap<String, String>,
    /// The keys whose value took something from the host's environment:
    /// the operator's secrets, never recorded.
    pub from_env: BTreeSet<String>,
}

/// The config one call may read: its droplet version's table.
pub struct ConfigAccess {
    table: Arc<ConfigTable>,
    tape: Option<Tape>,
}

impl Capability for ConfigCapability {
    const GRANT: Option<&'static str> = Some("config");
    const INTERFACES: &'static [&'static str] = &["fp:droplet/config"];
    /// The resolved table, shared by all the version's calls.
    type Grant = Arc<ConfigTable>;
    type Access = ConfigAccess;

    fn link<T: StoreData>(
        linker: &mut Linker<T>,
        access: fn(&mut T) -> &mut ConfigAccess,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, HasSelf<ConfigAccess>>(linker, access)
    }

    fn grant(&self, manifest: &Manifest) -> Result<Self::Grant, ManifestError> {
        let values = self.env.resolve(manifest, |var| std::env::var(var).ok())?;
        let from_env = manifest
            .config
            .iter()
            .filter(|(_, raw)| raw.contains("${"))
            .map(|(key, _)| key.clone())
            .collect();
        Ok(Arc::new(ConfigTable { values, from_env }))
    }

    fn for_call(&self, grant: &Self::Grant, call: &CallContext<'_>) -> ConfigAccess {
        ConfigAccess {
            table: Arc::clone(grant),
            tape: call.tape.clone(),
        }
    }
}

impl Host for ConfigAccess {
    async fn get(&mut self, key: String) -> Option<String> {
        let value = self.table.values.get(&key).cloned();
        if let Some(tape) = &self.tape {
            let kept = value.as_ref().map(|value| {
                if self.table.from_env.contains(&key) {
                    tape.secret(value);
                    ConfigValue::Redacted
                } else {
                    ConfigValue::Plain(value.clone())
                }
            });
            tape.keep(Call::ConfigGet { key }, Reply::Config(kept));
        }
        value
    }
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

    /// The `[config]` table with every `${VAR}` replaced by the host
    /// environment's value, looked up with `env`; only variables this rule
    /// permits are read.
    pub fn resolve(
        &self,
        manifest: &Manifest,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<BTreeMap<String, String>, ManifestError> {
        let allowed = self;
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
        manifest
            .config
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
        let config = allowed.resolve(&manifest, env).unwrap();
        assert_eq!(config["key"], "secret");
        assert_eq!(config["mixed"], "a-secret-$-b");
        assert_eq!(config["plain"], "$5");
    }

    #[test]
    fn missing_environment_variable_is_an_error() {
        let manifest =
            Manifest::parse("[config]\nkey = \"${DROPLET_CONFIG_NOPE}\"\n", 256).unwrap();
        let err = ConfigEnv::default()
            .resolve(&manifest, |_| None)
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
            let manifest = Manifest::parse(&format!("[config]\nx = \"${{{var}}}\"\n"), 256);
            allowed.resolve(&manifest.unwrap(), env)
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
                let _ = ConfigEnv::default().resolve(&manifest, |_| Some("v".into()));
            }
        }

        #[test]
        fn any_config_value_expands_or_is_refused_without_panicking(value in ".{0,200}") {
            let manifest = Manifest {
                config: [("k".to_string(), value)].into_iter().collect(),
                ..Manifest::default()
            };
            let allowed = ConfigEnv { allowed: vec!["A".into()] };
            let _ = allowed.resolve(&manifest, |_| Some("v".into()));
        }
    }
}
