//! A droplet's recent log lines for the dashboard's live tail.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;

use super::reply::{named, typed, whole_number};
use crate::app::App;
use crate::error::HostError;
use crate::ops::log_tail::{self, TailPage};

/// Log lines one tail request returns at most.
const MAX_TAIL_LINES: usize = 500;

/// What the tail was asked for.
#[derive(Debug, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct LogsQuery {
    /// Only lines newer than this (the `next` of the previous answer).
    after: Option<u64>,
    /// Only the lines of this trace id.
    trace_id: Option<String>,
    /// Lines to return at most (default 200, at most 500): the newest.
    limit: Option<usize>,
}

/// A droplet's recent log lines: its own lines (log, stdout, stderr), its
/// access lines and its failures, as the host's JSON log has them.
#[utoipa::path(
    get,
    path = "/_admin/droplets/{name}/logs",
    tag = "dashboard",
    params(("name" = String, Path, description = "The droplet's name"), LogsQuery),
    responses(
        (status = 200, description = "Its lines after `after`, oldest first", body = TailPage),
        (status = 400, description = "A bad number", body = super::schema::ErrorBody),
        (status = 401, description = "No valid token", body = super::schema::ErrorBody),
        (status = 403, description = "Not an admin token", body = super::schema::ErrorBody),
        (status = 404, description = "No droplet by that name", body = super::schema::ErrorBody),
        (status = 503, description = "The host keeps no tail (`--log-tail-lines 0`)", body = super::schema::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(super) fn logs(app: &App, name: &str, query: &str) -> Result<Response<Full<Bytes>>, HostError> {
    named(app, name)?;
    let mut asked = LogsQuery::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "after" => asked.after = Some(whole_number(&key, &value)?),
            "trace_id" if !value.is_empty() => asked.trace_id = Some(value.into_owned()),
            "limit" => asked.limit = Some(whole_number(&key, &value)?),
            _ => {}
        }
    }
    let limit = asked.limit.unwrap_or(200).clamp(1, MAX_TAIL_LINES);
    let tail = log_tail::global().ok_or_else(|| HostError::DropletUnavailable {
        name: name.to_string(),
        reason: "this host keeps no log tail (--log-tail-lines 0)".to_string(),
    })?;
    Ok(typed(
        StatusCode::OK,
        &tail.read(name, asked.after, asked.trace_id.as_deref(), limit),
    ))
}
