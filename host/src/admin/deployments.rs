//! The deployment handlers: list, inspect, deploy, roll back and remove
//! droplets.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use super::reply::{convergence, fleet_view, named, typed};
use super::rollout_schema::{HistoryEntry, RolloutView};
use super::schema::{
    self, Deploy, Deployed, DropletDetail, DropletList, DropletSummary, Removed, RolledBack,
};
use crate::app::App;
use crate::droplets::rollout::lifecycle::RolloutStatus;
use crate::droplets::store::VersionFiles;
use crate::droplets::{ChangeError, Droplet, Published};
use crate::error::HostError;
use crate::http::request_body;

fn summary(droplet: &Droplet) -> DropletSummary {
    let (state, error) = droplet.health();
    DropletSummary {
        name: droplet.name.to_string(),
        version: droplet.version.as_str().to_string(),
        state,
        error,
        published_at: droplet
            .published_at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs()),
        budget_ms: droplet.manifest.budget_ms,
        memory_mb: droplet.manifest.memory_mb,
        max_concurrency: droplet.manifest.max_concurrency,
        auth: droplet.manifest.auth,
        scopes: droplet.manifest.scopes.clone(),
        stats: droplet.stats.snapshot(),
        fleet: None,
    }
}

/// Every droplet: version, state, limits, counters.
#[utoipa::path(
    get,
    path = "/_admin/droplets",
    tag = "droplets",
    responses(
        (status = 200, description = "Every droplet, by name", body = DropletList),
        (status = 401, description = "No token, or a token that does not verify", body = schema::ErrorBody),
        (status = 403, description = "The token lacks `droplets:admin`, or no keys are configured", body = schema::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(app: &App) -> Response<Full<Bytes>> {
    let view = fleet_view(app).await;
    let droplets = app
        .droplets
        .list()
        .iter()
        .map(|droplet| {
            let mut summary = summary(droplet);
            summary.fleet = view
                .as_ref()
                .map(|view| convergence(view, &droplet.name, false));
            summary
        })
        .collect();
    typed(StatusCode::OK, &DropletList { droplets })
}

/// One droplet: what the list shows, its manifest, capabilities and stored
/// versions.
#[utoipa::path(
    get,
    path = "/_admin/droplets/{name}",
    tag = "droplets",
    params(("name" = String, Path, description = "The droplet's name")),
    responses(
        (status = 200, description = "The droplet", body = DropletDetail),
        (status = 401, description = "No valid token", body = schema::ErrorBody),
        (status = 403, description = "Not an admin token", body = schema::ErrorBody),
        (status = 404, description = "No droplet by that name", body = schema::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn detail(app: &App, name: &str) -> Result<Response<Full<Bytes>>, HostError> {
    let droplet = named(app, name)?;
    let mut summary = summary(&droplet);
    if let Some(view) = fleet_view(app).await {
        summary.fleet = Some(convergence(&view, name, true));
    }
    let stored = app.droplets.history(name).await.map_err(|err| {
        HostError::StoreUnavailable(format!("cannot read the stored versions: {err}"))
    })?;
    let rollouts = app
        .droplets
        .rollout_history(name)
        .await
        .map_err(change_error)?;
    let history = stored
        .iter()
        .map(|version| {
            let rollout = rollouts
                .iter()
                .find(|status| status.rollout.canary == version.as_str());
            HistoryEntry {
                version: version.to_string(),
                current: *version == droplet.version,
                how: rollout
                    .map_or("published", |status| status.rollout.state.as_str())
                    .to_string(),
                reason: rollout.and_then(|status| status.rollout.reason.clone()),
            }
        })
        .collect();
    let versions = stored.iter().map(ToString::to_string).collect();
    let (imports, world) = match droplet.compiled() {
        Some(ready) => (
            Some(ready.imports.clone()),
            Some(ready.pre.world().to_string()),
        ),
        None => (None, None),
    };
    let detail = DropletDetail {
        summary,
        versions,
        history,
        capabilities: droplet.manifest.capabilities.clone(),
        granted: crate::capabilities::granted(&droplet.manifest)
            .into_iter()
            .map(str::to_string)
            .collect(),
        imports,
        world,
        manifest: droplet.manifest.clone(),
        latency: droplet.stats.latency(),
    };
    Ok(typed(StatusCode::OK, &detail))
}

/// Deploys a droplet: a new module and manifest, or a new manifest for the
/// module it serves. The new version is compiled and checked before it
/// replaces the old one in one atomic swap.
#[utoipa::path(
    put,
    path = "/_admin/droplets/{name}",
    tag = "droplets",
    params(("name" = String, Path, description = "The droplet's name")),
    request_body = Deploy,
    responses(
        (status = 200, description = "Deployed over an existing droplet (or unchanged)", body = Deployed),
        (status = 201, description = "A new droplet", body = Deployed),
        (status = 202, description = "A canary deploy: its rollout has started", body = RolloutView),
        (status = 409, description = "A canary deploy while a rollout of the droplet runs", body = schema::ErrorBody),
        (status = 400, description = "Bad body, module or manifest: the reason says which", body = schema::ErrorBody),
        (status = 401, description = "No valid token", body = schema::ErrorBody),
        (status = 403, description = "Not an admin token", body = schema::ErrorBody),
        (status = 413, description = "Body over the admin limit", body = schema::ErrorBody),
        (status = 503, description = "The deployment store is unavailable", body = schema::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn deploy(
    app: &App,
    name: &str,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, HostError> {
    let limit = app.admin_max_body_bytes;
    let (parts, body) = req.into_parts();
    let body = request_body::read_limited(
        &parts.headers,
        body,
        limit,
        Some(app.body_read_timeout),
        &app.request_bodies,
    )
    .await
    .map_err(|err| err.host_error((limit / 1024) as u64))?;
    let deploy: Deploy = serde_json::from_slice(&body.bytes).map_err(|err| {
        HostError::BadRequest(format!(
            "the deploy body must be JSON {{\"module\": base64, \"manifest\": toml}}: {err}"
        ))
    })?;
    let existing = app.droplets.get(name);
    let module = match &deploy.module {
        Some(module) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(module.trim())
                .map_err(|err| {
                    HostError::BadRequest(format!("`module` is not valid base64: {err}"))
                })?,
        ),
        None => None,
    };
    // What is left out is the current version's: a redeploy of a module
    // never resets its manifest (an empty manifest is the defaults).
    let current = match &existing {
        Some(current) if module.is_none() || deploy.manifest.is_none() => {
            Some(current_files(app, &current.name).await?)
        }
        _ => None,
    };
    let (module, kept) = match (module, current) {
        (Some(module), current) => (module, current.map(|(_, manifest)| manifest)),
        (None, Some((module, manifest))) => (module, Some(manifest)),
        (None, None) => {
            return Err(HostError::BadRequest(
                "a new droplet needs a `module`".to_string(),
            ));
        }
    };
    let (manifest, used) = match (deploy.manifest, kept) {
        (Some(given), _) => (Some(given), "given"),
        (None, Some(kept)) => (kept, "kept"),
        (None, None) => (None, "default"),
    };
    if let Some(over) = &deploy.canary {
        let rollout = app
            .droplets
            .start_rollout(name, module, manifest, over)
            .await
            .map_err(change_error)?;
        let status = RolloutStatus {
            rollout,
            canary: None,
            stable: None,
        };
        return Ok(typed(StatusCode::ACCEPTED, &RolloutView::from(status)));
    }
    let published = app
        .droplets
        .publish(name, module, manifest, "admin")
        .await
        .map_err(change_error)?;
    let status = if existing.is_none() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(typed(
        status,
        &Deployed {
            name: name.to_string(),
            version: published.version().as_str().to_string(),
            changed: matches!(published, Published::New(_)),
            manifest: used.to_string(),
        },
    ))
}

/// Removes a droplet; with `purge=true` its kv data too.
#[utoipa::path(
    delete,
    path = "/_admin/droplets/{name}",
    tag = "droplets",
    params(
        ("name" = String, Path, description = "The droplet's name"),
        ("purge" = Option<bool>, Query, description = "Also delete its kv data"),
    ),
    responses(
        (status = 200, description = "Removed", body = Removed),
        (status = 401, description = "No valid token", body = schema::ErrorBody),
        (status = 403, description = "Not an admin token", body = schema::ErrorBody),
        (status = 404, description = "No droplet by that name", body = schema::ErrorBody),
        (status = 503, description = "The store or kv is unavailable", body = schema::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn remove(
    app: &App,
    name: &str,
    query: &str,
) -> Result<Response<Full<Bytes>>, HostError> {
    let purge = form_urlencoded::parse(query.as_bytes())
        .any(|(key, value)| key == "purge" && (value == "true" || value == "1"));
    named(app, name)?;
    app.droplets.remove(name).await.map_err(change_error)?;
    if purge {
        app.kv()
            .purge(name)
            .await
            .map_err(|err| HostError::DropletUnavailable {
                name: name.to_string(),
                reason: format!("removed, but its kv data could not be purged: {err}"),
            })?;
    }
    Ok(typed(
        StatusCode::OK,
        &Removed {
            removed: name.to_string(),
            purged: purge,
        },
    ))
}

/// Serves the previous stored version again.
#[utoipa::path(
    post,
    path = "/_admin/droplets/{name}/rollback",
    tag = "droplets",
    params(("name" = String, Path, description = "The droplet's name")),
    responses(
        (status = 200, description = "The version serving again", body = RolledBack),
        (status = 400, description = "No previous version", body = schema::ErrorBody),
        (status = 401, description = "No valid token", body = schema::ErrorBody),
        (status = 403, description = "Not an admin token", body = schema::ErrorBody),
        (status = 404, description = "No droplet by that name", body = schema::ErrorBody),
        (status = 503, description = "The deployment store is unavailable", body = schema::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn rollback(app: &App, name: &str) -> Result<Response<Full<Bytes>>, HostError> {
    let version = app.droplets.rollback(name).await.map_err(change_error)?;
    Ok(typed(
        StatusCode::OK,
        &RolledBack {
            name: name.to_string(),
            version: version.as_str().to_string(),
        },
    ))
}

/// The module `name` serves now, read from the deployment store off the
/// async workers.
async fn current_files(app: &App, name: &Arc<str>) -> Result<VersionFiles, HostError> {
    match app.droplets.current_files(name).await {
        Ok(Some(files)) => Ok(files),
        Ok(None) => Err(HostError::DropletNotFound(format!(
            "no droplet named `{name}`"
        ))),
        Err(err) => Err(HostError::StoreUnavailable(format!(
            "cannot reuse the current module: {err}"
        ))),
    }
}

pub(super) fn change_error(err: ChangeError) -> HostError {
    match err {
        ChangeError::NotFound(name) => {
            HostError::DropletNotFound(format!("no droplet named `{name}`"))
        }
        // A version whose files could not be read is the store's failure,
        // not the version's.
        ChangeError::Invalid(load) if load.is_read() => {
            HostError::StoreUnavailable(load.to_string())
        }
        ChangeError::NoPrevious(_)
        | ChangeError::BadName(_)
        | ChangeError::Invalid(_)
        | ChangeError::BadRollout(_) => HostError::BadRequest(err.to_string()),
        ChangeError::NoRollout(_) => HostError::NotFound(err.to_string()),
        ChangeError::RolloutRunning(_) | ChangeError::RolloutConflict(_) => {
            HostError::Conflict(err.to_string())
        }
        ChangeError::Storage { .. } | ChangeError::Files { .. } => {
            HostError::StoreUnavailable(err.to_string())
        }
    }
}
