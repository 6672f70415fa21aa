//! Recordings on a single host: `{dir}/{droplet}/{when}-{trace}.json`,
//! with its summary beside it in `….meta`. Names start with the time, so
//! a directory listing is oldest first and eviction drops from its head.
//! Each droplet's summaries are read from its directory once and then
//! kept in memory (at most its bound), so keeping a recording costs two
//! file writes, not a directory scan.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::store::{Bounds, RecordingStore, RecordingSummary, RecordingsUnavailable, outermost};
use crate::storage::files::{remove_if_present, write_atomic};

/// One droplet's recordings, oldest first, with their documents' paths.
type Kept = Vec<(RecordingSummary, PathBuf)>;

/// Recordings in a directory.
pub struct FileRecordings {
    dir: PathBuf,
    /// Each droplet's recordings, once read from its directory.
    index: Mutex<HashMap<String, Kept>>,
}

fn unavailable(err: impl std::fmt::Display) -> RecordingsUnavailable {
    RecordingsUnavailable(err.to_string())
}

/// A trace id or droplet name safe as one path component (trace ids are
/// hex or a client's sane `x-request-id`; names follow the name rule).
fn component(text: &str) -> Result<&str, RecordingsUnavailable> {
    let safe = !text.is_empty()
        && !text.starts_with('.')
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    safe.then_some(text)
        .ok_or_else(|| unavailable(format!("`{text}` cannot name a recording")))
}

/// The summaries in `dir` (one droplet's), oldest first, with their
/// documents' paths.
fn summaries(dir: &Path) -> Kept {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut metas: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "meta"))
        .collect();
    metas.sort();
    metas
        .into_iter()
        .filter_map(|meta| {
            let summary = serde_json::from_slice(&std::fs::read(&meta).ok()?).ok()?;
            Some((summary, meta.with_extension("json")))
        })
        .collect()
}

fn remove(document: &Path) -> std::io::Result<()> {
    remove_if_present(&document.with_extension("meta"))?;
    remove_if_present(document)
}

impl FileRecordings {
    /// Recordings kept under `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            index: Mutex::new(HashMap::new()),
        }
    }

    fn index(&self) -> MutexGuard<'_, HashMap<String, Kept>> {
        self.index
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `droplet`'s recordings, read from its directory the first time.
    fn kept<'a>(
        &self,
        index: &'a mut HashMap<String, Kept>,
        droplet: &str,
    ) -> Result<&'a mut Kept, RecordingsUnavailable> {
        let dir = self.dir.join(component(droplet)?);
        Ok(index
            .entry(droplet.to_string())
            .or_insert_with(|| summaries(&dir)))
    }

    fn put_blocking(
        &self,
        summary: &RecordingSummary,
        document: &[u8],
        bounds: Bounds,
    ) -> Result<(), RecordingsUnavailable> {
        let dir = self.dir.join(component(&summary.droplet)?);
        let trace = component(&summary.trace_id)?;
        let mut index = self.index();
        let kept = self.kept(&mut index, &summary.droplet)?;
        std::fs::create_dir_all(&dir).map_err(unavailable)?;
        for (old, path) in kept.iter() {
            if old.trace_id == summary.trace_id {
                remove(path).map_err(unavailable)?;
            }
        }
        kept.retain(|(old, _)| old.trace_id != summary.trace_id);
        let path = dir.join(format!("{:013}-{trace}.json", summary.recorded_at_ms));
        write_atomic(&path, document).map_err(unavailable)?;
        let meta = serde_json::to_vec(summary).map_err(unavailable)?;
        write_atomic(&path.with_extension("meta"), &meta).map_err(unavailable)?;
        kept.push((summary.clone(), path));
        let mut bytes: u64 = kept.iter().map(|(kept, _)| kept.bytes).sum();
        while kept.len() as u64 > bounds.count || bytes > bounds.bytes {
            let (old, path) = kept.remove(0);
            remove(&path).map_err(unavailable)?;
            bytes = bytes.saturating_sub(old.bytes);
        }
        Ok(())
    }

    /// The names of the droplets with recordings (on disk or kept).
    fn droplets(&self, droplet: Option<&str>) -> Vec<String> {
        if let Some(droplet) = droplet {
            return vec![droplet.to_string()];
        }
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.path().is_dir())
            .filter_map(|entry| entry.file_name().into_string().ok())
            .collect()
    }

    /// Every kept summary of `droplet` (or of all), with its path.
    fn find(&self, droplet: Option<&str>) -> Result<Kept, RecordingsUnavailable> {
        let names = self.droplets(droplet);
        let mut index = self.index();
        let mut found = Vec::new();
        for name in names {
            found.extend(self.kept(&mut index, &name)?.iter().cloned());
        }
        Ok(found)
    }
}

#[async_trait::async_trait]
impl RecordingStore for FileRecordings {
    async fn put(
        &self,
        summary: &RecordingSummary,
        document: &[u8],
        bounds: Bounds,
    ) -> Result<(), RecordingsUnavailable> {
        tokio::task::block_in_place(|| self.put_blocking(summary, document, bounds))
    }

    async fn list(
        &self,
        droplet: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RecordingSummary>, RecordingsUnavailable> {
        let mut all: Vec<RecordingSummary> = tokio::task::block_in_place(|| self.find(droplet))?
            .into_iter()
            .map(|(summary, _)| summary)
            .collect();
        all.sort_by_key(|summary| std::cmp::Reverse(summary.recorded_at_ms));
        all.truncate(limit);
        Ok(all)
    }

    async fn get(
        &self,
        trace_id: &str,
        droplet: Option<&str>,
    ) -> Result<Option<(RecordingSummary, Vec<u8>)>, RecordingsUnavailable> {
        tokio::task::block_in_place(|| {
            let found: Kept = self
                .find(droplet)?
                .into_iter()
                .filter(|(summary, _)| summary.trace_id == trace_id)
                .collect();
            let Some(chosen) = outermost(found.iter().map(|(s, _)| s.clone()).collect()) else {
                return Ok(None);
            };
            let Some((_, path)) = found.iter().find(|(summary, _)| *summary == chosen) else {
                return Ok(None);
            };
            match std::fs::read(path) {
                Ok(document) => Ok(Some((chosen, document))),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(err) => Err(unavailable(err)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(trace: &str, at: u64, bytes: u64) -> RecordingSummary {
        RecordingSummary {
            trace_id: trace.into(),
            droplet: "d".into(),
            version: "1-x".into(),
            caller: None,
            recorded_at_ms: at,
            status: 500,
            reason: "error".into(),
            host: "h".into(),
            bytes,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_oldest_go_first_past_either_bound() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = FileRecordings::new(dir.path().to_path_buf());
        let bounds = Bounds {
            count: 3,
            bytes: 25,
        };
        for (i, trace) in ["a", "b", "c", "d"].iter().enumerate() {
            let document = vec![b'x'; 5];
            store
                .put(&summary(trace, 1000 + i as u64, 5), &document, bounds)
                .await
                .expect("kept");
        }
        let kept: Vec<String> = store
            .list(Some("d"), 10)
            .await
            .expect("listed")
            .into_iter()
            .map(|summary| summary.trace_id)
            .collect();
        assert_eq!(kept, ["d", "c", "b"], "past the count, a went");
        store
            .put(&summary("e", 2000, 20), &[b'y'; 20], bounds)
            .await
            .expect("kept");
        let kept = store.list(None, 10).await.expect("listed");
        assert_eq!(kept.len(), 2, "past the bytes, b and c went: {kept:?}");
        let (found, document) = store.get("e", None).await.expect("read").expect("found");
        assert_eq!((found.trace_id.as_str(), document.len()), ("e", 20));
        assert!(store.get("a", None).await.expect("read").is_none());
        assert!(store.get("../x", Some("d")).await.expect("read").is_none());
        assert!(store.get("x", Some("../d")).await.is_err());
    }
}
