//! Why a host could not start ([`StartError`]), and the two things it
//! settles before anything else: the data directory's lock and its id.

use crate::droplets::startup::StartupError;
use crate::guest::runtime::RuntimeError;
use crate::identity::keys::KeyError;
use crate::storage::kv::OpenError;
use crate::storage::queues::QueueError;

/// Takes `{data}/host.lock`, so that a second host on the same data
/// directory is refused with a clear reason (not a storage lock error).
pub(super) fn lock_data_dir(data_dir: &std::path::Path) -> Result<std::fs::File, StartError> {
    let path = data_dir.join("host.lock");
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|err| StartError::io("open", &path, err))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StartError::DataDirInUse {
            dir: data_dir.display().to_string(),
            lock: path.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(err)) => Err(StartError::io("lock", &path, err)),
    }
}

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The JWT settings do not make a verifier.
    #[error("invalid JWT configuration: {0}")]
    Jwt(#[from] KeyError),
    /// A file or directory the host needs could not be made or read.
    #[error("cannot {action} {path}: {cause}")]
    Io {
        /// What the host tried.
        action: &'static str,
        /// On what.
        path: String,
        /// Why not.
        cause: std::io::Error,
    },
    /// Another host holds the data directory.
    #[error(
        "another droplet host is using the data directory {dir} (it holds {lock}); give each host its own --data"
    )]
    DataDirInUse {
        /// The directory.
        dir: String,
        /// Its lock file.
        lock: String,
    },
    /// The kv backend (and its database) could not be opened.
    #[error(transparent)]
    Kv(#[from] OpenError),
    /// The outbound client could not be built.
    #[error("{0}")]
    Outbound(String),
    /// The runtime could not be built.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The queue store could not be opened.
    #[error("cannot open the queue store: {0}")]
    Queues(QueueError),
    /// The droplets could not be loaded at all.
    #[error(transparent)]
    Droplets(#[from] StartupError),
}

impl StartError {
    pub(super) fn io(action: &'static str, path: &std::path::Path, cause: std::io::Error) -> Self {
        StartError::Io {
            action,
            path: path.display().to_string(),
            cause,
        }
    }
}

/// `{hostname}:{port}`: stable across restarts, so a host that comes back
/// takes its own place in the fleet's records.
pub(super) fn default_host_id(port: u16) -> String {
    let mut name = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length, and gethostname
    // writes at most that many bytes.
    let ok = unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) } == 0;
    let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    let host = if ok && len > 0 {
        String::from_utf8_lossy(&name[..len]).into_owned()
    } else {
        "host".to_string()
    };
    format!("{host}:{port}")
}
