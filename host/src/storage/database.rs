//! PostgreSQL, the shared engine of a fleet: the connection pool, the
//! start-up connection (retried with back-off, bounded), the versioned
//! schema migrations (run under an advisory lock, so hosts starting
//! together do not race), and the database's health as `/health` shows it.
//!
//! The pool is `deadpool-postgres` over `tokio-postgres`: async end to end,
//! no ORM, statements prepared once per connection and cached. Everything
//! the host stores lives in the connection's current schema (the first of
//! its `search_path`), so several fleets, or tests, can share one database.
//!
//! The database URL is a host secret: it is never logged and never reaches
//! a guest; errors name only the host and port.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use sha2::Digest;
use tokio_postgres::NoTls;

pub use super::database_errors::{ConnectError, DbError};
use super::migrations::{MIGRATION_LOCK, MIGRATIONS};
use crate::ops::shutdown::Shutdown;

/// How the host reaches its database.
#[derive(Clone)]
pub struct DatabaseSettings {
    /// `postgres://…` (a secret: never printed).
    pub url: String,
    /// Connections in the pool.
    pub pool_size: usize,
    /// How long start-up keeps retrying an unreachable database.
    pub connect_timeout: Duration,
}

impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &"<redacted>")
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// A pool of connections to the host's database, and its health.
pub struct Database {
    pool: Pool,
    config: tokio_postgres::Config,
    /// `host:port`, for errors and logs (never the URL).
    target: String,
    /// The schema everything lives in.
    schema: String,
    /// Whether the last contact with the database worked.
    healthy: AtomicBool,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("target", &self.target)
            .field("schema", &self.schema)
            .finish()
    }
}

impl Database {
    /// Connects, retrying with back-off until `settings.connect_timeout`,
    /// then runs the migrations. The error names the host and port, never
    /// the URL. The pool's probe of the database's health runs until
    /// `shutdown`.
    pub async fn connect(
        settings: &DatabaseSettings,
        shutdown: &Shutdown,
    ) -> Result<Arc<Self>, ConnectError> {
        let mut config = settings
            .url
            .parse::<tokio_postgres::Config>()
            .map_err(|err| ConnectError::BadUrl(err.to_string()))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name("droplet");
        }
        let target = target_of(&config);
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|err| ConnectError::Pool(err.to_string()))?;

        let started = Instant::now();
        let mut backoff = Duration::from_millis(200);
        let schema = loop {
            match first_contact(&pool).await {
                Ok(schema) => break schema,
                Err(FirstContact::Fatal(why)) => {
                    return Err(ConnectError::Unusable { target, why });
                }
                Err(FirstContact::Unreachable(why)) => {
                    if started.elapsed() + backoff > settings.connect_timeout {
                        return Err(ConnectError::Unreachable {
                            target,
                            seconds: started.elapsed().as_secs(),
                            why,
                        });
                    }
                    tracing::warn!(database = %target, error = %why, retry_in_ms = backoff.as_millis() as u64, "database unreachable; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        let database = Arc::new(Self {
            pool,
            config,
            target,
            schema,
            healthy: AtomicBool::new(true),
        });
        database.migrate().await?;
        database.spawn_probe(shutdown);
        Ok(database)
    }

    /// `host:port` of the database.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The schema the host's tables live in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The channel deployment hints travel on: one per schema, so fleets
    /// sharing a database do not hear each other.
    pub fn channel(&self) -> String {
        let hash = format!("{:x}", sha2::Sha256::digest(self.schema.as_bytes()));
        format!("droplet_deploys_{}", &hash[..16])
    }

    /// The connection settings (for a dedicated `LISTEN` connection).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The most connections the pool holds.
    pub fn pool_size(&self) -> usize {
        self.pool.status().max_size
    }

    /// Whether the last contact with the database worked.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// A pooled connection. Failing to get one marks the database degraded.
    pub async fn client(&self) -> Result<Object, DbError> {
        match self.pool.get().await {
            Ok(client) => Ok(client),
            Err(err) => {
                self.mark_unreachable(&err);
                Err(DbError::Unreachable)
            }
        }
    }

    /// Turns a statement's error into a [`DbError`], logging it and
    /// marking the database degraded if the connection broke.
    pub fn fail(&self, err: tokio_postgres::Error) -> DbError {
        if err.code().is_none() {
            self.mark_unreachable(&err);
            DbError::Unreachable
        } else {
            tracing::error!(database = %self.target, error = %err, "database statement failed");
            DbError::Statement
        }
    }

    /// Records a successful contact.
    pub fn mark_ok(&self) {
        if !self.healthy.swap(true, Ordering::Relaxed) {
            tracing::info!(database = %self.target, "database reachable again");
        }
    }

    fn mark_unreachable(&self, err: &dyn fmt::Display) {
        if self.healthy.swap(false, Ordering::Relaxed) {
            tracing::error!(database = %self.target, error = %err, "database unreachable");
        }
    }

    /// Brings the schema to the newest version, under an advisory lock held
    /// for the transaction: a second host starting now waits, then finds
    /// nothing left to do.
    async fn migrate(&self) -> Result<(), ConnectError> {
        let failed = |step: &str, err: &dyn fmt::Display| ConnectError::Migration {
            target: self.target.clone(),
            step: step.to_string(),
            why: err.to_string(),
        };
        let mut client = self
            .pool
            .get()
            .await
            .map_err(|err| failed("no connection", &err))?;
        let tx = client
            .transaction()
            .await
            .map_err(|err| failed("begin", &err))?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))",
            &[&MIGRATION_LOCK],
        )
        .await
        .map_err(|err| failed("lock", &err))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS droplet_schema_migrations (
                 version integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(|err| failed("version table", &err))?;
        let applied: i32 = tx
            .query_one(
                "SELECT coalesce(max(version), 0) FROM droplet_schema_migrations",
                &[],
            )
            .await
            .map_err(|err| failed("read version", &err))?
            .get(0);
        let newest = MIGRATIONS.len() as i32;
        if applied > newest {
            return Err(ConnectError::Newer {
                target: self.target.clone(),
                applied,
                newest,
            });
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
            let version = index as i32 + 1;
            tx.batch_execute(sql)
                .await
                .map_err(|err| failed(&format!("version {version}"), &err))?;
            tx.execute(
                "INSERT INTO droplet_schema_migrations (version) VALUES ($1)",
                &[&version],
            )
            .await
            .map_err(|err| failed("record version", &err))?;
        }
        tx.commit().await.map_err(|err| failed("commit", &err))?;
        if applied < newest {
            tracing::info!(database = %self.target, schema = %self.schema, from = applied, to = newest, "database migrated");
        }
        Ok(())
    }

    /// Checks the database every 2 s, so `/health` tells when it went away
    /// and when it came back, even with no traffic.
    fn spawn_probe(self: &Arc<Self>, shutdown: &Shutdown) {
        let weak = Arc::downgrade(self);
        shutdown.spawn_until_triggered(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(2));
            loop {
                interval.tick().await;
                let Some(database) = weak.upgrade() else {
                    break;
                };
                let probe = async {
                    let client = database.client().await?;
                    client
                        .simple_query("SELECT 1")
                        .await
                        .map_err(|err| database.fail(err))
                };
                match tokio::time::timeout(Duration::from_secs(2), probe).await {
                    Ok(Ok(_)) => database.mark_ok(),
                    Ok(Err(_)) => {}
                    Err(_) => database.mark_unreachable(&"the health probe timed out"),
                }
            }
        });
    }
}

/// Why the first contact failed.
enum FirstContact {
    /// Worth retrying: the server is not (yet) there.
    Unreachable(String),
    /// Not worth retrying: the server answered and refused.
    Fatal(String),
}

/// Connects once and reads the schema tables will live in.
async fn first_contact(pool: &Pool) -> Result<String, FirstContact> {
    let client = pool.get().await.map_err(|err| match &err {
        // A server that answers with an error is there: retrying will not
        // fix a wrong password or database, except while it starts or
        // shuts down (class 57, operator intervention).
        deadpool_postgres::PoolError::Backend(pg)
            if pg.code().is_some_and(|code| !code.code().starts_with("57")) =>
        {
            FirstContact::Fatal(pg.to_string())
        }
        _ => FirstContact::Unreachable(err.to_string()),
    })?;
    let row = client
        .query_one("SELECT current_schema()", &[])
        .await
        .map_err(|err| FirstContact::Fatal(err.to_string()))?;
    let schema: Option<String> = row
        .try_get(0)
        .map_err(|err| FirstContact::Fatal(err.to_string()))?;
    schema.ok_or_else(|| {
        FirstContact::Fatal(
            "no schema is selected (the search_path names no schema that exists)".to_string(),
        )
    })
}

/// `host:port` of the first host the configuration names.
fn target_of(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_names_host_and_port_but_never_the_password() {
        let config: tokio_postgres::Config = "postgres://app:hunter2@db.internal:6432/fleet"
            .parse()
            .unwrap();
        let target = target_of(&config);
        assert_eq!(target, "db.internal:6432");
        let settings = DatabaseSettings {
            url: "postgres://app:hunter2@db.internal/fleet".to_string(),
            pool_size: 4,
            connect_timeout: Duration::from_secs(1),
        };
        assert!(!format!("{settings:?}").contains("hunter2"));
    }
}
