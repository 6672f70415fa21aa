//! Where guests' data lives: the kv backends (sled embedded, PostgreSQL on
//! a fleet), the database connection they and the fleet share, recorded
//! droplet calls, queued jobs and schedule runs, and atomic file writes for the host's on-disk stores.
//!
//! Uses only [`crate::ops`].

pub mod database;
pub mod database_errors;
pub mod files;
pub mod group_commit;
pub mod kv;
pub mod migrations;
pub mod queues;
pub mod recordings;
pub mod shared_reads;
