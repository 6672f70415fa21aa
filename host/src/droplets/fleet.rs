//! Fleet mode: many hosts on one PostgreSQL database serve the same
//! droplet versions.
//!
//! A deploy, rollback or removal through any host is committed to the
//! shared store ([`PostgresStore`]) with a `NOTIFY` hint. Every host keeps
//! a `LISTEN` connection of its own and, on a hint, **reconciles**: it
//! reads which version each droplet should serve and makes its table match
//! ([`Droplets::converge`]). Hints are lost while a host is disconnected,
//! so a host also reconciles when it (re)connects and every
//! [`RECONCILE_EVERY`]. Hints only wake the reconciler, which reads the
//! newest wanted state: a storm of deploys is compiled once, at its last
//! version, not once per deploy.
//!
//! Each host records what it serves in `fleet_served` (host, droplet,
//! version, why a version was refused) and a heartbeat in `fleet_hosts`;
//! a host whose heartbeat is older than [`HOST_TIMEOUT`] no longer counts.
//! [`Fleet::view`] turns that into "v7 on 3/3 hosts". A host that shuts
//! down cleanly takes its rows out at once.
//!
//! Compiled code stays per host (`{data}/cache`): only modules travel.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::{Notify, mpsc};
use tokio_postgres::{AsyncMessage, NoTls};

use crate::droplets::Droplets;
use crate::droplets::store::postgres::PostgresStore;
use crate::droplets::version::VersionId;
use crate::ops::shutdown::Shutdown;
use crate::storage::database::{Database, DbError};

/// How often a host reconciles and sends its heartbeat, hint or not.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(3);
/// A host whose heartbeat is older than this does not count.
pub const HOST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait between attempts to get the `LISTEN` connection back.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// This host's part in the fleet.
pub struct Fleet {
    store: Arc<PostgresStore>,
    host_id: String,
    /// Woken by hints and reconnections.
    wake: Notify,
    /// Woken by a rollout's hint: the rollout task follows the decision
    /// now rather than at its next tick.
    rollout_hints: Arc<Notify>,
    /// Versions this host refused, by droplet, with the reason.
    refused: tokio::sync::Mutex<HashMap<String, (VersionId, String)>>,
}

/// What the fleet serves, as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct FleetView {
    /// Hosts whose heartbeat is recent.
    pub hosts: u64,
    /// By droplet.
    pub droplets: HashMap<String, DropletConvergence>,
}

/// How far one droplet's current version has spread.
#[derive(Debug, Clone, Serialize)]
pub struct DropletConvergence {
    /// The version every host should serve.
    pub version: String,
    /// Live hosts serving it.
    pub serving: u64,
    /// Every live host's version of it, and why it refused the wanted one.
    pub on_hosts: Vec<HostServing>,
}

/// What one host serves of a droplet.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HostServing {
    /// The host's id.
    pub host: String,
    /// The version it serves.
    pub version: String,
    /// Why it does not serve the wanted version, if it refused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Fleet {
    /// This host (`host_id`) in the fleet whose store is `store`.
    pub fn new(store: Arc<PostgresStore>, host_id: String) -> Arc<Self> {
        Arc::new(Self {
            store,
            host_id,
            wake: Notify::new(),
            rollout_hints: Arc::new(Notify::new()),
            refused: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// This host's id.
    pub fn host_id(&self) -> &str {
        &self.host_id
    }

    /// Notified on every rollout hint from the fleet.
    pub fn rollout_hints(&self) -> Arc<Notify> {
        Arc::clone(&self.rollout_hints)
    }

    fn db(&self) -> &Arc<Database> {
        self.store.database()
    }

    /// Starts listening for hints and reconciling, until `shutdown`; then
    /// takes this host out of the fleet's records.
    pub fn spawn(self: &Arc<Self>, droplets: Arc<Droplets>, shutdown: &Shutdown) {
        let fleet = Arc::clone(self);
        let stop = shutdown.clone();
        shutdown.spawn_until_triggered(async move { fleet.listen(&stop).await });
        let fleet = Arc::clone(self);
        let stop = shutdown.clone();
        shutdown.spawn(async move {
            loop {
                if let Err(err) = fleet.reconcile(&droplets).await {
                    tracing::warn!(error = %err, "fleet reconciliation failed; retrying");
                }
                tokio::select! {
                    () = fleet.wake.notified() => {
                        // Let a burst of hints settle into one pass.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    () = tokio::time::sleep(RECONCILE_EVERY) => {}
                    () = stop.triggered() => break,
                }
            }
            if let Err(err) = fleet.leave().await {
                tracing::warn!(error = %err, "could not take this host out of the fleet's records");
            }
        });
    }

    /// Keeps a `LISTEN` connection open, waking the reconciler on every
    /// hint and on every (re)connection.
    async fn listen(&self, shutdown: &Shutdown) {
        let channel = self.db().channel();
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.db().config().connect(NoTls).await {
                Ok((client, mut connection)) => {
                    let (hints, mut receive) = mpsc::unbounded_channel();
                    tokio::spawn(async move {
                        let mut messages =
                            futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                        while let Some(Ok(message)) = messages.next().await {
                            if let AsyncMessage::Notification(hint) = message
                                && hints.send(hint.payload().to_string()).is_err()
                            {
                                break;
                            }
                        }
                    });
                    match client.batch_execute(&format!("LISTEN {channel}")).await {
                        Ok(()) => {
                            backoff = Duration::from_millis(200);
                            tracing::debug!(channel = %channel, "listening for deployment hints");
                            // Hints sent while disconnected are lost: look now.
                            self.wake.notify_one();
                            while let Some(hint) = receive.recv().await {
                                tracing::debug!(hint = %hint, "deployment hint");
                                if hint.ends_with(" rollout") {
                                    self.rollout_hints.notify_one();
                                }
                                self.wake.notify_one();
                            }
                            tracing::warn!(database = %self.db().target(), "lost the connection that hears deployment hints; reconnecting");
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "LISTEN failed; retrying")
                        }
                    }
                    drop(client);
                }
                Err(err) => {
                    tracing::debug!(error = %err, "cannot open the hint connection; retrying")
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.triggered() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One pass: heartbeat, converge to the wanted versions, report what
    /// this host serves.
    pub async fn reconcile(&self, droplets: &Droplets) -> Result<(), String> {
        let mut refused = self.refused.lock().await;
        let wanted = || async {
            self.store
                .wanted()
                .await
                .map_err(|err| format!("cannot read the wanted versions: {err}"))
        };
        droplets.converge(wanted, &mut refused).await?;
        self.report(droplets, &refused)
            .await
            .map_err(|err| format!("cannot record what this host serves: {err}"))
    }

    /// Records this host's heartbeat and what it serves.
    async fn report(
        &self,
        droplets: &Droplets,
        refused: &HashMap<String, (VersionId, String)>,
    ) -> Result<(), DbError> {
        let db = self.db();
        let mut client = db.client().await?;
        let tx = client.transaction().await.map_err(|err| db.fail(err))?;
        let steps = async {
            tx.execute(
                "INSERT INTO fleet_hosts (host_id) VALUES ($1)
                 ON CONFLICT (host_id) DO UPDATE SET last_seen = now()",
                &[&self.host_id],
            )
            .await?;
            let served = droplets.list();
            let names: Vec<&str> = served.iter().map(|droplet| &*droplet.name).collect();
            tx.execute(
                "DELETE FROM fleet_served WHERE host_id = $1 AND NOT (name = ANY($2))",
                &[&self.host_id, &names],
            )
            .await?;
            let upsert = tx
                .prepare(
                    "INSERT INTO fleet_served (host_id, name, version, error) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (host_id, name) DO UPDATE
                     SET version = excluded.version, error = excluded.error, updated_at = now()
                     WHERE fleet_served.version IS DISTINCT FROM excluded.version
                        OR fleet_served.error IS DISTINCT FROM excluded.error",
                )
                .await?;
            for droplet in &served {
                let error = match refused.get(&*droplet.name) {
                    Some((version, reason)) => Some(format!("refused {version}: {reason}")),
                    None => droplet.load_error().cloned(),
                };
                tx.execute(
                    &upsert,
                    &[
                        &self.host_id,
                        &&*droplet.name,
                        &droplet.version.as_str(),
                        &error,
                    ],
                )
                .await?;
            }
            Ok::<_, tokio_postgres::Error>(())
        };
        steps.await.map_err(|err| db.fail(err))?;
        tx.commit().await.map_err(|err| db.fail(err))?;
        db.mark_ok();
        Ok(())
    }

    /// Takes this host out of the fleet's records (clean shutdown).
    async fn leave(&self) -> Result<(), DbError> {
        let db = self.db();
        let client = db.client().await?;
        client
            .execute(
                "DELETE FROM fleet_served WHERE host_id = $1",
                &[&self.host_id],
            )
            .await
            .map_err(|err| db.fail(err))?;
        client
            .execute(
                "DELETE FROM fleet_hosts WHERE host_id = $1",
                &[&self.host_id],
            )
            .await
            .map_err(|err| db.fail(err))?;
        Ok(())
    }

    /// How far each droplet's current version has spread over the live
    /// hosts.
    pub async fn view(&self) -> Result<FleetView, DbError> {
        let db = self.db();
        let client = db.client().await?;
        let timeout_s = HOST_TIMEOUT.as_secs_f64();
        let hosts: i64 = client
            .query_one(
                "SELECT count(*) FROM fleet_hosts
                 WHERE last_seen > now() - $1::float8 * interval '1 second'",
                &[&timeout_s],
            )
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|err| db.fail(err))?;
        let rows = client
            .query(
                "SELECT w.name, w.id, s.host_id, s.version, s.error
                 FROM (SELECT c.name, v.id FROM droplet_current c
                       JOIN droplet_versions v ON v.name = c.name AND v.seq = c.seq) w
                 LEFT JOIN (SELECT s.* FROM fleet_served s JOIN fleet_hosts h USING (host_id)
                            WHERE h.last_seen > now() - $1::float8 * interval '1 second') s
                        ON s.name = w.name
                 ORDER BY w.name, s.host_id",
                &[&timeout_s],
            )
            .await
            .map_err(|err| db.fail(err))?;
        let mut droplets: HashMap<String, DropletConvergence> = HashMap::new();
        for row in rows {
            let read = |row: &tokio_postgres::Row| {
                Ok::<_, tokio_postgres::Error>((
                    row.try_get::<_, String>(0)?,
                    row.try_get::<_, String>(1)?,
                    row.try_get::<_, Option<String>>(2)?,
                    row.try_get::<_, Option<String>>(3)?,
                    row.try_get::<_, Option<String>>(4)?,
                ))
            };
            let (name, wanted, host, version, error) = read(&row).map_err(|err| db.fail(err))?;
            let entry = droplets.entry(name).or_insert_with(|| DropletConvergence {
                version: wanted.clone(),
                serving: 0,
                on_hosts: Vec::new(),
            });
            if let (Some(host), Some(version)) = (host, version) {
                entry.serving += (version == wanted) as u64;
                entry.on_hosts.push(HostServing {
                    host,
                    version,
                    error,
                });
            }
        }
        Ok(FleetView {
            hosts: hosts.max(0) as u64,
            droplets,
        })
    }
}
