//! The rollout handlers: a rollout's status, and ending it by hand
//! (promote, abort). A rollout starts with a canary deploy
//! ([`super::deployments::deploy`] with `canary`).

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;

use super::deployments::change_error;
use super::reply::{named, typed};
use super::rollout_schema::RolloutView;
use super::schema;
use crate::app::App;
use crate::error::HostError;

/// The droplet's newest rollout (running, or how the last one ended), with
/// both versions' figures over the current step.
#[utoipa::path(
    get,
    path = "/_admin/droplets/{name}/rollout",
    tag = "rollouts",
    params(("name" = String, Path, description = "The droplet's name")),
    responses(
        (status = 200, description = "The newest rollout", body = RolloutView),
        (status = 401, description = "No valid token", body = schema::ErrorBody),
        (status = 403, description = "Not an admin token", body = schema::ErrorBody),
        (status = 404, description = "No droplet by that name, or it never had a rollout", body = schema::ErrorBody),
        (status = 503, description = "The deployment store is unavailable", body = schema::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn status(app: &App, name: &str) -> Result<Response<Full<Bytes>>, HostError> {
    named(app, name)?;
    let newest = app
        .droplets
        .rollout_history(name)
        .await
        .map_err(change_error)?
        .into_iter()
        .next()
        .ok_or_else(|| HostError::NotFound(format!("droplet `{name}` has had no rollout")))?;
    Ok(typed(StatusCode::OK, &RolloutView::from(newest)))
}

/// Ends the running rollout by hand: promotes the canary (it becomes the
/// current version, as a plain deploy would make it).
#[utoipa::path(
    post,
    path = "/_admin/droplets/{name}/rollout/promote",
    tag = "rollouts",
    params(("name" = String, Path, description = "The droplet's name")),
    responses(
        (status = 200, description = "Promoted", body = RolloutView),
        (status = 401, description = "No valid token", body = schema::ErrorBody),
        (status = 403, description = "Not an admin token", body = schema::ErrorBody),
        (status = 404, description = "No droplet by that name, or no rollout running", body = schema::ErrorBody),
        (status = 409, description = "The rollout was decided meanwhile", body = schema::ErrorBody),
        (status = 503, description = "The deployment store is unavailable", body = schema::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn promote(app: &App, name: &str) -> Result<Response<Full<Bytes>>, HostError> {
    end(app, name, true).await
}

/// Ends the running rollout by hand without promoting: every request goes
/// to the stable version again.
#[utoipa::path(
    post,
    path = "/_admin/droplets/{name}/rollout/abort",
    tag = "rollouts",
    params(("name" = String, Path, description = "The droplet's name")),
    responses(
        (status = 200, description = "Aborted", body = RolloutView),
        (status = 401, description = "No valid token", body = schema::ErrorBody),
        (status = 403, description = "Not an admin token", body = schema::ErrorBody),
        (status = 404, description = "No droplet by that name, or no rollout running", body = schema::ErrorBody),
        (status = 409, description = "The rollout was decided meanwhile", body = schema::ErrorBody),
        (status = 503, description = "The deployment store is unavailable", body = schema::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn abort(app: &App, name: &str) -> Result<Response<Full<Bytes>>, HostError> {
    end(app, name, false).await
}

async fn end(app: &App, name: &str, promote: bool) -> Result<Response<Full<Bytes>>, HostError> {
    named(app, name)?;
    let rollout = app
        .droplets
        .end_rollout(name, promote)
        .await
        .map_err(change_error)?;
    let status = crate::droplets::rollout::lifecycle::RolloutStatus {
        rollout,
        canary: None,
        stable: None,
    };
    Ok(typed(StatusCode::OK, &RolloutView::from(status)))
}
