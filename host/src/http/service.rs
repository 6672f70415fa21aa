//! The hyper service: one request in, one response out, whatever happens.
//!
//! A request gets its trace id ([`crate::ops::telemetry::adopt_trace`]), is routed
//! ([`router`]) to a host endpoint ([`endpoints`]), the admin API
//! ([`admin`]), a droplet's contract endpoint ([`contract`]) or the droplet
//! itself ([`dispatch`]). Every error becomes its JSON response here, at
//! this one edge; every response gets the security headers and
//! `x-trace-id` (droplet responses also `x-droplet-version` and
//! `server-timing`); every request ends in one access-log line and, when a
//! droplet was called, its counters and metrics.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::{self, HeaderValue};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::time::Instant;
use tracing::Instrument;

use crate::admin;
use crate::app::App;
use crate::dispatch::droplet_endpoints as contract;
use crate::dispatch::{self, CallReport};
use crate::droplets::stats::DropletStats;
use crate::error::HostError;
use crate::guest::stream::CallBody;
use crate::http::endpoints;
use crate::http::headers::add_security_headers;
use crate::http::router::{self, Route};
use crate::ops::telemetry;
use crate::ops::trace_id::TRACE_ID_HEADER;

/// What the access log says about a request beyond its status.
#[derive(Default)]
struct Outcome {
    droplet: Option<Arc<str>>,
    version: Option<Arc<str>>,
    /// The error code, when the host answered with an error.
    error: Option<&'static str>,
    /// The droplet's counters, when the droplet itself was called.
    stats: Option<Arc<DropletStats>>,
    /// What the droplet call did, when there was one.
    call: CallReport,
}

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Droplets and the admin API on one origin (no `--admin-listen`).
    Both,
    /// Droplets, `/health` and `/metrics`; `/_admin` is not here.
    Droplets,
    /// The admin API and dashboard, `/health` and `/metrics`; no droplets.
    Admin,
}

/// Answers one request. Never fails: every error becomes its JSON response.
pub async fn handle(app: Arc<App>, req: Request<Incoming>, side: Side) -> Response<CallBody> {
    let started = Instant::now();
    let method = req.method().clone();
    let endpoint = req.uri().path().to_string();
    let span = telemetry::request_span(&method, &endpoint);
    let trace_id: Arc<str> = telemetry::adopt_trace(&span, req.headers()).into();

    let mut outcome = Outcome::default();
    // A panic anywhere below is a host bug: the panic hook logs it (as JSON,
    // with this request's trace id in the access line), the client gets a
    // JSON 500, and the connection and the host carry on.
    let answered = AssertUnwindSafe(respond(&app, req, side, &trace_id, &mut outcome))
        .catch_unwind()
        .instrument(span.clone())
        .await
        .unwrap_or(Err(HostError::Internal));
    let mut response = match answered {
        Ok(response) => response,
        Err(err) => {
            outcome.error = Some(err.code());
            if let (Some(droplet), HostError::DropletTrap(_) | HostError::BudgetExceeded { .. }) =
                (&outcome.droplet, &err)
            {
                tracing::warn!(droplet = %droplet, trace_id = %trace_id, error = %err, "droplet call failed");
            }
            err.into_response(&trace_id).map(CallBody::from)
        }
    };

    let status = response.status().as_u16();
    if !span.is_disabled() {
        span.record("http.response.status_code", i64::from(status));
        if let Some(droplet) = &outcome.droplet {
            span.record("droplet", &**droplet);
        }
        if let Some(version) = &outcome.version {
            span.record("droplet.version", &**version);
        }
        if status >= 500 {
            span.record("otel.status_code", "ERROR");
        }
    }
    let total = started.elapsed();
    if let Some(stats) = &outcome.stats {
        stats.record_status(status);
        stats.record_duration(total);
    }

    let headers = response.headers_mut();
    add_security_headers(headers, !outcome.call.from_droplet);
    if outcome.call.from_droplet {
        // A droplet's service worker stays within the droplet's own paths:
        // widening its scope to `/` would put the dashboard under it.
        headers.remove("service-worker-allowed");
    }
    if let Ok(value) = HeaderValue::from_str(&trace_id) {
        // A droplet's own trace header stays beside the host's.
        match headers.get(TRACE_ID_HEADER) {
            Some(own) if outcome.call.from_droplet && own != value => {
                headers.append(TRACE_ID_HEADER, value);
            }
            _ => {
                headers.insert(TRACE_ID_HEADER, value);
            }
        }
    }
    if let Some(version) = &outcome.version
        && let Ok(value) = HeaderValue::from_str(version)
    {
        headers.insert("x-droplet-version", value);
    }
    if let Some(droplet_time) = outcome.call.droplet_time {
        let outbound = outcome
            .call
            .outbound
            .map(|(_, time)| format!(", outbound;dur={:.3}", time.as_secs_f64() * 1e3))
            .unwrap_or_default();
        let timing = format!(
            "droplet;dur={:.3}{outbound}, total;dur={:.3}",
            droplet_time.as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e3
        );
        if let Ok(value) = HeaderValue::from_str(&timing) {
            // After the droplet's own metrics, if it sent any.
            if outcome.call.from_droplet {
                headers.append("server-timing", value);
            } else {
                headers.insert("server-timing", value);
            }
        }
    }

    if app.access_log.wants(status) {
        tracing::info!(
            target: "droplet::access",
            trace_id = &*trace_id,
            droplet = outcome.droplet.as_deref(),
            version = outcome.version.as_deref(),
            method = method.as_str(),
            endpoint = endpoint.as_str(),
            status_code = response.status().as_u16(),
            duration_ms = millis(total),
            outbound_requests = outcome.call.outbound.map(|(count, _)| count),
            outbound_ms = outcome.call.outbound.map(|(_, time)| millis(time)),
            error = outcome.error,
            "request"
        );
    }
    response
}

/// `time` in milliseconds to the microsecond, for the access line: no
/// float noise (`0.014195000000000001`) in the log.
fn millis(time: std::time::Duration) -> f64 {
    time.as_micros() as f64 / 1e3
}

/// The host a request names: an absolute-form URI's authority (which wins,
/// RFC 9112 §3.2.2), else its one `Host` header. An HTTP/1.1 request
/// without a `Host` header, or with two, is refused (RFC 9112 §3.2).
fn request_host<B>(req: &Request<B>) -> Result<Option<&str>, HostError> {
    if let Some(authority) = req.uri().authority() {
        return Ok(Some(authority.as_str()));
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let (first, second) = (hosts.next(), hosts.next());
    if second.is_some() {
        return Err(HostError::BadRequest(
            "the request has more than one Host header".to_string(),
        ));
    }
    if first.is_none() && req.version() == http::Version::HTTP_11 {
        return Err(HostError::BadRequest(
            "an HTTP/1.1 request needs a Host header".to_string(),
        ));
    }
    Ok(first.and_then(|value| value.to_str().ok()))
}

/// Routes the request and answers it, or says why not.
///
/// Every branch's future is boxed: a future is as large as its largest
/// branch, and this one is moved several times on every request (into the
/// unwind guard, the span, hyper's slot). Inline, the droplet call made it
/// 18 KiB of copying per request; boxed, it is a pointer.
async fn respond(
    app: &App,
    req: Request<Incoming>,
    side: Side,
    trace_id: &Arc<str>,
    outcome: &mut Outcome,
) -> Result<Response<CallBody>, HostError> {
    let whole = |response: Response<Full<Bytes>>| response.map(CallBody::from);
    let host = request_host(&req)?.map(router::normalize_host);
    let (name, path) = match router::route(host.as_deref(), req.uri().path(), app.domain.as_deref())
    {
        Route::HostHealth => return Ok(whole(endpoints::health(app))),
        Route::Metrics => return Ok(whole(endpoints::metrics(app))),
        Route::Admin(_) if side == Side::Droplets => {
            return Err(HostError::NotFound(
                "the admin API is served on its own listener (--admin-listen)".to_string(),
            ));
        }
        Route::Admin(path) => {
            let path = path.to_string();
            return Box::pin(admin::handle(app, req, &path)).await.map(whole);
        }
        Route::NotFound(message) => return Err(HostError::DropletNotFound(message)),
        Route::Droplet { .. } if side == Side::Admin => {
            return Err(HostError::NotFound(
                "droplets are not served on the admin listener".to_string(),
            ));
        }
        Route::Droplet { name, path } => (name.to_string(), path.to_string()),
    };
    // A service worker's scope may reach up to its script's folder: a
    // script at `/{name}` (folder `/`) could control every page of the
    // origin, the dashboard's included. Only scripts under `/{name}/`.
    // (Routed by host name, the droplet has an origin of its own.)
    let path_routed = path != req.uri().path();
    if path_routed
        && req.headers().contains_key("service-worker")
        && !req.uri().path().starts_with(&format!("/{name}/"))
    {
        return Err(HostError::Forbidden(format!(
            "a service worker script of droplet `{name}` must be served under /{name}/"
        )));
    }
    if app.shutdown.is_triggered() {
        return Err(HostError::ShuttingDown);
    }
    let current = app
        .droplets
        .get(&name)
        .ok_or_else(|| HostError::DropletNotFound(format!("no droplet named `{name}`")))?;
    outcome.droplet = Some(Arc::clone(&current.name));
    outcome.version = Some(Arc::clone(current.version.shared()));
    if let Some(endpoint) = contract::Endpoint::of(req.method(), &path) {
        return Box::pin(contract::answer(app, &current, endpoint, req.headers()))
            .await
            .map(whole);
    }
    let droplet = dispatch::choose_version(app, current, req.headers());
    outcome.version = Some(Arc::clone(droplet.version.shared()));
    outcome.stats = Some(Arc::clone(&droplet.stats));
    Box::pin(dispatch::call(
        app,
        &droplet,
        req,
        path,
        trace_id,
        &mut outcome.call,
        None,
    ))
    .await
}
