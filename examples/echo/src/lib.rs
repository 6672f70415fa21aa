//! Echoes the request back as JSON: method, path, query, headers and body
//! (the body as a list of bytes and, when it is UTF-8, as text).
//!
//! Query parameters make it misbehave on request, for tests and benchmarks:
//! `sleep_ms=N` sleeps first (through WASI's clock, so the host is awaited),
//! `status=N` answers with that status, `print=1` writes to stdout and stderr,
//! `headers=N` adds N response headers, `log_flood=KB` logs 256 lines that
//! each carry a field of KB KiB, `set=name:value` (repeatable) sets a response
//! header.

use droplet_sdk::{Request, Response, droplet, log};
use serde_json::json;

fn handle(req: Request) -> Response {
    log::info!("echoing", method = req.method(), path = req.path());
    if let Some(ms) = req.query_param("sleep_ms").and_then(|ms| ms.parse().ok()) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    if let Some(kb) = req
        .query_param("log_flood")
        .and_then(|kb| kb.parse::<usize>().ok())
    {
        let value = "f".repeat(kb * 1024);
        for _ in 0..256 {
            log::info!("flood", big = value);
        }
    }
    if req.query_param("print").is_some() {
        println!("echo printed to stdout");
        eprintln!("echo printed to stderr");
    }
    let headers: Vec<_> = req
        .headers()
        .iter()
        .map(|(name, value)| json!([name, value]))
        .collect();
    let status = req
        .query_param("status")
        .and_then(|status| status.parse().ok())
        .unwrap_or(200);
    let extra_headers = req
        .query_param("headers")
        .and_then(|count| count.parse::<usize>().ok())
        .unwrap_or(0);
    let mut response = Response::json(&json!({
        "method": req.method(),
        "path": req.path(),
        "query": req.query(),
        "headers": headers,
        "body": req.body(),
        "text": req.text().ok(),
        "caller": droplet_sdk::auth::caller().map(|claims| json!({
            "subject": claims.subject,
            "issuer": claims.issuer,
            "audience": claims.audience,
            "expires_at": claims.expires_at,
            "scopes": claims.scopes,
            "claims": serde_json::from_str::<serde_json::Value>(&claims.json).ok(),
        })),
    }))
    .with_status(status);
    for i in 0..extra_headers {
        response = response.with_header(format!("x-echo-{i}"), "1");
    }
    for set in req.query_params("set") {
        if let Some((name, value)) = set.split_once(':') {
            response = response.with_header(name, value);
        }
    }
    response
}

droplet!(handle);
