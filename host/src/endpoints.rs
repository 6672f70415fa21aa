//! The host's own endpoints: `GET /health` (the host's status) and
//! `GET /metrics` (Prometheus text).

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::app::App;
use crate::error::json_response;

/// `GET /metrics`: every metric in Prometheus text format.
pub fn metrics(app: &App) -> Response<Full<Bytes>> {
    let text = app
        .metrics
        .as_ref()
        .map(|handle| handle.render())
        .unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// `GET /health`: the host's own status; 503 once shutdown has begun.
pub fn health(app: &App) -> Response<Full<Bytes>> {
    let (status, word) = if app.shutdown.is_triggered() {
        (StatusCode::SERVICE_UNAVAILABLE, "inactive")
    } else {
        (StatusCode::OK, "active")
    };
    json_response(
        status,
        &serde_json::json!({
            "status": word,
            "droplets": app.droplets.len(),
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": app.started.elapsed().as_secs(),
        }),
    )
}
