//! The admin API: deploy, list, inspect, roll back and remove droplets.
//!
//! | request | does |
//! | --- | --- |
//! | `GET /_admin/droplets` | every droplet: version, state, limits, counters |
//! | `GET /_admin/droplets/{name}` | one droplet, with its stored versions |
//! | `PUT /_admin/droplets/{name}` | deploys `{"module": base64, "manifest": toml?}`; `module` may be left out to change only the manifest |
//! | `DELETE /_admin/droplets/{name}[?purge=true]` | removes it (and its kv data with `purge`) |
//! | `POST /_admin/droplets/{name}/rollback` | serves the previous version again |
//!
//! Every request needs a bearer token with scope `droplets:admin`, verified
//! with the host's keys. With no keys configured the API answers 403 and
//! says how to enable it.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::App;
use crate::body::{self, BodyError};
use crate::droplets::{ChangeError, Droplet, Published};
use crate::error::{HostError, json_response};
use crate::fleet::FleetView;
use crate::policy;
use crate::router::clip;

/// A deploy request body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Deploy {
    /// The module, base64 (standard alphabet, padded).
    module: Option<String>,
    /// The manifest's TOML text.
    manifest: Option<String>,
}

/// Answers one admin request (`path` is what follows `/_admin`).
pub async fn handle(
    app: &App,
    req: Request<Incoming>,
    path: &str,
) -> Result<Response<Full<Bytes>>, HostError> {
    policy::authorize_admin(app.verifier(), req.headers())?;
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    match (method, segments.as_slice()) {
        (Method::GET, ["droplets"]) => Ok(list(app).await),
        (Method::GET, ["droplets", name]) => detail(app, name).await,
        (Method::PUT, ["droplets", name]) => deploy(app, name, req).await,
        (Method::DELETE, ["droplets", name]) => remove(app, name, req.uri().query()).await,
        (Method::POST, ["droplets", name, "rollback"]) => rollback(app, name).await,
        (_, ["droplets"] | ["droplets", _] | ["droplets", _, "rollback"]) => {
            Err(HostError::BadRequest(format!(
                "{} is not allowed on /_admin{}",
                req.method(),
                clip(path, 80)
            )))
        }
        _ => Err(HostError::DropletNotFound(format!(
            "no admin endpoint at /_admin{}",
            clip(path, 80)
        ))),
    }
}

fn summary(droplet: &Droplet) -> Value {
    let published = droplet
        .published_at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let (state, reason) = droplet.health();
    let mut value = json!({
        "name": &*droplet.name,
        "version": droplet.version.as_str(),
        "state": state,
        "published_at": published,
        "budget_ms": droplet.manifest.budget_ms,
        "memory_mb": droplet.manifest.memory_mb,
        "max_concurrency": droplet.manifest.max_concurrency,
        "auth": droplet.manifest.auth.as_str(),
        "scopes": droplet.manifest.scopes,
        "stats": droplet.stats.snapshot(),
    });
    if let Some(reason) = reason {
        value["error"] = json!(reason);
    }
    value
}

/// In fleet mode, how far the fleet's current version of each droplet has
/// spread; `None` outside a fleet. When the database cannot be read, every
/// droplet says so instead of failing the whole answer.
async fn fleet_view(app: &App) -> Option<Result<FleetView, String>> {
    let fleet = app.fleet.as_ref()?;
    Some(fleet.view().await.map_err(|err| err.to_string()))
}

/// A droplet's `fleet` field: `"2-ab… on 3/3 hosts"` and the detail.
fn convergence(view: &Result<FleetView, String>, name: &str, detail: bool) -> Value {
    let view = match view {
        Ok(view) => view,
        Err(why) => return json!({ "error": format!("cannot read the fleet's state: {why}") }),
    };
    let Some(droplet) = view.droplets.get(name) else {
        return json!({ "summary": "not in the fleet's store", "hosts": view.hosts });
    };
    let mut value = json!({
        "version": droplet.version,
        "serving": droplet.serving,
        "hosts": view.hosts,
        "summary": format!("{} on {}/{} hosts", droplet.version, droplet.serving, view.hosts),
    });
    if detail {
        value["on_hosts"] = json!(droplet.on_hosts);
    }
    value
}

async fn list(app: &App) -> Response<Full<Bytes>> {
    let view = fleet_view(app).await;
    let droplets: Vec<Value> = app
        .droplets
        .list()
        .iter()
        .map(|droplet| {
            let mut value = summary(droplet);
            if let Some(view) = &view {
                value["fleet"] = convergence(view, &droplet.name, false);
            }
            value
        })
        .collect();
    json_response(StatusCode::OK, &json!({ "droplets": droplets }))
}

async fn detail(app: &App, name: &str) -> Result<Response<Full<Bytes>>, HostError> {
    let droplet = app
        .droplets
        .get(name)
        .ok_or_else(|| HostError::DropletNotFound(format!("no droplet named `{name}`")))?;
    let mut value = summary(&droplet);
    if let Some(view) = fleet_view(app).await {
        value["fleet"] = convergence(&view, name, true);
    }
    let versions: Vec<String> = app
        .droplets
        .history(name)
        .await
        .iter()
        .map(ToString::to_string)
        .collect();
    value["versions"] = json!(versions);
    value["capabilities"] = json!(droplet.manifest.capabilities);
    Ok(json_response(StatusCode::OK, &value))
}

async fn deploy(
    app: &App,
    name: &str,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, HostError> {
    let limit = app.admin_max_body_bytes;
    let (parts, body) = req.into_parts();
    let body = body::read_limited(&parts.headers, body, limit, Some(app.body_read_timeout))
        .await
        .map_err(|err| match err {
            BodyError::TooLarge => HostError::BodyTooLarge {
                limit_kb: (limit / 1024) as u64,
            },
            BodyError::TimedOut => {
                HostError::BadRequest("the deploy body did not arrive in time".to_string())
            }
            BodyError::Unreadable => {
                HostError::BadRequest("the deploy body could not be read".to_string())
            }
        })?;
    let deploy: Deploy = serde_json::from_slice(&body).map_err(|err| {
        HostError::BadRequest(format!(
            "the deploy body must be JSON {{\"module\": base64, \"manifest\": toml}}: {err}"
        ))
    })?;
    let existing = app.droplets.get(name);
    let module = match deploy.module {
        Some(module) => base64::engine::general_purpose::STANDARD
            .decode(module.trim())
            .map_err(|err| HostError::BadRequest(format!("`module` is not valid base64: {err}")))?,
        None => {
            let Some(current) = &existing else {
                return Err(HostError::BadRequest(
                    "a new droplet needs a `module`".to_string(),
                ));
            };
            current_module(app, &current.name).await?
        }
    };
    let published = app
        .droplets
        .publish(name, module, deploy.manifest, "admin")
        .await
        .map_err(change_error)?;
    let status = if existing.is_none() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let changed = matches!(published, Published::New(_));
    Ok(json_response(
        status,
        &json!({ "name": name, "version": published.version().as_str(), "changed": changed }),
    ))
}

async fn remove(
    app: &App,
    name: &str,
    query: Option<&str>,
) -> Result<Response<Full<Bytes>>, HostError> {
    let purge = query.is_some_and(|query| {
        form_urlencoded::parse(query.as_bytes())
            .any(|(key, value)| key == "purge" && (value == "true" || value == "1"))
    });
    if app.droplets.get(name).is_none() {
        return Err(HostError::DropletNotFound(format!(
            "no droplet named `{name}`"
        )));
    }
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
    Ok(json_response(
        StatusCode::OK,
        &json!({ "removed": name, "purged": purge }),
    ))
}

async fn rollback(app: &App, name: &str) -> Result<Response<Full<Bytes>>, HostError> {
    let version = app.droplets.rollback(name).await.map_err(change_error)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "name": name, "version": version.as_str() }),
    ))
}

/// The module `name` serves now, read from the deployment store off the
/// async workers.
async fn current_module(app: &App, name: &Arc<str>) -> Result<Vec<u8>, HostError> {
    let (droplets, name) = (Arc::clone(&app.droplets), Arc::clone(name));
    tokio::task::spawn_blocking(move || droplets.current_module(&name))
        .await
        .map_err(|_| HostError::BadRequest("reading the current module was abandoned".into()))?
        .map_err(|err| HostError::BadRequest(format!("cannot reuse the current module: {err}")))
}

fn change_error(err: ChangeError) -> HostError {
    match err {
        ChangeError::NotFound(name) => {
            HostError::DropletNotFound(format!("no droplet named `{name}`"))
        }
        ChangeError::NoPrevious(_) | ChangeError::Invalid(_) => {
            HostError::BadRequest(err.to_string())
        }
        ChangeError::Storage(reason) => HostError::StoreUnavailable(reason),
    }
}
