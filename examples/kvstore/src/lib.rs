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
//! A key is the rest of the path, percent-decoded. kv errors are the SDK's:
//! invalid or too-large key → 400, value too large → 413, quota exceeded →
//! 507, not a number → 409, unavailable → 503.

use droplet_sdk::{Error, Json, Request, Response, Result, Router, droplet, kv};
use serde_json::{Value, json};

fn handle(req: Request) -> Response {
    Router::new()
        .get("/k/*key", get)
        .put("/k/*key", set)
        .delete("/k/*key", |req: Request| -> Result<Json<Value>> {
            Ok(Json(json!({ "existed": kv::delete(key(&req))? })))
        })
        .get("/exists/*key", |req: Request| -> Result<Json<Value>> {
            Ok(Json(json!({ "exists": kv::exists(key(&req))? })))
        })
        .get("/list", list)
        .post("/cas/*key", cas)
        .post("/incr/*key", |req: Request| -> Result<Json<Value>> {
            let delta = req.query_as("delta")?.unwrap_or(1);
            Ok(Json(json!({ "value": kv::increment(key(&req), delta)? })))
        })
        .handle(req)
}

fn key(req: &Request) -> &str {
    req.param("key").unwrap_or_default()
}

fn get(req: Request) -> Result<Response> {
    let value = kv::get(key(&req))?.ok_or_else(|| Error::not_found("no such key"))?;
    Ok(Response::new(200).with_body(value))
}

fn set(req: Request) -> Result<Json<Value>> {
    kv::set(key(&req), req.body(), req.query_as("ttl_ms")?)?;
    Ok(Json(json!({ "stored": key(&req) })))
}

fn list(req: Request) -> Result<Json<Value>> {
    let prefix = req.query_param("prefix").unwrap_or_default();
    let cursor = req.query_param("cursor");
    let limit = req.query_as("limit")?.unwrap_or(100);
    let page = kv::list_keys(&prefix, cursor.as_deref(), limit)?;
    Ok(Json(
        json!({ "keys": page.keys, "next_cursor": page.next_cursor }),
    ))
}

fn cas(req: Request) -> Result<Json<Value>> {
    let body: Value = req.json()?;
    let text = |name: &str| body.get(name).and_then(Value::as_str).map(str::as_bytes);
    let swapped = kv::compare_and_swap(key(&req), text("expected"), text("new"))?;
    Ok(Json(json!({ "swapped": swapped })))
}

droplet!(handle);

#[cfg(test)]
mod tests {
    use super::*;
    use droplet_sdk::testing::TestWorld;

    #[test]
    fn every_route_reaches_its_kv_call() {
        let mut world = TestWorld::new();
        let put = Request::new("PUT", "/k/a%2Fb").with_body("1");
        assert_eq!(world.call(handle, put).status(), 200);
        assert_eq!(world.kv_get("a/b").as_deref(), Some(&b"1"[..]));
        let value = world.call(handle, Request::post("/incr/a%2Fb?delta=41", ""));
        assert_eq!(value.json_body::<Value>().unwrap()["value"], 42);
        let cas = Request::post("/cas/a%2Fb", r#"{"expected": "42", "new": "0"}"#);
        assert_eq!(
            world.call(handle, cas).json_body::<Value>().unwrap()["swapped"],
            true
        );
        let missing = world.call(handle, Request::get("/k/nope"));
        assert_eq!(missing.status(), 404);
        let not_a_number = world.call(handle, Request::post("/incr/a%2Fb?delta=x", ""));
        assert_eq!(not_a_number.status(), 400);
    }
}
