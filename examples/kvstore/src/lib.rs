//! A small HTTP front for every kv operation, one route each. Handy to try
//! the kv API with curl, and what the host's kv tests drive.
//!
//! | request | operation |
//! | --- | --- |
//! | `GET /k/{key}` | `get` (404 when absent) |
//! | `PUT /k/{key}?ttl_ms=N` | `set` the body |
//! | `DELETE /k/{key}` | `delete` → `{"existed"}` |
//! | `GET /exists/{key}` | `exists` → `{"exists"}` |
//! | `GET /list?prefix=&cursor=&limit=` | `list-keys` → `{"keys", "next_cursor"}` |
//! | `POST /cas/{key}` `{"expected": s?, "new": s?}` | `compare-and-swap` → `{"swapped"}` |
//! | `POST /incr/{key}?delta=N` | `increment` → `{"value"}` |
//!
//! kv errors map to statuses: invalid or too-large key → 400, value too
//! large → 413, quota exceeded → 507, not a number → 409, unavailable → 503.

use droplet_sdk::{Request, Response, droplet, kv};
use serde_json::json;

fn handle(req: Request) -> Response {
    match route(&req) {
        Ok(response) => response,
        Err(err) => kv_error(err),
    }
}

fn route(req: &Request) -> Result<Response, kv::Error> {
    let path = req.path();
    let method = req.method();
    if let Some(key) = path.strip_prefix("/k/") {
        return match method {
            "GET" => Ok(match kv::get(key)? {
                Some(value) => Response::new(200).with_body(value),
                None => Response::error(404, "not_found", "no such key"),
            }),
            "PUT" => {
                let ttl = req.query_param("ttl_ms").and_then(|ttl| ttl.parse().ok());
                kv::set(key, req.body(), ttl)?;
                Ok(Response::json(&json!({ "stored": key })))
            }
            "DELETE" => Ok(Response::json(&json!({ "existed": kv::delete(key)? }))),
            _ => Ok(Response::error(
                405,
                "method_not_allowed",
                "use GET, PUT or DELETE",
            )),
        };
    }
    if let Some(key) = path.strip_prefix("/exists/") {
        return Ok(Response::json(&json!({ "exists": kv::exists(key)? })));
    }
    if path == "/list" {
        let prefix = req.query_param("prefix").unwrap_or_default();
        let cursor = req.query_param("cursor");
        let limit = req
            .query_param("limit")
            .and_then(|limit| limit.parse().ok())
            .unwrap_or(100);
        let page = kv::list_keys(&prefix, cursor.as_deref(), limit)?;
        return Ok(Response::json(
            &json!({ "keys": page.keys, "next_cursor": page.next_cursor }),
        ));
    }
    if let Some(key) = path.strip_prefix("/cas/") {
        let Ok(body) = req.json::<serde_json::Value>() else {
            return Ok(Response::error(
                400,
                "bad_request",
                "body must be JSON {\"expected\", \"new\"}",
            ));
        };
        let text = |name: &str| {
            body.get(name)
                .and_then(|value| value.as_str())
                .map(str::as_bytes)
        };
        let swapped = kv::compare_and_swap(key, text("expected"), text("new"))?;
        return Ok(Response::json(&json!({ "swapped": swapped })));
    }
    if let Some(key) = path.strip_prefix("/incr/") {
        let delta = req
            .query_param("delta")
            .and_then(|delta| delta.parse().ok())
            .unwrap_or(1);
        return Ok(Response::json(
            &json!({ "value": kv::increment(key, delta)? }),
        ));
    }
    Ok(Response::error(
        404,
        "not_found",
        "see the kvstore example's routes",
    ))
}

fn kv_error(err: kv::Error) -> Response {
    let (status, code) = match &err {
        kv::Error::InvalidKey(_) | kv::Error::KeyTooLarge => (400, "invalid_key"),
        kv::Error::ValueTooLarge => (413, "value_too_large"),
        kv::Error::QuotaExceeded => (507, "quota_exceeded"),
        kv::Error::NotANumber => (409, "not_a_number"),
        kv::Error::Unavailable(_) => (503, "kv_unavailable"),
    };
    Response::error(status, code, &format!("{err:?}"))
}

droplet!(handle);
