//! File helpers shared by the host's on-disk stores (deployments, the
//! compiled-code cache).

use std::path::Path;

/// Writes `bytes` to a temporary file beside `path` and renames it there, so
/// a reader sees the old file or the new one, never half of one. Not forced
/// to disk: for what can be rebuilt (the compiled-code cache).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace(path, bytes, false)
}

/// [`write_atomic`], and durable once it returns: the file is synced before
/// the rename and its directory after, so a write acknowledged before a
/// power loss is there after it (published versions, `current`).
pub fn write_durable(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace(path, bytes, true)
}

fn replace(path: &Path, bytes: &[u8], durable: bool) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp{}", fastrand::u64(..)));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        if durable {
            file.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    if durable && let Some(dir) = path.parent() {
        // The rename lives in the directory: sync it too.
        std::fs::File::open(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })?
        .sync_all()?;
    }
    Ok(())
}

/// Removes `path`; a file that is already gone is not an error.
pub fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_writes_leave_only_the_new_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("current");
        write_durable(&path, b"1-old").unwrap();
        write_durable(&path, b"2-new").unwrap();
        write_atomic(&dir.path().join("cache"), b"x").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"2-new");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
    }
}
