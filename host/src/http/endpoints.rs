//! The host's own endpoints: `GET /health` (the host's status) and
//! `GET /metrics` (Prometheus text).

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::app::App;
use crate::error::json_response;

/// `GET /metrics`: every metric in Prometheus text format, with series
/// labelled only by droplets the host serves now (a removed droplet's
/// series leave, so label cardinality stays bounded by the droplets).
pub fn metrics(app: &App) -> Response<Full<Bytes>> {
    let rendered = app
        .metrics
        .as_ref()
        .map(|handle| handle.render())
        .unwrap_or_default();
    let served: HashSet<Arc<str>> = app
        .droplets
        .list()
        .iter()
        .map(|droplet| Arc::clone(&droplet.name))
        .collect();
    let mut text = String::with_capacity(rendered.len());
    for line in rendered.lines() {
        if droplet_label(line).is_none_or(|name| served.contains(name)) {
            text.push_str(line);
            text.push('\n');
        }
    }
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// `GET /health`: the host's own status; 503 once shutdown has begun. In
/// fleet mode it also names the host and says whether the database is
/// reachable (`dependencies.database`: `ok` or `degraded`).
pub fn health(app: &App) -> Response<Full<Bytes>> {
    // Starting: serving, while droplets still compile (a request for one
    // waits for its compilation).
    let (status, word) = if app.shutdown.is_triggered() {
        (StatusCode::SERVICE_UNAVAILABLE, "inactive")
    } else if app.droplets.starting() {
        (StatusCode::OK, "starting")
    } else {
        (StatusCode::OK, "active")
    };
    let mut body = serde_json::json!({
        "status": word,
        "droplets": app.droplets.len(),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": app.started.elapsed().as_secs(),
    });
    // The database is a dependency, not the host's own health: droplets
    // that need no kv keep serving while it is away, so `/health` stays 200
    // and says `degraded`.
    if let Some(database) = &app.database {
        body["dependencies"] = serde_json::json!({
            "database": if database.is_healthy() { "ok" } else { "degraded" },
        });
    }
    if let Some(fleet) = &app.fleet {
        body["host_id"] = serde_json::json!(fleet.host_id());
    }
    json_response(status, &body)
}

/// The value of a sample line's `droplet` label, if it has one.
fn droplet_label(line: &str) -> Option<&str> {
    let (_, rest) = line.split_once("droplet=\"")?;
    rest.split_once('"').map(|(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn droplet_labels_are_found() {
        let line = r#"droplet_requests_total{droplet="hello",class="2xx"} 3"#;
        assert_eq!(droplet_label(line), Some("hello"));
        assert_eq!(droplet_label("droplet_swaps_total 4"), None);
        assert_eq!(droplet_label("# TYPE droplet_requests_total counter"), None);
    }
}
