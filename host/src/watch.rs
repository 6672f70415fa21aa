//! Watches the droplets directory and publishes changed modules.
//!
//! Events are debounced per droplet: a module is read only once its files
//! have been quiet for [`DEBOUNCE`], so a file written in place and a
//! write-then-rename both end in one publish of the complete file. A module
//! that does not load is refused (logged at error level with its reason) and
//! the current version keeps serving. A module removed from the directory
//! removes its droplet.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::app::App;
use crate::droplets::directory;
use crate::router::is_droplet_name;
use crate::shutdown::Shutdown;

/// How long a droplet's files must be quiet before they are read.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// Starts watching `dir`, until `shutdown`.
pub fn spawn(app: Arc<App>, dir: PathBuf, shutdown: &Shutdown) -> notify::Result<()> {
    let (events, mut receive) = mpsc::unbounded_channel::<PathBuf>();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) => {
                for path in event.paths {
                    let _ = events.send(path);
                }
            }
            Err(err) => tracing::warn!(error = %err, "droplets directory watch error"),
        })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    tracing::info!(dir = %dir.display(), "watching the droplets directory for changes");

    let stop = shutdown.clone();
    shutdown.spawn(async move {
        // Owned by the task: the watch lasts as long as it runs.
        let _watcher: RecommendedWatcher = watcher;
        let mut due: HashMap<String, Instant> = HashMap::new();
        loop {
            let next = due.values().min().copied();
            tokio::select! {
                () = stop.triggered() => break,
                path = receive.recv() => {
                    let Some(path) = path else { break };
                    if let Some(name) = droplet_of(&path) {
                        due.insert(name, Instant::now() + DEBOUNCE);
                    }
                }
                () = sleep_until(next) => {
                    let now = Instant::now();
                    let ready: Vec<String> = due.iter().filter(|(_, at)| **at <= now).map(|(name, _)| name.clone()).collect();
                    for name in ready {
                        due.remove(&name);
                        apply(&app, &dir, &name).await;
                    }
                }
            }
        }
    });
    Ok(())
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The droplet a changed file belongs to: `{name}.wasm` or `{name}.toml`.
fn droplet_of(path: &Path) -> Option<String> {
    let ext = path.extension()?.to_str()?;
    if ext != "wasm" && ext != "toml" {
        return None;
    }
    let name = path.file_stem()?.to_str()?;
    is_droplet_name(name).then(|| name.to_string())
}

/// Publishes the directory's version of `name`, or removes the droplet if
/// its module is gone.
async fn apply(app: &App, dir: &Path, name: &str) {
    let (dir, owned) = (dir.to_path_buf(), name.to_string());
    let read = tokio::task::spawn_blocking(move || {
        if dir.join(format!("{owned}.wasm")).exists() {
            directory::read_version(&dir, &owned).map(Some)
        } else {
            Ok(None)
        }
    })
    .await;
    match read {
        Ok(Ok(Some((wasm, manifest)))) => {
            // A refused version is logged by `publish`; nothing else to do.
            let _ = app
                .droplets
                .publish(name, wasm, manifest, "directory")
                .await;
        }
        Ok(Ok(None)) => {
            if let Err(err) = app.droplets.remove(name).await {
                tracing::error!(droplet = name, error = %err, "cannot remove the droplet whose module left the directory");
            }
        }
        Ok(Err(reason)) => {
            tracing::error!(droplet = name, reason = %reason, "cannot read the changed droplet")
        }
        Err(_) => tracing::error!(droplet = name, "reading the changed droplet was abandoned"),
    }
}
