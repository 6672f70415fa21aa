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
//! | `GET /_admin/recordings[?droplet=]` | recorded calls, newest first |
//! | `GET /_admin/recordings/{trace_id}` | one recording (`droplet-recording/1`) |
//! | `GET /_admin/droplets/{name}/versions/{version}/module` | a stored version's component |
//! | `GET /_admin/queues` | every queue: depth, oldest job, in flight, retrying, dead |
//! | `GET /_admin/queues/{queue}/dead` | its dead-letter list |
//! | `POST /_admin/queues/{queue}/redrive[?job=]` | its dead jobs (or one) ready again |
//! | `GET /_admin/schedules` | every schedule: next instant, last run |
//! | `GET /_admin/openapi.json` | this API, described (no token needed) |
//! | `GET /_admin/ui` | the dashboard (no token needed to load it; it asks for one) |
//!
//! Every data request needs a bearer token with scope `droplets:admin`,
//! verified with the host's keys. With no keys configured the API answers
//! 403 and says how to enable it.

mod deployments;
mod logs;
mod openapi;
mod overview;
mod queues;
mod recordings;
mod reply;
mod rollout_schema;
mod rollouts;
mod route;
pub mod schema;
mod ui;

pub use self::openapi::document;
pub use self::route::{AdminRoute, handle};
