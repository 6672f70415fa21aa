//! One background call — a schedule's instant or a queued job — made the
//! way a request is: through [`dispatch::call`], so it meets the same
//! budget, memory cap, concurrency limit, capabilities and recording, with
//! a trace id and an access-log line of its own. Its headers
//! ([`BackgroundHeaders`]) and budget ([`BudgetOverride`]) travel in the
//! request's extensions, where no client can put them; the droplet's auth
//! policy does not apply (the host is the caller).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};

use crate::app::App;
use crate::dispatch::call_parts::BudgetOverride;
use crate::dispatch::{self, CallReport};
use crate::guest::request_headers::BackgroundHeaders;
use crate::ops::trace_id::new_trace_id;

/// What to call.
pub struct BackgroundCall {
    /// The droplet (its current version answers).
    pub droplet: Arc<str>,
    /// The method.
    pub method: http::Method,
    /// The path inside the droplet.
    pub path: String,
    /// The body (a job's payload; empty for a schedule).
    pub body: Bytes,
    /// The host's headers for it.
    pub headers: Vec<(&'static str, String)>,
    /// Its own budget, when its schedule or consumer sets one.
    pub budget_ms: Option<u64>,
    /// What the access log calls it: `scheduled call` or `job call`.
    pub kind: &'static str,
}

/// How a background call ended.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The status the droplet answered, or the host's for it.
    pub status: u16,
    /// The host's error code and message, when the host answered.
    pub error: Option<String>,
    /// Whether the attempt counts: false when the host refused the call
    /// with a 503 before the droplet ran (overloaded, busy, shutting
    /// down), so it is tried again without spending an attempt.
    pub delivered: bool,
    /// Its trace id.
    pub trace_id: Arc<str>,
}

impl Finished {
    /// A 2xx.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Calls the droplet and reads its whole response (up to the response
/// limits the call already enforces).
pub async fn run(app: &App, call: BackgroundCall) -> Finished {
    let started = Instant::now();
    let trace_id: Arc<str> = Arc::from(new_trace_id());
    let endpoint = call.path.clone();
    let method = call.method.clone();
    let mut report = CallReport::default();
    let (status, error) = match app.droplets.get(&call.droplet) {
        None => (
            404,
            Some(format!(
                "droplet_not_found: no droplet named `{}` is loaded",
                call.droplet
            )),
        ),
        Some(current) => {
            let mut request = http::Request::new(Full::new(call.body));
            *request.method_mut() = call.method;
            *request.uri_mut() = call
                .path
                .parse()
                .unwrap_or_else(|_| http::Uri::from_static("/"));
            request
                .extensions_mut()
                .insert(BackgroundHeaders(call.headers));
            if let Some(budget_ms) = call.budget_ms {
                request.extensions_mut().insert(BudgetOverride(budget_ms));
            }
            let droplet = dispatch::choose_version(app, current, request.headers());
            let answered = dispatch::call(
                app,
                &droplet,
                request,
                call.path,
                &trace_id,
                &mut report,
                None,
            )
            .await;
            let outcome = match answered {
                Ok(response) => {
                    let status = response.status().as_u16();
                    // Read to the end, so a streamed body's call finishes.
                    let read = response.into_body().collect().await;
                    match read {
                        Ok(_) => (status, None),
                        Err(cut) => (502, Some(format!("invalid_response: {cut}"))),
                    }
                }
                Err(err) => (
                    err.status().as_u16(),
                    Some(format!("{}: {err}", err.code())),
                ),
            };
            if report.droplet_time.is_some() {
                droplet.stats.record_status(outcome.0);
            }
            outcome
        }
    };
    // Only a 503 the host gave before the droplet ran (overloaded, busy,
    // shutting down) leaves the attempt unspent: any other refusal (a
    // payload over the droplet's `max_body_kb`, say) would refuse every
    // attempt alike.
    let delivered = report.droplet_time.is_some() || status != 503;
    if app.access_log.wants(status) {
        tracing::info!(
            target: "droplet::access",
            trace_id = %trace_id,
            droplet = %call.droplet,
            method = %method,
            endpoint = %endpoint,
            status_code = status,
            duration_ms = started.elapsed().as_secs_f64() * 1e3,
            error,
            "{}", call.kind
        );
    }
    Finished {
        status,
        error,
        delivered,
        trace_id,
    }
}
