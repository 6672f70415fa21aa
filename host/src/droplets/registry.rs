//! Registration with the ecosystem's registry: where `REGISTRY_URL` is set,
//! each droplet that loads, and each new version, is registered with
//! `POST {REGISTRY_URL}/register` `{"id", "name", "endpoint", "version"}`
//! and the bearer `REGISTRY_TOKEN`.
//!
//! Registration runs in the background, one worker per droplet that
//! registers its latest version, with a timeout per attempt and
//! exponential backoff between attempts: a registry that is down never
//! delays serving, and a newer version replaces an older one still being
//! retried. Every outcome is logged and counted
//! (`droplet_registrations_total{outcome}`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use serde_json::json;
use tokio::sync::{mpsc, watch};

use crate::droplets::{Droplet, DropletState};
use crate::ops::json_client::{ClientError, JsonClient, error_message};
use crate::ops::shutdown::Shutdown;

/// Where and how to register.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// `REGISTRY_URL`.
    pub url: String,
    /// `REGISTRY_TOKEN`.
    pub token: Option<String>,
    /// `PUBLIC_URL`: droplets are registered at `{PUBLIC_URL}/{name}`.
    pub public_url: String,
}

/// Attempts per version before giving up.
const MAX_ATTEMPTS: u32 = 8;
/// The first wait between attempts; doubled after each failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts the registrar; send it each droplet version to register. It stops
/// at `shutdown`, retries included.
///
/// Each droplet has one worker, which registers the latest version it was
/// sent: a newer version arriving while an older one is being retried
/// replaces it (an older registration never lands after a newer one, and
/// retries never pile up while the registry is down).
pub fn spawn(
    settings: RegistrySettings,
    shutdown: &Shutdown,
) -> Result<mpsc::UnboundedSender<Arc<Droplet>>, ClientError> {
    let client = Arc::new(JsonClient::new(&settings.url, settings.token.clone())?);
    let settings = Arc::new(settings);
    let (sender, mut receive) = mpsc::unbounded_channel::<Arc<Droplet>>();
    let tasks = shutdown.clone();
    shutdown.spawn_until_triggered(async move {
        let mut workers: HashMap<Arc<str>, watch::Sender<Arc<Droplet>>> = HashMap::new();
        while let Some(droplet) = receive.recv().await {
            if let Some(worker) = workers.get(&droplet.name)
                && !worker.is_closed()
            {
                worker.send_replace(droplet);
                continue;
            }
            let name = Arc::clone(&droplet.name);
            let (latest, receiver) = watch::channel(droplet);
            workers.insert(name, latest);
            let (client, settings) = (Arc::clone(&client), Arc::clone(&settings));
            tasks.spawn_until_triggered(worker(client, settings, receiver));
        }
    });
    Ok(sender)
}

/// Registers the latest version of one droplet, starting over whenever a
/// newer one arrives; a version that failed to load is not registered.
async fn worker(
    client: Arc<JsonClient>,
    settings: Arc<RegistrySettings>,
    mut latest: watch::Receiver<Arc<Droplet>>,
) {
    loop {
        let droplet = Arc::clone(&latest.borrow_and_update());
        if !matches!(droplet.state, DropletState::Failed(_)) {
            tokio::select! {
                () = register(&client, &settings, &droplet) => {}
                changed = latest.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    tracing::debug!(droplet = %droplet.name, version = %droplet.version, "a newer version replaces this registration");
                    continue;
                }
            }
        }
        if latest.changed().await.is_err() {
            return;
        }
    }
}

async fn register(client: &JsonClient, settings: &RegistrySettings, droplet: &Droplet) {
    let name = &*droplet.name;
    let body = json!({
        "id": droplet.manifest.id.as_deref().unwrap_or(name),
        "name": name,
        "endpoint": format!("{}/{name}", settings.public_url.trim_end_matches('/')),
        "version": droplet.version.as_str(),
    });
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=MAX_ATTEMPTS {
        let outcome = tokio::time::timeout(
            ATTEMPT_TIMEOUT,
            client.send(Method::POST, "/register", Some(body.clone())),
        )
        .await;
        let failure = match outcome {
            Ok(Ok((status, _))) if (200..300).contains(&status) => {
                metrics::counter!("droplet_registrations_total", "outcome" => "registered")
                    .increment(1);
                tracing::info!(droplet = name, version = %droplet.version, attempt, "registered with the registry");
                return;
            }
            Ok(Ok((status, answer))) => format!("{status}: {}", error_message(&answer)),
            Ok(Err(err)) => err.to_string(),
            Err(_) => "timed out".to_string(),
        };
        metrics::counter!("droplet_registrations_total", "outcome" => "failed_attempt")
            .increment(1);
        tracing::warn!(droplet = name, version = %droplet.version, attempt, error = %failure, "registration failed; retrying");
        if attempt < MAX_ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
    metrics::counter!("droplet_registrations_total", "outcome" => "gave_up").increment(1);
    tracing::error!(droplet = name, version = %droplet.version, attempts = MAX_ATTEMPTS, "registration gave up");
}
