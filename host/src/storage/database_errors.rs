//! How the database fails: [`DbError`] while serving (a statement refused,
//! or the database away), [`ConnectError`] at start-up.

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database cannot be reached (or a connection broke).
    #[error("the database is unreachable")]
    Unreachable,
    /// A statement failed.
    #[error("the database refused a statement")]
    Statement,
}

/// Why the host could not start on its database.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `DATABASE_URL` does not parse.
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    BadUrl(String),
    /// The pool could not be built.
    #[error("cannot build the database pool: {0}")]
    Pool(String),
    /// The database answered, but cannot be used (a refused login, a
    /// missing database).
    #[error("the database at {target} cannot be used: {why}")]
    Unusable {
        /// Host and port, never the URL.
        target: String,
        /// Its answer.
        why: String,
    },
    /// The database did not answer within the connect timeout.
    #[error("cannot reach the database at {target} (DATABASE_URL) after {seconds} s: {why}")]
    Unreachable {
        /// Host and port.
        target: String,
        /// How long the host tried.
        seconds: u64,
        /// The last failure.
        why: String,
    },
    /// A migration step failed.
    #[error("migrating the database at {target}: {step}: {why}")]
    Migration {
        /// Host and port.
        target: String,
        /// The step.
        step: String,
        /// Its failure.
        why: String,
    },
    /// The schema is newer than this host knows.
    #[error(
        "the database at {target} has schema version {applied}, newer than this host knows ({newest}); upgrade the host"
    )]
    Newer {
        /// Host and port.
        target: String,
        /// The database's schema version.
        applied: i32,
        /// This host's newest.
        newest: i32,
    },
}
