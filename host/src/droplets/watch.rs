//! Watches the droplets directory and publishes modules whose content
//! changed.
//!
//! Only events that can change content count (create, write, rename,
//! remove); reading a file (including the watcher's own reads) or touching
//! its metadata does not. Events are debounced per droplet: a module is read
//! only once its files have been quiet for [`DEBOUNCE`], so a file written in
//! place and a write-then-rename both end in one publish of the complete
//! file. The watcher remembers the content hash of each droplet's files as it
//! last saw them (seeded when it starts) and publishes only new content.
//!
//! **Who wins when the directory and the admin API disagree**: the most
//! recent change. A version deployed or rolled back through the admin API
//! stays current until the *content* of that droplet's files in the
//! directory changes; then the directory's version is published. A module
//! that does not load is refused (logged at error level with its reason) and
//! the current version keeps serving. A module removed from the directory
//! removes its droplet.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::droplets::Droplets;
use crate::droplets::directory;
use crate::droplets::name::is_droplet_name;
use crate::droplets::store::VersionFiles;
use crate::droplets::version::ContentHash;
use crate::ops::shutdown::Shutdown;

/// How long a droplet's files must be quiet before they are read.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// Starts watching `dir`, until `shutdown`.
pub fn spawn(droplets: Arc<Droplets>, dir: PathBuf, shutdown: &Shutdown) -> notify::Result<()> {
    let (events, mut receive) = mpsc::unbounded_channel::<PathBuf>();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if changes_content(&event.kind) => {
                for path in event.paths {
                    let _ = events.send(path);
                }
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "droplets directory watch error"),
        })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    tracing::info!(dir = %dir.display(), "watching the droplets directory for changes");

    let stop = shutdown.clone();
    shutdown.spawn(async move {
        // Owned by the task: the watch lasts as long as it runs.
        let _watcher: RecommendedWatcher = watcher;
        // Events that arrive meanwhile wait in the channel.
        let mut seen = seed(&dir).await;
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
                        apply(&droplets, &dir, &name, &mut seen).await;
                    }
                }
            }
        }
    });
    Ok(())
}

/// Whether an event can mean new content: creation, a write, a rename or a
/// removal. Reads (open, close without writing) and metadata changes cannot.
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
        EventKind::Any | EventKind::Other => true,
    }
}

/// The content hash of every droplet's files in `dir` as they are now.
async fn seed(dir: &Path) -> HashMap<String, ContentHash> {
    let dir = dir.to_path_buf();
    let scanned = tokio::task::spawn_blocking(move || {
        let files = directory::droplet_files(&dir).unwrap_or_default();
        files
            .into_iter()
            .filter_map(|(name, _)| {
                let (wasm, manifest) = directory::read_version(&dir, &name).ok()?;
                Some((name, ContentHash::of(&wasm, manifest.as_deref())))
            })
            .collect()
    })
    .await;
    scanned.unwrap_or_else(|err| {
        tracing::warn!(error = %err, "cannot read the droplets directory; every file counts as new");
        HashMap::new()
    })
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

/// Publishes the directory's version of `name` if its content is new, or
/// removes the droplet if its module left the directory.
async fn apply(
    droplets: &Droplets,
    dir: &Path,
    name: &str,
    seen: &mut HashMap<String, ContentHash>,
) {
    let (dir, owned) = (dir.to_path_buf(), name.to_string());
    let read = tokio::task::spawn_blocking(move || {
        if dir.join(format!("{owned}.wasm")).exists() {
            directory::read_version(&dir, &owned).map(Some)
        } else {
            Ok(None)
        }
    })
    .await;
    let files: Option<VersionFiles> = match read {
        Ok(Ok(files)) => files,
        Ok(Err(reason)) => {
            tracing::error!(droplet = name, reason = %reason, "cannot read the changed droplet");
            return;
        }
        Err(_) => {
            tracing::error!(droplet = name, "reading the changed droplet was abandoned");
            return;
        }
    };
    let Some((wasm, manifest)) = files else {
        // Only a module that was there leaves: a stray manifest event must
        // not remove a droplet deployed through the admin API.
        if seen.remove(name).is_some()
            && let Err(err) = droplets.remove(name).await
        {
            tracing::error!(droplet = name, error = %err, "cannot remove the droplet whose module left the directory");
        }
        return;
    };
    let hash = ContentHash::of(&wasm, manifest.as_deref());
    if seen.get(name) == Some(&hash) {
        tracing::debug!(
            droplet = name,
            "droplet files touched but their content is unchanged"
        );
        return;
    }
    seen.insert(name.to_string(), hash);
    // A refused version is logged by `publish`; nothing else to do.
    let _ = droplets.publish(name, wasm, manifest, "directory").await;
}

#[cfg(test)]
mod tests {
    use notify::event::{CreateKind, DataChange, MetadataKind, RemoveKind, RenameMode};

    use super::*;

    #[test]
    fn reads_and_metadata_are_not_changes() {
        let read = EventKind::Access(AccessKind::Open(AccessMode::Read));
        let closed_after_read = EventKind::Access(AccessKind::Close(AccessMode::Read));
        let touched = EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any));
        for kind in [read, closed_after_read, touched] {
            assert!(!changes_content(&kind), "{kind:?}");
        }
    }

    #[test]
    fn writes_renames_creations_and_removals_are_changes() {
        let kinds = [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Content)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Remove(RemoveKind::File),
        ];
        for kind in kinds {
            assert!(changes_content(&kind), "{kind:?}");
        }
    }
}
