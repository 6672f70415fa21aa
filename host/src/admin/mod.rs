//! The admin API: deploy, list, inspect, roll back and remove droplets; the
//! dashboard's data and page; the API's OpenAPI document.
//!
//! | request | does |
//! | --- | --- |
//! | `GET /_admin/droplets` | every droplet: version, state, limits, counters |
//! | `GET /_admin/droplets/{name}` | one droplet, with its manifest and stored versions |
//! | `PUT /_admin/droplets/{name}` | deploys `{"module": base64, "manifest": toml?}`; `module` may be left out to change only the manifest |
//! | `DELETE /_admin/droplets/{name}[?purge=true]` | removes it (and its kv data with `purge`) |
//! | `POST /_admin/droplets/{name}/rollback` | serves the previous version again |
//! | `GET /_admin/overview` | the dashboard's table: rates, latency, errors, kv, sparklines |
//! | `GET /_admin/droplets/{name}/series` | its per-second traffic of the last 5 minutes |
//! | `GET /_admin/droplets/{name}/logs` | its recent log lines (the live tail) |
//! | `GET /_admin/openapi.json` | this API, described (no token needed) |
//! | `GET /_admin/ui` | the dashboard (no token needed to load it; it asks for one) |
//!
//! Every data request needs a bearer token with scope `droplets:admin`,
//! verified with the host's keys. With no keys configured the API answers
//! 403 and says how to enable it.

mod openapi;
mod overview;
pub mod schema;
mod ui;

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::Serialize;

use crate::app::App;
use crate::body::{self, BodyError};
use crate::droplets::{ChangeError, Droplet, DropletState, Published};
use crate::error::{HostError, json_response};
use crate::fleet::FleetView;
use crate::policy;
use crate::router::clip;
use schema::{
    Deploy, Deployed, DropletDetail, DropletList, DropletSummary, FleetState, Removed, RolledBack,
};

pub use openapi::document;
pub use overview::KvUsageCache;

/// Every admin route, as the router matches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRoute<'a> {
    /// `GET /droplets`
    List,
    /// `GET /droplets/{name}`
    Detail(&'a str),
    /// `PUT /droplets/{name}`
    Deploy(&'a str),
    /// `DELETE /droplets/{name}`
    Remove(&'a str),
    /// `POST /droplets/{name}/rollback`
    Rollback(&'a str),
    /// `GET /droplets/{name}/series`
    Series(&'a str),
    /// `GET /droplets/{name}/logs`
    Logs(&'a str),
    /// `GET /overview`
    Overview,
    /// `GET /openapi.json`
    OpenApi,
    /// `GET /ui`, `GET /ui/{asset}`
    Ui(&'a str),
}

impl<'a> AdminRoute<'a> {
    /// The route `method` and `path` (what follows `/_admin`) name, if any.
    pub fn of(method: &Method, path: &'a str) -> Result<Self, HostError> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let route = match (method, segments.as_slice()) {
            (&Method::GET, ["droplets"]) => Self::List,
            (&Method::GET, ["droplets", name]) => Self::Detail(name),
            (&Method::PUT, ["droplets", name]) => Self::Deploy(name),
            (&Method::DELETE, ["droplets", name]) => Self::Remove(name),
            (&Method::POST, ["droplets", name, "rollback"]) => Self::Rollback(name),
            (&Method::GET, ["droplets", name, "series"]) => Self::Series(name),
            (&Method::GET, ["droplets", name, "logs"]) => Self::Logs(name),
            (&Method::GET, ["overview"]) => Self::Overview,
            (&Method::GET | &Method::HEAD, ["openapi.json"]) => Self::OpenApi,
            (&Method::GET | &Method::HEAD, ["ui"]) => Self::Ui(""),
            (&Method::GET | &Method::HEAD, ["ui", asset]) => Self::Ui(asset),
            (
                _,
                ["droplets"]
                | ["droplets", _]
                | ["droplets", _, "rollback" | "series" | "logs"]
                | ["overview" | "openapi.json" | "ui"]
                | ["ui", _],
            ) => {
                return Err(HostError::BadRequest(format!(
                    "{method} is not allowed on /_admin{}",
                    clip(path, 80)
                )));
            }
            _ => {
                return Err(HostError::DropletNotFound(format!(
                    "no admin endpoint at /_admin{}",
                    clip(path, 80)
                )));
            }
        };
        Ok(route)
    }

    /// The route's path as the OpenAPI document writes it.
    pub fn pattern(&self) -> &'static str {
        match self {
            Self::List => "/_admin/droplets",
            Self::Detail(_) | Self::Deploy(_) | Self::Remove(_) => "/_admin/droplets/{name}",
            Self::Rollback(_) => "/_admin/droplets/{name}/rollback",
            Self::Series(_) => "/_admin/droplets/{name}/series",
            Self::Logs(_) => "/_admin/droplets/{name}/logs",
            Self::Overview => "/_admin/overview",
            Self::OpenApi => "/_admin/openapi.json",
            Self::Ui("") => "/_admin/ui",
            Self::Ui(_) => "/_admin/ui/{asset}",
        }
    }

    /// Whether the route answers without a token: the API's description and
    /// the dashboard's static files (which then ask for a token).
    fn public(&self) -> bool {
        matches!(self, Self::OpenApi | Self::Ui(_))
    }
}

/// Answers one admin request (`path` is what follows `/_admin`).
pub async fn handle(
    app: &App,
    req: Request<Incoming>,
    path: &str,
) -> Result<Response<Full<Bytes>>, HostError> {
    let route = AdminRoute::of(req.method(), path)?;
    if !route.public() {
        policy::authorize_admin(app.verifier(), req.headers())?;
    }
    let query = req.uri().query().unwrap_or("").to_string();
    match route {
        AdminRoute::List => Ok(list(app).await),
        AdminRoute::Detail(name) => detail(app, name).await,
        AdminRoute::Deploy(name) => deploy(app, name, req).await,
        AdminRoute::Remove(name) => remove(app, name, &query).await,
        AdminRoute::Rollback(name) => rollback(app, name).await,
        AdminRoute::Series(name) => overview::series(app, name),
        AdminRoute::Logs(name) => overview::logs(app, name, &query),
        AdminRoute::Overview => overview::overview(app, &query).await,
        AdminRoute::OpenApi => Ok(openapi::response()),
        AdminRoute::Ui(asset) => ui::asset(asset),
    }
}

/// A JSON response from a typed body.
fn typed<T: Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    match serde_json::to_value(body) {
        Ok(value) => json_response(status, &value),
        Err(_) => HostError::Internal.into_response(""),
    }
}

/// The droplet called `name`, or 404.
fn named(app: &App, name: &str) -> Result<Arc<Droplet>, HostError> {
    app.droplets
        .get(name)
        .ok_or_else(|| HostError::DropletNotFound(format!("no droplet named `{name}`")))
}

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

/// In fleet mode, how far the fleet's current version of each droplet has
/// spread; `None` outside a fleet. When the database cannot be read, every
/// droplet says so instead of failing the whole answer.
async fn fleet_view(app: &App) -> Option<Result<FleetView, String>> {
    let fleet = app.fleet.as_ref()?;
    Some(fleet.view().await.map_err(|err| err.to_string()))
}

/// A droplet's `fleet` field: `"2-ab… on 3/3 hosts"` and the detail.
fn convergence(view: &Result<FleetView, String>, name: &str, detail: bool) -> FleetState {
    let view = match view {
        Ok(view) => view,
        Err(why) => {
            return FleetState {
                summary: "unknown".to_string(),
                error: Some(format!("cannot read the fleet's state: {why}")),
                ..FleetState::default()
            };
        }
    };
    let Some(droplet) = view.droplets.get(name) else {
        return FleetState {
            summary: "not in the fleet's store".to_string(),
            hosts: Some(view.hosts),
            ..FleetState::default()
        };
    };
    FleetState {
        version: Some(droplet.version.clone()),
        serving: Some(droplet.serving),
        hosts: Some(view.hosts),
        summary: format!(
            "{} on {}/{} hosts",
            droplet.version, droplet.serving, view.hosts
        ),
        on_hosts: detail.then(|| droplet.on_hosts.clone()),
        error: None,
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
async fn list(app: &App) -> Response<Full<Bytes>> {
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
async fn detail(app: &App, name: &str) -> Result<Response<Full<Bytes>>, HostError> {
    let droplet = named(app, name)?;
    let mut summary = summary(&droplet);
    if let Some(view) = fleet_view(app).await {
        summary.fleet = Some(convergence(&view, name, true));
    }
    let versions = app
        .droplets
        .history(name)
        .await
        .iter()
        .map(ToString::to_string)
        .collect();
    let (imports, world) = match &droplet.state {
        DropletState::Ready(ready) => (
            Some(ready.imports.clone()),
            Some(ready.pre.world().to_string()),
        ),
        _ => (None, None),
    };
    let detail = DropletDetail {
        summary,
        versions,
        capabilities: droplet.manifest.capabilities.clone(),
        granted: droplet
            .manifest
            .granted()
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
        (status = 400, description = "Bad body, module or manifest: the reason says which", body = schema::ErrorBody),
        (status = 401, description = "No valid token", body = schema::ErrorBody),
        (status = 403, description = "Not an admin token", body = schema::ErrorBody),
        (status = 413, description = "Body over the admin limit", body = schema::ErrorBody),
        (status = 503, description = "The deployment store is unavailable", body = schema::ErrorBody),
    ),
    security(("bearer" = []))
)]
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
    Ok(typed(
        status,
        &Deployed {
            name: name.to_string(),
            version: published.version().as_str().to_string(),
            changed: matches!(published, Published::New(_)),
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
async fn remove(app: &App, name: &str, query: &str) -> Result<Response<Full<Bytes>>, HostError> {
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
async fn rollback(app: &App, name: &str) -> Result<Response<Full<Bytes>>, HostError> {
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
