//! Where recorded droplet calls are kept: [`RecordingStore`], with a
//! directory of files on a single host (`file`) and a table in PostgreSQL
//! on a fleet (`postgres`), so any host can fetch any host's recording.
//! Both keep each droplet's recordings within [`Bounds`], dropping the
//! oldest first. A recording is an opaque document here, with its
//! [`RecordingSummary`] beside it.

pub mod file;
pub mod postgres;
pub mod store;

pub use self::store::{Bounds, RecordingStore, RecordingSummary, RecordingsUnavailable};
