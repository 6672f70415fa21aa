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
use droplet_sdk::{Error, Json, Request, Response, Result, Router, droplet};
use serde_json::{Value, json};

fn handle(req: Request) -> Response {
    Router::new()
        .get("/fetch", fetch_one)
        .get("/many", many)
        .get("/ping", |_req: Request| "pong")
        .get("/relay", |req: Request| -> Result<Response> {
            Ok(relay(&required(&req, "url")?))
        })
        .get("/loop", |req: Request| {
            let to = req.query_param("to").unwrap_or_else(|| "gateway".into());
            relay(&format!("http://{to}.droplet.internal/loop?to={to}"))
        })
        .get("/todos", |_req: Request| {
            relay("http://todo.droplet.internal/todos")
        })
        .handle(req)
}

fn required(req: &Request, name: &str) -> Result<String> {
    req.query_param(name)
        .ok_or_else(|| Error::bad_request(format!("give ?{name}=")))
}

/// What came back from `url`, exactly, or the failure as JSON.
fn relay(url: &str) -> Response {
    fetch::get(url).unwrap_or_else(|err| failed(&err))
}

fn fetch_one(req: Request) -> Result<Response> {
    let url = required(&req, "url")?;
    let method = req.query_param("method").unwrap_or_else(|| "GET".into());
    let mut outgoing = FetchRequest::new(&method, &url);
    for header in req.query_params("header") {
        let (name, value) = header.split_once(':').unwrap_or((&header, ""));
        outgoing = outgoing.with_header(name, value);
    }
    if let Some(body) = req.query_param("body") {
        outgoing = outgoing.with_body(body);
    }
    Ok(match fetch::fetch(outgoing) {
        Ok(upstream) => Response::json(&json!({
            "status": upstream.status(),
            "headers": upstream.headers(),
            "body": String::from_utf8_lossy(upstream.body()),
        })),
        Err(err) => failed(&err),
    })
}

fn many(req: Request) -> Result<Json<Value>> {
    let url = required(&req, "url")?;
    let n: u32 = req
        .query_as("n")?
        .ok_or_else(|| Error::bad_request("give ?n="))?;
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
    Ok(Json(
        json!({ "ok": ok, "statuses": statuses, "error": first_error }),
    ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use droplet_sdk::testing::TestWorld;

    #[test]
    fn relays_what_the_upstream_answered_and_says_why_it_failed() {
        let upstream = Response::new(201).with_body("made");
        let mut world =
            TestWorld::new().with_response("GET", "http://todo.droplet.internal/todos", upstream);
        let relayed = world.call(handle, Request::get("/todos"));
        assert_eq!((relayed.status(), relayed.body_text()), (201, Some("made")));
        let denied = world.call(
            handle,
            Request::get("/relay?url=https://elsewhere.example/"),
        );
        assert_eq!(denied.status(), 502);
        assert_eq!(
            denied.json_body::<Value>().unwrap()["error"]["kind"],
            "denied"
        );
        assert_eq!(
            world.call(handle, Request::get("/many?url=x")).status(),
            400
        );
    }
}
