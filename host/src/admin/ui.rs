//! The dashboard's files, embedded in the binary (no build step, no CDN:
//! it works offline): `GET /_admin/ui` is the page, `GET /_admin/ui/{asset}`
//! its script and style sheet. The page asks for an admin token and keeps it
//! in the browser's session storage only; everything it shows comes from the
//! documented admin routes (`/_admin/overview`, `/_admin/droplets/…`).

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::error::HostError;

const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");

/// The page's CSP: its own script, style and API only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The dashboard page.
#[utoipa::path(
    get,
    path = "/_admin/ui",
    tag = "meta",
    responses((status = 200, description = "The dashboard (HTML); it asks for an admin token", content_type = "text/html"))
)]
#[allow(dead_code)] // Answered by `asset`; this is its description.
pub(super) fn page() {}

/// One of the dashboard's files.
#[utoipa::path(
    get,
    path = "/_admin/ui/{asset}",
    tag = "meta",
    params(("asset" = String, Path, description = "`app.js` or `app.css`")),
    responses(
        (status = 200, description = "The file"),
        (status = 404, description = "No such file", body = super::schema::ErrorBody),
    )
)]
#[allow(dead_code)] // Answered by `asset`; this is its description.
pub(super) fn file() {}

/// Answers `GET /_admin/ui` (`name` empty) and `GET /_admin/ui/{name}`.
pub(super) fn asset(name: &str) -> Result<Response<Full<Bytes>>, HostError> {
    let (body, content_type) = match name {
        "" | "index.html" => (INDEX, "text/html; charset=utf-8"),
        "app.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "app.css" => (STYLE, "text/css; charset=utf-8"),
        _ => {
            return Err(HostError::DropletNotFound(format!(
                "the dashboard has no file `{}`",
                crate::error::clip(name, 80)
            )));
        }
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    Ok(response)
}
