//! The admin API's OpenAPI 3 document, generated from the handlers'
//! annotations and the body types in [`super::schema`] (`utoipa`), served
//! at `GET /_admin/openapi.json`.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::schema;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "droplet admin API",
        description = "Deploy (plainly or as a canary the host judges), inspect, roll back and remove droplets, and watch them (the dashboard's data). Every route but the document and the dashboard's files needs a bearer token with scope `droplets:admin`. Every failure answers the same JSON error body."
    ),
    paths(
        super::deployments::list,
        super::deployments::detail,
        super::deployments::deploy,
        super::deployments::remove,
        super::deployments::rollback,
        super::rollouts::status,
        super::rollouts::promote,
        super::rollouts::abort,
        super::overview::overview,
        super::overview::series,
        super::logs::logs,
        super::recordings::list,
        super::recordings::get,
        super::recordings::module,
        super::queues::list,
        super::queues::dead,
        super::queues::redrive,
        super::queues::schedules,
        openapi_json,
        super::ui::page,
        super::ui::file,
    ),
    components(schemas(schema::ErrorBody, schema::ErrorDetail)),
    modifiers(&Bearer),
    tags(
        (name = "droplets", description = "Deployments"),
        (name = "rollouts", description = "Canary rollouts: status, promote, abort (a canary deploy starts one)"),
        (name = "recordings", description = "Recorded droplet calls and the modules they ran on, for `droplet replay`"),
        (name = "jobs", description = "Queues (depth, dead letters, re-drive) and schedules (next and last runs)"),
        (name = "dashboard", description = "Live figures, series and log tail"),
        (name = "meta", description = "This document and the dashboard's files")
    )
)]
struct AdminApi;

/// Adds the `bearer` security scheme (a JWT with scope `droplets:admin`).
struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT carrying the scope `droplets:admin`, verified with the host's keys",
                    ))
                    .build(),
            ),
        );
    }
}

/// This document.
#[utoipa::path(
    get,
    path = "/_admin/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The admin API's OpenAPI 3 document", content_type = "application/json"))
)]
#[allow(dead_code)] // The route is answered by `response`; this is its description.
fn openapi_json() {}

/// The document, built once.
pub fn document() -> &'static str {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut api = AdminApi::openapi();
        api.info.version = env!("CARGO_PKG_VERSION").to_string();
        api.to_pretty_json().unwrap_or_else(|_| "{}".to_string())
    })
}

/// `GET /_admin/openapi.json`.
pub fn response() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(document().as_bytes())));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
