//! The droplet contract, answered by the host for every droplet without
//! instantiating it: `GET /{name}/health`, `/{name}/capabilities` and
//! `/{name}/state`.
//!
//! `health` and `capabilities` are public whatever the droplet's auth
//! policy; `state` follows it. These paths belong to the host: a droplet
//! never sees requests for them.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

use crate::app::App;
use crate::droplets::Droplet;
use crate::error::{HostError, json_response};
use crate::identity::policy;

/// One of the contract's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/health`.
    Health,
    /// `/capabilities`.
    Capabilities,
    /// `/state`.
    State,
}

impl Endpoint {
    /// The endpoint a `GET` of `path` (inside the droplet) is, if any.
    pub fn of(method: &http::Method, path: &str) -> Option<Self> {
        if method != http::Method::GET && method != http::Method::HEAD {
            return None;
        }
        match path {
            "/health" => Some(Endpoint::Health),
            "/capabilities" => Some(Endpoint::Capabilities),
            "/state" => Some(Endpoint::State),
            _ => None,
        }
    }
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Answers `endpoint` for `droplet`.
pub async fn answer(
    app: &App,
    droplet: &Droplet,
    endpoint: Endpoint,
    headers: &http::HeaderMap,
) -> Result<Response<Full<Bytes>>, HostError> {
    let body = match endpoint {
        Endpoint::Health => health(droplet),
        Endpoint::Capabilities => capabilities(droplet),
        Endpoint::State => {
            policy::authorize(app.verifier(), &droplet.manifest, headers)?;
            state(app, droplet).await
        }
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// `active` when loaded and serving, `inactive` when registered but not
/// compiled yet, `error` when its version failed to load or most of its
/// recent calls trapped or overran.
fn health(droplet: &Droplet) -> Value {
    let (status, reason) = droplet.health();
    let uptime = SystemTime::now()
        .duration_since(droplet.published_at)
        .map_or(0, |since| since.as_secs());
    let mut body = json!({
        "status": status,
        "droplet": &*droplet.name,
        "version": droplet.version.as_str(),
        "uptime_s": uptime,
    });
    if let Some(reason) = reason {
        body["reason"] = json!(reason);
    }
    body
}

fn capabilities(droplet: &Droplet) -> Value {
    let (imports, world) = match droplet.compiled() {
        Some(ready) => (json!(ready.imports), json!(ready.pre.world())),
        None => (Value::Null, Value::Null),
    };
    let manifest = &droplet.manifest;
    json!({
        "droplet": &*droplet.name,
        "version": droplet.version.as_str(),
        "capabilities": manifest.capabilities,
        "granted": crate::capabilities::granted(manifest),
        "imports": imports,
        "world": world,
        "budget_ms": manifest.budget_ms,
        "memory_mb": manifest.memory_mb,
        "max_body_kb": manifest.max_body_kb,
        "max_concurrency": manifest.max_concurrency,
        "auth": manifest.auth.as_str(),
        "scopes": manifest.scopes,
    })
}

async fn state(app: &App, droplet: &Droplet) -> Value {
    let stats = droplet.stats.snapshot();
    let kv = match app.kv().usage(&droplet.name).await {
        Ok(usage) => json!({ "keys": usage.keys, "bytes": usage.bytes }),
        Err(err) => json!({ "error": err.to_string() }),
    };
    json!({
        "droplet": &*droplet.name,
        "version": droplet.version.as_str(),
        "status": droplet.health().0,
        "loaded_at": unix_seconds(droplet.published_at),
        "requests": {
            "1xx": stats.requests[0],
            "2xx": stats.requests[1],
            "3xx": stats.requests[2],
            "4xx": stats.requests[3],
            "5xx": stats.requests[4],
        },
        "traps": stats.traps,
        "budget_overruns": stats.budget_overruns,
        "in_flight": stats.in_flight,
        "latency": droplet.stats.latency(),
        "kv": kv,
    })
}
