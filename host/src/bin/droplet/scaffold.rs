//! The author's loop: `droplet new` scaffolds a droplet crate that builds as
//! is, and `droplet build` builds one for `wasm32-wasip2`, checks it is a
//! component of our world, and copies it into a droplets directory (where a
//! running host hot-swaps it).

use std::path::Path;

use anyhow::{Context, bail, ensure};
use droplet_host::droplets::name::{NAME_RULE, is_droplet_name};

/// The target droplets are built for.
pub const TARGET: &str = "wasm32-wasip2";

/// The droplet SDK as this `droplet` was built with it: every file of
/// `guest-sdk` and the WIT world, vendored into each new droplet crate so
/// that it builds wherever it is moved, with the SDK it was tested with.
const SDK_SOURCES: &[(&str, &str)] = &[
    (
        "droplet-sdk/src/lib.rs",
        include_str!("../../../../guest-sdk/src/lib.rs"),
    ),
    (
        "droplet-sdk/src/auth.rs",
        include_str!("../../../../guest-sdk/src/auth.rs"),
    ),
    (
        "droplet-sdk/src/config.rs",
        include_str!("../../../../guest-sdk/src/config.rs"),
    ),
    (
        "droplet-sdk/src/fetch.rs",
        include_str!("../../../../guest-sdk/src/fetch.rs"),
    ),
    (
        "droplet-sdk/src/kv.rs",
        include_str!("../../../../guest-sdk/src/kv.rs"),
    ),
    (
        "droplet-sdk/src/queue.rs",
        include_str!("../../../../guest-sdk/src/queue.rs"),
    ),
    (
        "droplet-sdk/src/background.rs",
        include_str!("../../../../guest-sdk/src/background.rs"),
    ),
    (
        "droplet-sdk/src/log.rs",
        include_str!("../../../../guest-sdk/src/log.rs"),
    ),
    (
        "droplet-sdk/src/stream.rs",
        include_str!("../../../../guest-sdk/src/stream.rs"),
    ),
    (
        "droplet-sdk/src/error.rs",
        include_str!("../../../../guest-sdk/src/error.rs"),
    ),
    (
        "droplet-sdk/src/host.rs",
        include_str!("../../../../guest-sdk/src/host.rs"),
    ),
    (
        "droplet-sdk/src/interop.rs",
        include_str!("../../../../guest-sdk/src/interop.rs"),
    ),
    (
        "droplet-sdk/src/request.rs",
        include_str!("../../../../guest-sdk/src/request.rs"),
    ),
    (
        "droplet-sdk/src/response.rs",
        include_str!("../../../../guest-sdk/src/response.rs"),
    ),
    (
        "droplet-sdk/src/router.rs",
        include_str!("../../../../guest-sdk/src/router.rs"),
    ),
    (
        "droplet-sdk/src/testing.rs",
        include_str!("../../../../guest-sdk/src/testing.rs"),
    ),
    (
        "droplet-sdk/src/rt.rs",
        include_str!("../../../../guest-sdk/src/rt.rs"),
    ),
    (
        "wit/droplet.wit",
        include_str!("../../../../wit/droplet.wit"),
    ),
    (
        "wit/deps/io/poll.wit",
        include_str!("../../../../wit/deps/io/poll.wit"),
    ),
];
/// The SDK's manifest, which inherits from the workspace's.
const SDK_MANIFEST: &str = include_str!("../../../../guest-sdk/Cargo.toml");
/// The workspace's manifest: what the SDK inherits.
const WORKSPACE_MANIFEST: &str = include_str!("../../../../Cargo.toml");
/// The workspace's lockfile: the dependency versions the SDK is tested with.
const WORKSPACE_LOCK: &str = include_str!("../../../../Cargo.lock");

/// Creates the crate for droplet `name` in `dir` from `template`: the
/// droplet, with the SDK vendored in `droplet-sdk/` (or, with `sdk`, a path
/// dependency on an SDK checkout) and a lockfile pinning the SDK's tested
/// dependency versions.
pub fn new_droplet(
    name: &str,
    dir: &Path,
    sdk: Option<&Path>,
    template: Template,
) -> anyhow::Result<()> {
    ensure!(
        is_droplet_name(name),
        "`{name}` is not a valid droplet name: use {NAME_RULE}"
    );
    ensure!(!dir.exists(), "{} already exists", dir.display());
    let sdk_dependency = match sdk {
        None => "droplet-sdk".to_string(),
        Some(sdk) => {
            ensure!(
                sdk.join("Cargo.toml").exists(),
                "no droplet SDK at {} (--sdk takes the repository's guest-sdk)",
                sdk.display()
            );
            sdk.canonicalize()?.display().to_string().replace('\\', "/")
        }
    };
    let mut files = vec![
        ("Cargo.toml".to_string(), cargo_toml(name, &sdk_dependency)),
        ("Cargo.lock".to_string(), lockfile(name)?),
        (".gitignore".to_string(), "/target\n".to_string()),
        ("README.md".to_string(), readme(name)),
    ];
    for (path, contents) in template.files() {
        let path = match *path {
            "MANIFEST" => format!("{name}.toml"),
            path => path.to_string(),
        };
        files.push((path, contents.to_string()));
    }
    if sdk.is_none() {
        files.push(("droplet-sdk/Cargo.toml".to_string(), sdk_manifest()?));
        for (path, contents) in SDK_SOURCES {
            files.push((path.to_string(), contents.to_string()));
        }
    }
    for (path, contents) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn cargo_toml(name: &str, sdk_path: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
droplet-sdk = {{ path = "{sdk_path}" }}
serde_json = "1"

[dev-dependencies]
# `cargo test` runs the handler natively against the SDK's test world.
droplet-sdk = {{ path = "{sdk_path}", features = ["testing"] }}

# A droplet is its own workspace, wherever it lives.
[workspace]

[profile.release]
codegen-units = 16
"#
    )
}

/// The SDK's manifest with what it inherits from the workspace written out,
/// so that it stands alone.
fn sdk_manifest() -> anyhow::Result<String> {
    let workspace: toml::Table = WORKSPACE_MANIFEST.parse()?;
    let mut manifest: toml::Table = SDK_MANIFEST.parse()?;
    let inherited = |section: &str| {
        workspace
            .get("workspace")
            .and_then(|w| w.get(section))
            .and_then(toml::Value::as_table)
            .cloned()
            .unwrap_or_default()
    };
    let (package_fields, dependencies) = (inherited("package"), inherited("dependencies"));
    let is_inherited =
        |value: &toml::Value| value.get("workspace").and_then(toml::Value::as_bool) == Some(true);
    if let Some(package) = manifest
        .get_mut("package")
        .and_then(toml::Value::as_table_mut)
    {
        for (key, value) in package.iter_mut() {
            if is_inherited(value) {
                *value = package_fields
                    .get(key)
                    .cloned()
                    .with_context(|| format!("the workspace has no package.{key}"))?;
            }
        }
        package.insert("publish".into(), toml::Value::Boolean(false));
    }
    if let Some(deps) = manifest
        .get_mut("dependencies")
        .and_then(toml::Value::as_table_mut)
    {
        for (key, value) in deps.iter_mut() {
            if !is_inherited(value) {
                continue;
            }
            let mut resolved = match dependencies.get(key) {
                Some(toml::Value::String(version)) => {
                    let mut table = toml::Table::new();
                    table.insert("version".into(), toml::Value::String(version.clone()));
                    table
                }
                Some(toml::Value::Table(table)) => table.clone(),
                _ => bail!("the workspace has no dependency {key}"),
            };
            // Local keys (such as `optional`) stay.
            if let Some(local) = value.as_table() {
                for (local_key, local_value) in local {
                    if local_key != "workspace" {
                        resolved.insert(local_key.clone(), local_value.clone());
                    }
                }
            }
            *value = toml::Value::Table(resolved);
        }
    }
    Ok(toml::to_string(&manifest)?)
}

/// A lockfile for droplet `name`: every registry package the SDK and the
/// template depend on, at the versions of the workspace's lockfile.
fn lockfile(name: &str) -> anyhow::Result<String> {
    let lock: toml::Table = WORKSPACE_LOCK.parse()?;
    let packages: Vec<&toml::Table> = lock
        .get("package")
        .and_then(toml::Value::as_array)
        .context("the workspace lockfile lists no packages")?
        .iter()
        .filter_map(toml::Value::as_table)
        .collect();
    let field = |package: &toml::Table, key: &str| {
        package
            .get(key)
            .and_then(toml::Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    // A dependency is written "name", or "name version" when the lockfile
    // holds several versions of it.
    let find = |dependency: &str| {
        let mut words = dependency.split_whitespace();
        let (dep_name, dep_version) = (words.next().unwrap_or_default(), words.next());
        packages.iter().copied().find(|package| {
            field(package, "name") == dep_name
                && dep_version.is_none_or(|version| field(package, "version") == version)
        })
    };
    let dependencies = |package: &toml::Table| -> Vec<String> {
        package
            .get("dependencies")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(toml::Value::as_str)
            .map(str::to_string)
            .collect()
    };
    let sdk = find("droplet-sdk").context("the workspace lockfile has no droplet-sdk")?;
    let mut queue: Vec<String> = dependencies(sdk);
    queue.push("serde_json".to_string());
    let mut kept: Vec<&toml::Table> = Vec::new();
    while let Some(dependency) = queue.pop() {
        let Some(package) = find(&dependency) else {
            continue;
        };
        // The SDK names itself (its tests' dev-dependency): it is written
        // once, below.
        if std::ptr::eq(package, sdk) || kept.iter().any(|kept| std::ptr::eq(*kept, package)) {
            continue;
        }
        kept.push(package);
        queue.extend(dependencies(package));
    }
    kept.sort_by_key(|package| (field(package, "name"), field(package, "version")));
    let mut root = toml::Table::new();
    root.insert("name".into(), name.into());
    root.insert("version".into(), "0.1.0".into());
    root.insert(
        "dependencies".into(),
        toml::Value::Array(vec!["droplet-sdk".into(), "serde_json".into()]),
    );
    let mut out = vec![toml::Value::Table(root), toml::Value::Table(sdk.clone())];
    out.extend(
        kept.into_iter()
            .map(|package| toml::Value::Table(package.clone())),
    );
    let mut file = toml::Table::new();
    file.insert(
        "version".into(),
        lock.get("version").cloned().unwrap_or(4.into()),
    );
    file.insert("package".into(), toml::Value::Array(out));
    Ok(format!(
        "# Pins the versions the droplet SDK was tested with.\n{}",
        toml::to_string(&file)?
    ))
}

/// What `droplet new` starts from: each builds as scaffolded and passes
/// its own `cargo test`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Template {
    /// A JSON API: a router, a kv counter and a greeting from config.
    #[default]
    Api,
    /// A static site built into the droplet, served with ETags.
    Static,
    /// A proxy to the upstream its manifest names.
    Proxy,
    /// A task the host runs on a cron schedule, once per instant.
    Scheduled,
}

impl Template {
    /// The template's files, `MANIFEST` standing for `{name}.toml`.
    fn files(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Template::Api => &[
                ("src/lib.rs", include_str!("../../../templates/api/lib.rs")),
                (
                    "MANIFEST",
                    include_str!("../../../templates/api/manifest.toml"),
                ),
            ],
            Template::Static => &[
                (
                    "src/lib.rs",
                    include_str!("../../../templates/static/lib.rs"),
                ),
                (
                    "MANIFEST",
                    include_str!("../../../templates/static/manifest.toml"),
                ),
                (
                    "static/index.html",
                    include_str!("../../../templates/static/static/index.html"),
                ),
                (
                    "static/style.css",
                    include_str!("../../../templates/static/static/style.css"),
                ),
            ],
            Template::Proxy => &[
                (
                    "src/lib.rs",
                    include_str!("../../../templates/proxy/lib.rs"),
                ),
                (
                    "MANIFEST",
                    include_str!("../../../templates/proxy/manifest.toml"),
                ),
            ],
            Template::Scheduled => &[
                (
                    "src/lib.rs",
                    include_str!("../../../templates/scheduled/lib.rs"),
                ),
                (
                    "MANIFEST",
                    include_str!("../../../templates/scheduled/manifest.toml"),
                ),
            ],
        }
    }
}

fn readme(name: &str) -> String {
    format!(
        "# {name}\n\nA droplet: `src/lib.rs` answers every request, `{name}.toml` is its manifest.\n\
         `droplet-sdk/` is the droplet SDK (vendored by `droplet new`, with `wit/`).\n\n\
         ```sh\n\
         # Run the tests in src/lib.rs natively, against the SDK's in-memory test world.\n\
         cargo test\n\
         # Build for wasm32-wasip2 and copy {name}.wasm and {name}.toml into the droplets\n\
         # directory a host watches (`cargo xtask serve` in the droplet repository watches\n\
         # its ./droplets); the running host swaps it in.\n\
         droplet build . --droplets /path/to/droplets\n\
         curl localhost:8080/{name}/\n\
         ```\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sdk_source_is_vendored() {
        let sdk_src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk/src");
        for entry in std::fs::read_dir(sdk_src).unwrap() {
            let file = entry.unwrap().file_name().into_string().unwrap();
            let vendored = format!("droplet-sdk/src/{file}");
            assert!(
                SDK_SOURCES.iter().any(|(path, _)| *path == vendored),
                "{vendored} is missing from SDK_SOURCES"
            );
        }
    }

    #[test]
    fn the_vendored_sdk_manifest_stands_alone() {
        let manifest = sdk_manifest().unwrap();
        assert!(!manifest.contains("workspace"), "{manifest}");
        let parsed: toml::Table = manifest.parse().unwrap();
        assert_eq!(parsed["package"]["name"].as_str(), Some("droplet-sdk"));
        assert_eq!(
            parsed["dependencies"]["serde_json"]["optional"].as_bool(),
            Some(true)
        );
        assert!(parsed["dependencies"]["wit-bindgen"]["version"].is_str());
    }

    #[test]
    fn the_template_lockfile_pins_the_workspace_versions() {
        let versions = |lock: &str| -> Vec<(String, String)> {
            let lock: toml::Table = lock.parse().unwrap();
            lock["package"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap().to_string(),
                        p["version"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        };
        let template = versions(&lockfile("greeter").unwrap());
        let workspace = versions(WORKSPACE_LOCK);
        assert_eq!(template[0], ("greeter".to_string(), "0.1.0".to_string()));
        let sdk = template.iter().filter(|(name, _)| name == "droplet-sdk");
        assert_eq!(sdk.count(), 1, "the SDK is locked once");
        for name in ["wit-bindgen", "serde", "serde_json"] {
            let pinned = template.iter().find(|(n, _)| n == name).unwrap();
            assert!(workspace.contains(pinned), "{pinned:?}");
        }
        assert!(
            template
                .iter()
                .all(|package| workspace.contains(package) || package.0 == "greeter")
        );
    }
}
