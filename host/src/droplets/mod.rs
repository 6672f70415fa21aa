//! The droplets this host serves: one [`Droplet`] per published version,
//! and the parts that make and keep them.
//!
//! | module | owns |
//! | --- | --- |
//! | [`droplet`] | one version: its manifest, config, compiled state and slots |
//! | [`table`] | the table of current versions and the one atomic swap |
//! | [`startup`] | loading every droplet at start-up |
//! | [`publish`] | publish, rollback, removal |
//! | [`converge`] | following the fleet's current versions |
//! | [`version`] | version ids (`{seq}-{hash12}`) and content hashes |
//! | [`directory`] | the droplets directory: scanning and reading `{name}.wasm` + `{name}.toml` |
//! | [`loader`] | parsing manifests and compiling modules into something that can serve |
//! | [`store`] | where published versions are kept ([`store::DeploymentStore`]) |
//! | [`stats`] | per-droplet counters, kept across versions |
//! | [`manifest`] | `{name}.toml`: fields, defaults, validation, `${VAR}` expansion |
//! | [`jobs_spec`] | the manifest's `[[schedule]]` and `[[consume]]` tables and `send_queues`: checked, cron instants |
//! | [`watch`] | the droplets directory watcher |
//! | [`fleet`] | fleet mode: hints, reconciliation, heartbeat |
//! | [`registry`] | registering each version with the ecosystem's registry |
//! | [`rollout`] | canary rollouts: split, judge, promote or roll back |

pub mod converge;
pub mod cron;
pub mod directory;
pub mod droplet;
pub mod fleet;
pub mod jobs_spec;
pub mod loader;
pub mod manifest;
pub mod manifest_rules;
pub mod name;
pub mod publish;
pub mod record_mode;
pub mod recorder;
pub mod registry;
pub mod rollout;
pub mod rollout_settings;
pub mod series;
pub mod startup;
pub mod stats;
pub mod store;
pub mod table;
pub mod version;
pub mod watch;

pub use self::droplet::{Droplet, DropletState, LoadProgress, Pending};
pub use self::publish::{ChangeError, Published};
pub use self::table::Droplets;
