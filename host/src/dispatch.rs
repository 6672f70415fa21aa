//! One request through routing → policy → runtime → response.
//!
//! Policy runs before any instance is made: the droplet must exist and be
//! loaded, the body must fit `max_body_kb`, and a concurrency slot must free
//! up within a short wait inside the budget. Every response gets an
//! `x-trace-id`; droplet responses also get `server-timing` and
//! `x-droplet-version`. Each request ends in one access-log line.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio::sync::SemaphorePermit;
use tokio::time::Instant;

use crate::app::App;
use crate::contract;
use crate::droplets::stats::DropletStats;
use crate::droplets::{Droplet, DropletState};
use crate::error::{HostError, json_response};
use crate::imports::log::GuestLog;
use crate::imports::{AuthAccess, Imports, KvAccess};
use crate::jwt::{self, VerifiedClaims};
use crate::kv::Limits;
use crate::manifest::{AuthPolicy, Manifest};
use crate::router::{self, Route};
use crate::runtime::{Call, CallError, GuestRequest, GuestResponse};

/// Longest a request waits for a concurrency slot (and never past its budget).
pub const MAX_QUEUE_WAIT: Duration = Duration::from_millis(100);
/// Largest response body a droplet may return.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// Longest the host waits for a request body to arrive.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Response headers the host sets itself; a droplet's values are ignored.
const HOST_FRAMED_HEADERS: [HeaderName; 3] = [
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
];

/// What the access log says about a request beyond its status.
#[derive(Default)]
struct Outcome {
    droplet: Option<Arc<str>>,
    version: Option<Arc<str>>,
    /// Time spent instantiating and running the droplet.
    droplet_time: Option<Duration>,
    /// The error code, when the host answered with an error.
    error: Option<&'static str>,
    /// The droplet's counters, when the droplet itself was called.
    stats: Option<Arc<DropletStats>>,
    /// Whether the droplet (not the host) wrote the response.
    from_droplet: bool,
}

/// Answers one request. Never fails: every error becomes its JSON response.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let trace_id: Arc<str> = trace_id(req.headers()).into();
    let method = req.method().clone();
    let endpoint = req.uri().path().to_string();

    let mut outcome = Outcome::default();
    let mut response = match respond(&app, req, &trace_id, &mut outcome).await {
        Ok(response) => response,
        Err(err) => {
            outcome.error = Some(err.code());
            if let (Some(droplet), HostError::DropletTrap(_) | HostError::BudgetExceeded { .. }) =
                (&outcome.droplet, &err)
            {
                tracing::warn!(droplet = %droplet, trace_id = %trace_id, error = %err, "droplet call failed");
            }
            err.into_response(&trace_id)
        }
    };

    let status = response.status().as_u16();
    if let (Some(stats), Some(droplet)) = (&outcome.stats, &outcome.droplet) {
        stats.record_status(status);
        let class = match status / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        };
        metrics::counter!("droplet_requests_total", "droplet" => Arc::clone(droplet), "class" => class).increment(1);
        metrics::histogram!("droplet_request_duration_seconds", "droplet" => Arc::clone(droplet))
            .record(started.elapsed().as_secs_f64());
    }

    let headers = response.headers_mut();
    add_security_headers(headers, !outcome.from_droplet);
    if let Ok(value) = HeaderValue::from_str(&trace_id) {
        headers.insert("x-trace-id", value);
    }
    if let Some(version) = &outcome.version
        && let Ok(value) = HeaderValue::from_str(version)
    {
        headers.insert("x-droplet-version", value);
    }
    let total = started.elapsed();
    if let Some(droplet_time) = outcome.droplet_time {
        let timing = format!(
            "droplet;dur={:.3}, total;dur={:.3}",
            droplet_time.as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e3
        );
        if let Ok(value) = HeaderValue::from_str(&timing) {
            headers.insert("server-timing", value);
        }
    }

    tracing::info!(
        target: "droplet::access",
        trace_id = %trace_id,
        droplet = outcome.droplet.as_deref(),
        version = outcome.version.as_deref(),
        method = %method,
        endpoint = %endpoint,
        status_code = response.status().as_u16(),
        duration_ms = total.as_secs_f64() * 1e3,
        error = outcome.error,
        "request"
    );
    response
}

async fn respond(
    app: &App,
    req: Request<Incoming>,
    trace_id: &Arc<str>,
    outcome: &mut Outcome,
) -> Result<Response<Full<Bytes>>, HostError> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| req.uri().host());
    let (name, path) = match router::route(host, req.uri().path(), app.domain.as_deref()) {
        Route::HostHealth => return Ok(host_health(app)),
        Route::Metrics => return Ok(metrics_text(app)),
        Route::Admin(path) => {
            let path = path.to_string();
            return crate::admin::handle(app, req, &path).await;
        }
        Route::NotFound(message) => return Err(HostError::DropletNotFound(message)),
        Route::Droplet { name, path } => (name.to_string(), path.to_string()),
    };
    if app.is_shutting_down() {
        return Err(HostError::ShuttingDown);
    }
    let droplet = app
        .droplets
        .get(&name)
        .ok_or_else(|| HostError::DropletNotFound(format!("no droplet named `{name}`")))?;
    outcome.droplet = Some(Arc::clone(&droplet.name));
    outcome.version = Some(Arc::clone(&droplet.version));
    if let Some(endpoint) = contract::Endpoint::of(req.method(), &path) {
        return contract::answer(app, &droplet, endpoint, req.headers()).await;
    }
    outcome.stats = Some(Arc::clone(&droplet.stats));
    call_droplet(app, &droplet, req, path, trace_id, outcome).await
}

/// Security headers on every response: `nosniff`, `DENY` framing and no
/// referrer (unless a droplet set its own), and a strict CSP on the host's
/// own JSON.
fn add_security_headers(headers: &mut http::HeaderMap, host_made: bool) {
    let defaults = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in defaults {
        if host_made || !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    if host_made {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
}

async fn call_droplet(
    app: &App,
    droplet: &Droplet,
    req: Request<Incoming>,
    path: String,
    trace_id: &Arc<str>,
    outcome: &mut Outcome,
) -> Result<Response<Full<Bytes>>, HostError> {
    let manifest = &droplet.manifest;
    if let DropletState::Failed(reason) = &droplet.state {
        return Err(HostError::DropletUnavailable {
            name: droplet.name.to_string(),
            reason: reason.clone(),
        });
    }
    let (parts, body) = req.into_parts();
    let caller = authorize(app, manifest, &parts.headers)?;
    let body = read_body(&parts.headers, body, manifest.max_body_kb).await?;

    let deadline = Instant::now() + Duration::from_millis(manifest.budget_ms);
    let _slots = acquire_slots(app, droplet, deadline).await?;
    // Compiles a lazily registered droplet on its first request; that time is
    // the host's cost, not the droplet's, so it extends the deadline.
    let compile_started = Instant::now();
    let ready = droplet
        .ready(app.droplets.loader())
        .await
        .map_err(|reason| HostError::DropletUnavailable {
            name: droplet.name.to_string(),
            reason,
        })?;
    let deadline = deadline + compile_started.elapsed();

    let request = GuestRequest {
        method: parts.method.as_str().to_string(),
        path,
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: Vec::from(body),
    };
    let imports = Imports {
        log: Arc::new(GuestLog::new(
            Arc::clone(&droplet.name),
            Arc::clone(&droplet.version),
            Arc::clone(trace_id),
        )),
        config: Arc::clone(&droplet.config),
        kv: KvAccess {
            backend: Arc::clone(&app.kv),
            namespace: Arc::clone(&droplet.name),
            limits: Limits {
                quota_bytes: manifest.kv_quota_mb.map(|mb| mb.saturating_mul(1 << 20)),
                max_value_bytes: app.kv_max_value_bytes,
            },
            deadline,
        },
        auth: AuthAccess {
            caller,
            verifier: app.verifier.clone(),
        },
    };
    let call_started = Instant::now();
    let in_flight = droplet.stats.enter();
    let result = app
        .runtime
        .call(Call {
            droplet: &ready.pre,
            memory_bytes: usize::try_from(manifest.memory_mb << 20).unwrap_or(usize::MAX),
            deadline,
            imports,
            request,
            suspect: droplet.stats.failing(),
        })
        .await;
    drop(in_flight);
    let elapsed = call_started.elapsed();
    outcome.droplet_time = Some(elapsed);
    outcome.from_droplet = result.is_ok();
    let failed = matches!(result, Err(CallError::BudgetExceeded | CallError::Trap(_)));
    droplet.stats.record_call(elapsed, failed);
    match &result {
        Err(CallError::BudgetExceeded) => {
            droplet.stats.record_overrun();
            metrics::counter!("droplet_budget_overruns_total", "droplet" => Arc::clone(&droplet.name)).increment(1);
        }
        Err(CallError::Trap(_)) => {
            droplet.stats.record_trap();
            metrics::counter!("droplet_traps_total", "droplet" => Arc::clone(&droplet.name))
                .increment(1);
        }
        _ => {}
    }
    match result {
        Ok(response) => into_http(response).inspect_err(|_| outcome.from_droplet = false),
        Err(CallError::BudgetExceeded) => Err(HostError::BudgetExceeded {
            name: droplet.name.to_string(),
            budget_ms: manifest.budget_ms,
        }),
        Err(CallError::Trap(message)) => Err(HostError::DropletTrap(format!(
            "droplet `{}` {message}",
            droplet.name
        ))),
        Err(CallError::PoolExhausted) => {
            Err(HostError::DropletOverloaded(droplet.name.to_string()))
        }
    }
}

/// Applies the droplet's auth policy before any instance is made: the
/// verified claims of the request's bearer token, if it had a valid one.
///
/// `auth = "jwt"` needs a valid token carrying every scope in `scopes` (401
/// without one, 403 without a scope). `auth = "public"` never refuses: an
/// invalid token just leaves the request without a caller.
pub(crate) fn authorize(
    app: &App,
    manifest: &Manifest,
    headers: &http::HeaderMap,
) -> Result<Option<Arc<VerifiedClaims>>, HostError> {
    match manifest.auth {
        AuthPolicy::Public => Ok(match (jwt::bearer_token(headers), &app.verifier) {
            (Some(Ok(token)), Some(verifier)) => verifier.verify(token).ok().map(Arc::new),
            _ => None,
        }),
        AuthPolicy::Jwt => require_token(app.verifier.as_deref(), headers, &manifest.scopes)
            .map(|claims| Some(Arc::new(claims))),
    }
}

/// The claims of the request's bearer token, which must be present, verify
/// under `verifier` (401 otherwise) and carry every scope in `scopes` (403
/// otherwise). Shared by droplet policies and the admin API.
pub(crate) fn require_token(
    verifier: Option<&jwt::Verifier>,
    headers: &http::HeaderMap,
    scopes: &[String],
) -> Result<VerifiedClaims, HostError> {
    let token = match jwt::bearer_token(headers) {
        None => {
            return Err(HostError::Unauthorized(
                "a bearer token is required".to_string(),
            ));
        }
        Some(Err(err)) => return Err(HostError::Unauthorized(err.to_string())),
        Some(Ok(token)) => token,
    };
    let verifier = verifier.ok_or_else(|| {
        HostError::Unauthorized("this host has no keys configured to verify tokens".to_string())
    })?;
    let claims = verifier
        .verify(token)
        .map_err(|err| HostError::Unauthorized(err.to_string()))?;
    let missing = claims.missing_scopes(scopes);
    if !missing.is_empty() {
        return Err(HostError::Forbidden(format!(
            "the token lacks the required scope(s): {}",
            missing.join(", ")
        )));
    }
    Ok(claims)
}

/// Reads the body, refusing it (413) as soon as it is known to be over the
/// limit: from `content-length` before reading anything, else while reading.
async fn read_body(
    headers: &http::HeaderMap,
    body: Incoming,
    limit_kb: u64,
) -> Result<Bytes, HostError> {
    let limit = usize::try_from(limit_kb.saturating_mul(1024)).unwrap_or(usize::MAX);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(HostError::BodyTooLarge { limit_kb });
    }
    let collected =
        tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, limit).collect()).await;
    match collected {
        Err(_) => Err(HostError::BadRequest(
            "the request body did not arrive in time".to_string(),
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => {
            Err(HostError::BodyTooLarge { limit_kb })
        }
        Ok(Err(_)) => Err(HostError::BadRequest(
            "the request body could not be read".to_string(),
        )),
    }
}

/// Takes a slot of the droplet's concurrency limit and one of the host's
/// instance pool, waiting at most [`MAX_QUEUE_WAIT`] and never past the
/// deadline.
async fn acquire_slots<'a>(
    app: &'a App,
    droplet: &'a Droplet,
    deadline: Instant,
) -> Result<(SemaphorePermit<'a>, SemaphorePermit<'a>), HostError> {
    let wait_until = deadline.min(Instant::now() + MAX_QUEUE_WAIT);
    let overloaded = || HostError::DropletOverloaded(droplet.name.to_string());
    let own = tokio::time::timeout_at(wait_until, droplet.slots.acquire())
        .await
        .map_err(|_| overloaded())?
        .map_err(|_| overloaded())?;
    let pool = tokio::time::timeout_at(wait_until, app.instance_slots.acquire())
        .await
        .map_err(|_| overloaded())?
        .map_err(|_| overloaded())?;
    Ok((own, pool))
}

/// Checks a guest's response and turns it into an HTTP response.
fn into_http(response: GuestResponse) -> Result<Response<Full<Bytes>>, HostError> {
    let status = StatusCode::from_u16(response.status)
        .ok()
        .filter(|status| (200..=599).contains(&status.as_u16()))
        .ok_or_else(|| {
            HostError::InvalidResponse(format!("status {} is not in 200..=599", response.status))
        })?;
    if response.body.len() > MAX_RESPONSE_BYTES {
        return Err(HostError::InvalidResponse(format!(
            "body of {} bytes is over the limit of {MAX_RESPONSE_BYTES}",
            response.body.len()
        )));
    }
    let mut http_response = Response::new(Full::new(Bytes::from(response.body)));
    *http_response.status_mut() = status;
    let headers = http_response.headers_mut();
    for (name, value) in response.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            HostError::InvalidResponse(format!("`{name}` is not a valid header name"))
        })?;
        let value = HeaderValue::from_str(&value).map_err(|_| {
            HostError::InvalidResponse(format!("the value of header `{name}` is not valid"))
        })?;
        if !HOST_FRAMED_HEADERS.contains(&name) {
            headers.append(name, value);
        }
    }
    Ok(http_response)
}

/// `GET /metrics`: every metric in Prometheus text format.
fn metrics_text(app: &App) -> Response<Full<Bytes>> {
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

/// `GET /health`: the host's own status.
fn host_health(app: &App) -> Response<Full<Bytes>> {
    let (status, word) = if app.is_shutting_down() {
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

/// The request's trace id: the trace id of a W3C `traceparent`, else a sane
/// `x-request-id`, else a new random one.
fn trace_id(headers: &http::HeaderMap) -> String {
    let from_traceparent = headers
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let mut parts = value.split('-');
            let (_version, trace) = (parts.next()?, parts.next()?);
            let valid = trace.len() == 32
                && trace.bytes().all(|b| b.is_ascii_hexdigit())
                && trace.bytes().any(|b| b != b'0');
            valid.then(|| trace.to_ascii_lowercase())
        });
    let from_request_id = || {
        headers
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .filter(|value| {
                !value.is_empty()
                    && value.len() <= 128
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
            })
            .map(str::to_string)
    };
    from_traceparent
        .or_else(from_request_id)
        .unwrap_or_else(|| format!("{:032x}", fastrand::u128(1..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    #[test]
    fn trace_id_comes_from_traceparent_then_request_id() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            trace_id(&headers(&[("traceparent", tp), ("x-request-id", "abc")])),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(trace_id(&headers(&[("x-request-id", "req-42")])), "req-42");
        let fresh = trace_id(&headers(&[("x-request-id", "bad id with spaces")]));
        assert_eq!(fresh.len(), 32);
        assert_ne!(fresh, trace_id(&headers(&[])));
    }

    #[test]
    fn guest_responses_are_validated() {
        let response = |status, headers: Vec<(&str, &str)>| GuestResponse {
            status,
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: b"x".to_vec(),
        };
        assert!(into_http(response(200, vec![("x-a", "b")])).is_ok());
        assert!(into_http(response(99, vec![])).is_err());
        assert!(into_http(response(700, vec![])).is_err());
        assert!(into_http(response(101, vec![])).is_err());
        assert!(into_http(response(200, vec![("bad name", "b")])).is_err());
        assert!(into_http(response(200, vec![("x-a", "line\nbreak")])).is_err());
        let framed = into_http(response(200, vec![("content-length", "999")])).unwrap();
        assert!(framed.headers().get(header::CONTENT_LENGTH).is_none());
    }
}
