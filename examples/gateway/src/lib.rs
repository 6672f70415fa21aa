//! Calls out: fetches what it is asked to, under the host's outbound rules
//! (its manifest's `allowed_outbound_hosts`, `max_outbound_requests`, its
//! budget).
//!
//! | request | does |
//! | --- | --- |
//! | `GET /fetch?url=U[&method=M][&header=name:value][&body=B]` | one request to `U`; answers what came back: `{"status", "headers", "body"}`, or `{"error": {"kind", "message"}}` with 502 |
//! | `GET /many?url=U&n=N` | `N` requests to `U` in a row: `{"ok": count, "statuses": {status: count}, "error": first error}` |
//! | `GET /relay?url=U` | fetches `U` and answers with exactly what came back (status, headers, body) |
//! | `GET /loop?to=NAME` | relays `http://NAME.droplet.internal/loop?to=NAME`: a call cycle, which the host stops (508) |
//! | `GET /ping` | `pong`, without calling out (the benchmarks' baseline) |
//! | `GET /todos` | lists the `todo` droplet's items, through `http://todo.droplet.internal` |

use droplet_sdk::fetch::{self, FetchError, FetchRequest};
use droplet_sdk::{Request, Response, droplet};
use serde_json::json;

fn handle(req: Request) -> Response {
    match req.path() {
        "/fetch" => {
            let Some(url) = req.query_param("url") else {
                return Response::error(400, "bad_request", "give ?url=");
            };
            let method = req.query_param("method").unwrap_or_else(|| "GET".into());
            let mut outgoing = FetchRequest::new(&method, &url);
            for header in req.query_params("header") {
                let (name, value) = header.split_once(':').unwrap_or((&header, ""));
                outgoing = outgoing.with_header(name, value);
            }
            if let Some(body) = req.query_param("body") {
                outgoing = outgoing.with_body(body);
            }
            match fetch::fetch(outgoing) {
                Ok(upstream) => Response::json(&json!({
                    "status": upstream.status(),
                    "headers": upstream.headers(),
                    "body": String::from_utf8_lossy(upstream.body()),
                })),
                Err(err) => failed(&err),
            }
        }
        "/many" => {
            let (Some(url), Some(n)) = (
                req.query_param("url"),
                req.query_param("n").and_then(|n| n.parse::<u32>().ok()),
            ) else {
                return Response::error(400, "bad_request", "give ?url= and ?n=");
            };
            let mut ok = 0;
            let mut first_error = None;
            let mut statuses = std::collections::BTreeMap::<String, u32>::new();
            for _ in 0..n {
                match fetch::get(&url) {
                    Ok(response) => {
                        ok += 1;
                        *statuses.entry(response.status().to_string()).or_default() += 1;
                    }
                    Err(err) => {
                        first_error.get_or_insert(err.to_string());
                    }
                }
            }
            Response::json(&json!({ "ok": ok, "statuses": statuses, "error": first_error }))
        }
        "/ping" => Response::text("pong"),
        "/relay" => {
            let Some(url) = req.query_param("url") else {
                return Response::error(400, "bad_request", "give ?url=");
            };
            fetch::get(&url).unwrap_or_else(|err| failed(&err))
        }
        "/loop" => {
            let to = req.query_param("to").unwrap_or_else(|| "gateway".into());
            fetch::get(&format!("http://{to}.droplet.internal/loop?to={to}"))
                .unwrap_or_else(|err| failed(&err))
        }
        "/todos" => match fetch::get("http://todo.droplet.internal/todos") {
            Ok(todos) => todos,
            Err(err) => failed(&err),
        },
        _ => Response::error(
            404,
            "not_found",
            "try /fetch, /many, /relay, /loop or /todos",
        ),
    }
}

/// A failed fetch, as JSON the tests (and people) can read.
fn failed(err: &FetchError) -> Response {
    let kind = match err {
        FetchError::InvalidUrl(_) => "invalid_url",
        FetchError::InvalidHeader(_) => "invalid_header",
        FetchError::Denied(_) => "denied",
        FetchError::Timeout => "timeout",
        FetchError::TooLarge => "too_large",
        FetchError::Failed(_) => "failed",
    };
    Response::json(&json!({ "error": { "kind": kind, "message": err.to_string() } }))
        .with_status(502)
}

droplet!(handle);
