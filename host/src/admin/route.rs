//! [`AdminRoute`]: every admin route, matched in one place, and
//! [`handle`], which authorizes a request and hands it to its handler.

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;

use super::{deployments, logs, openapi, overview, queues, recordings, rollouts, ui};
use crate::app::App;
use crate::error::{HostError, clip};
use crate::identity::policy;

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
    /// `GET /droplets/{name}/rollout`
    Rollout(&'a str),
    /// `POST /droplets/{name}/rollout/promote`
    Promote(&'a str),
    /// `POST /droplets/{name}/rollout/abort`
    Abort(&'a str),
    /// `GET /droplets/{name}/logs`
    Logs(&'a str),
    /// `GET /droplets/{name}/versions/{version}/module`
    Module(&'a str, &'a str),
    /// `GET /recordings`
    Recordings,
    /// `GET /recordings/{trace_id}`
    Recording(&'a str),
    /// `GET /queues`
    Queues,
    /// `GET /queues/{queue}/dead`
    DeadJobs(&'a str),
    /// `POST /queues/{queue}/redrive`
    Redrive(&'a str),
    /// `GET /schedules`
    Schedules,
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
            (&Method::GET, ["droplets", name, "rollout"]) => Self::Rollout(name),
            (&Method::POST, ["droplets", name, "rollout", "promote"]) => Self::Promote(name),
            (&Method::POST, ["droplets", name, "rollout", "abort"]) => Self::Abort(name),
            (&Method::GET, ["droplets", name, "logs"]) => Self::Logs(name),
            (&Method::GET, ["droplets", name, "versions", version, "module"]) => {
                Self::Module(name, version)
            }
            (&Method::GET, ["recordings"]) => Self::Recordings,
            (&Method::GET, ["recordings", trace_id]) => Self::Recording(trace_id),
            (&Method::GET, ["queues"]) => Self::Queues,
            (&Method::GET, ["queues", queue, "dead"]) => Self::DeadJobs(queue),
            (&Method::POST, ["queues", queue, "redrive"]) => Self::Redrive(queue),
            (&Method::GET, ["schedules"]) => Self::Schedules,
            (&Method::GET, ["overview"]) => Self::Overview,
            (&Method::GET | &Method::HEAD, ["openapi.json"]) => Self::OpenApi,
            (&Method::GET | &Method::HEAD, ["ui"]) => Self::Ui(""),
            (&Method::GET | &Method::HEAD, ["ui", asset]) => Self::Ui(asset),
            (
                _,
                ["droplets"]
                | ["droplets", _]
                | ["droplets", _, "rollback" | "series" | "logs" | "rollout"]
                | ["droplets", _, "rollout", "promote" | "abort"]
                | ["droplets", _, "versions", _, "module"]
                | ["recordings"]
                | ["recordings", _]
                | ["queues" | "schedules"]
                | ["queues", _, "dead" | "redrive"]
                | ["overview" | "openapi.json" | "ui"]
                | ["ui", _],
            ) => {
                return Err(HostError::BadRequest(format!(
                    "{method} is not allowed on /_admin{}",
                    clip(path, 80)
                )));
            }
            _ => {
                return Err(HostError::NotFound(format!(
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
            Self::Rollout(_) => "/_admin/droplets/{name}/rollout",
            Self::Promote(_) => "/_admin/droplets/{name}/rollout/promote",
            Self::Abort(_) => "/_admin/droplets/{name}/rollout/abort",
            Self::Logs(_) => "/_admin/droplets/{name}/logs",
            Self::Module(..) => "/_admin/droplets/{name}/versions/{version}/module",
            Self::Recordings => "/_admin/recordings",
            Self::Recording(_) => "/_admin/recordings/{trace_id}",
            Self::Queues => "/_admin/queues",
            Self::DeadJobs(_) => "/_admin/queues/{queue}/dead",
            Self::Redrive(_) => "/_admin/queues/{queue}/redrive",
            Self::Schedules => "/_admin/schedules",
            Self::Overview => "/_admin/overview",
            Self::OpenApi => "/_admin/openapi.json",
            Self::Ui("") => "/_admin/ui",
            Self::Ui(_) => "/_admin/ui/{asset}",
        }
    }

    /// Whether the route answers without a token: the API's description and
    /// the dashboard's static files (which then ask for a token).
    pub fn public(&self) -> bool {
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
        AdminRoute::List => Ok(deployments::list(app).await),
        AdminRoute::Detail(name) => deployments::detail(app, name).await,
        AdminRoute::Deploy(name) => deployments::deploy(app, name, req).await,
        AdminRoute::Remove(name) => deployments::remove(app, name, &query).await,
        AdminRoute::Rollback(name) => deployments::rollback(app, name).await,
        AdminRoute::Series(name) => overview::series(app, name),
        AdminRoute::Rollout(name) => rollouts::status(app, name).await,
        AdminRoute::Promote(name) => rollouts::promote(app, name).await,
        AdminRoute::Abort(name) => rollouts::abort(app, name).await,
        AdminRoute::Logs(name) => logs::logs(app, name, &query),
        AdminRoute::Module(name, version) => recordings::module(app, name, version).await,
        AdminRoute::Recordings => recordings::list(app, &query).await,
        AdminRoute::Recording(trace_id) => recordings::get(app, trace_id, &query).await,
        AdminRoute::Queues => queues::list(app).await,
        AdminRoute::DeadJobs(queue) => queues::dead(app, queue, &query).await,
        AdminRoute::Redrive(queue) => queues::redrive(app, queue, &query).await,
        AdminRoute::Schedules => queues::schedules(app).await,
        AdminRoute::Overview => overview::overview(app, &query).await,
        AdminRoute::OpenApi => Ok(openapi::response()),
        AdminRoute::Ui(asset) => ui::asset(asset),
    }
}
