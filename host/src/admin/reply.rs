//! What every admin handler answers with: a typed JSON body, the droplet a
//! path names, and the fleet's view of each droplet.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use super::schema::FleetState;
use std::sync::Arc;

use crate::app::App;
use crate::droplets::Droplet;
use crate::droplets::fleet::FleetView;
use crate::error::{HostError, json_response};

/// A JSON response from a typed body.
pub fn typed<T: Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    match serde_json::to_value(body) {
        Ok(value) => json_response(status, &value),
        Err(_) => HostError::Internal.into_response(""),
    }
}

/// The droplet called `name`, or 404.
pub fn named(app: &App, name: &str) -> Result<Arc<Droplet>, HostError> {
    app.droplets
        .get(name)
        .ok_or_else(|| HostError::DropletNotFound(format!("no droplet named `{name}`")))
}

/// In fleet mode, how far the fleet's current version of each droplet has
/// spread; `None` outside a fleet. When the database cannot be read, every
/// droplet says so instead of failing the whole answer.
pub async fn fleet_view(app: &App) -> Option<Result<FleetView, String>> {
    let fleet = app.fleet.as_ref()?;
    Some(fleet.view().await.map_err(|err| err.to_string()))
}

/// A droplet's `fleet` field: `"2-ab… on 3/3 hosts"` and the detail.
pub fn convergence(view: &Result<FleetView, String>, name: &str, detail: bool) -> FleetState {
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

/// Query parameter `key`'s `value` as a whole number, or a 400 saying so.
pub fn whole_number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, HostError> {
    value.parse().map_err(|_| {
        HostError::BadRequest(format!("`{key}` must be a whole number, not `{value}`"))
    })
}
