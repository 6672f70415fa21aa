//! Recorded droplet calls, for `droplet replay`: the list, one recording's
//! document, and the module of the version it ran on. Admin scope only:
//! a recording holds what the droplet read (kv values, upstream answers).

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use super::reply::{named, typed, whole_number};
use super::schema;
use crate::app::App;
use crate::droplets::store::StoreError;
use crate::droplets::version::VersionId;
use crate::error::{HostError, clip};
use crate::storage::recordings::{RecordingSummary, RecordingsUnavailable};

/// The most recordings one listing returns.
const MAX_LISTED: usize = 1000;

/// Recordings, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecordingList {
    /// Each recording's summary.
    pub recordings: Vec<RecordingSummary>,
}

fn unavailable(err: RecordingsUnavailable) -> HostError {
    HostError::StoreUnavailable(err.to_string())
}

/// The `droplet` and `limit` a query names.
fn filters(query: &str) -> Result<(Option<String>, Option<usize>), HostError> {
    let (mut droplet, mut limit) = (None, None);
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "droplet" if !value.is_empty() => droplet = Some(value.into_owned()),
            "limit" => limit = Some(whole_number(&key, &value)?),
            _ => {}
        }
    }
    Ok((droplet, limit))
}

/// The newest recordings, of every droplet or of one.
#[utoipa::path(
    get,
    path = "/_admin/recordings",
    tag = "recordings",
    params(
        ("droplet" = Option<String>, Query, description = "Only this droplet's"),
        ("limit" = Option<usize>, Query, description = "At most this many (default 100, at most 1000)"),
    ),
    responses(
        (status = 200, description = "Recordings, newest first", body = RecordingList),
        (status = 401, description = "No valid token", body = schema::ErrorBody),
        (status = 403, description = "Not an admin token", body = schema::ErrorBody),
        (status = 503, description = "The recordings cannot be read", body = schema::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(app: &App, query: &str) -> Result<Response<Full<Bytes>>, HostError> {
    let (droplet, limit) = filters(query)?;
    let limit = limit.unwrap_or(100).clamp(1, MAX_LISTED);
    let recordings = app
        .recorder
        .store()
        .list(droplet.as_deref(), limit)
        .await
        .map_err(unavailable)?;
    Ok(typed(StatusCode::OK, &RecordingList { recordings }))
}

/// One recording, in the documented format `droplet-recording/1`: the
/// request as the droplet saw it, every import call and its answer, the
/// clocks and random bytes it read, its log lines and how it ended.
#[utoipa::path(
    get,
    path = "/_admin/recordings/{trace_id}",
    tag = "recordings",
    params(
        ("trace_id" = String, Path, description = "The request's trace id (`x-trace-id`)"),
        ("droplet" = Option<String>, Query, description = "Which droplet's, when the request reached several (default: the one it reached first)"),
    ),
    responses(
        (status = 200, description = "The recording (format `droplet-recording/1`)", content_type = "application/json", body = Object),
        (status = 401, description = "No valid token", body = schema::ErrorBody),
        (status = 403, description = "Not an admin token", body = schema::ErrorBody),
        (status = 404, description = "No recording of that trace id", body = schema::ErrorBody),
        (status = 503, description = "The recordings cannot be read", body = schema::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    app: &App,
    trace_id: &str,
    query: &str,
) -> Result<Response<Full<Bytes>>, HostError> {
    let (droplet, _) = filters(query)?;
    let (_, document) = app
        .recorder
        .store()
        .get(trace_id, droplet.as_deref())
        .await
        .map_err(unavailable)?
        .ok_or_else(|| {
            HostError::NotFound(format!("no recording of trace `{}`", clip(trace_id, 80)))
        })?;
    let mut response = Response::new(Full::new(Bytes::from(document)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// The module of a stored version: what `droplet replay` runs a recording
/// made on that version against.
#[utoipa::path(
    get,
    path = "/_admin/droplets/{name}/versions/{version}/module",
    tag = "recordings",
    params(
        ("name" = String, Path, description = "The droplet's name"),
        ("version" = String, Path, description = "The version's id"),
    ),
    responses(
        (status = 200, description = "The component", content_type = "application/wasm", body = Vec<u8>),
        (status = 401, description = "No valid token", body = schema::ErrorBody),
        (status = 403, description = "Not an admin token", body = schema::ErrorBody),
        (status = 404, description = "No such droplet, or that version is no longer stored", body = schema::ErrorBody),
        (status = 503, description = "The deployment store is unavailable", body = schema::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn module(
    app: &App,
    name: &str,
    version: &str,
) -> Result<Response<Full<Bytes>>, HostError> {
    named(app, name)?;
    let not_stored = || {
        HostError::NotFound(format!(
            "version `{}` of `{name}` is not stored",
            clip(version, 80)
        ))
    };
    let id = VersionId::parse(version).ok_or_else(not_stored)?;
    let (module, _) = match app.droplets.version_files(name, &id).await {
        Ok(files) => files,
        Err(StoreError::NotStored { .. }) => return Err(not_stored()),
        Err(err) => return Err(HostError::StoreUnavailable(err.to_string())),
    };
    let mut response = Response::new(Full::new(Bytes::from(module)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/wasm"),
    );
    Ok(response)
}
