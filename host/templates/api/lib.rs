//! A droplet: answers every request in a fresh, isolated instance.

use droplet_sdk::{Json, Request, Response, Result, Router, config, droplet, kv};
use serde_json::{Value, json};

fn handle(req: Request) -> Response {
    Router::new()
        .get("/hello/:name", greet)
        .get("/*path", visit)
        .handle(req)
}

/// `GET /hello/{name}`: a greeting from the manifest's `[config]`.
fn greet(req: Request) -> String {
    let greeting = config::get_or("greeting", "Hello");
    format!("{greeting}, {}!\n", req.param("name").unwrap_or("you"))
}

/// Any other `GET`: counts the visit in this droplet's own kv namespace
/// (a durable counter; a kv failure answers 503 `kv_unavailable`).
fn visit(req: Request) -> Result<Json<Value>> {
    let visits = kv::increment("visits", 1)?;
    Ok(Json(json!({ "hello": "world", "path": req.path(), "visits": visits })))
}

droplet!(handle);

// `cargo test` runs the handler natively against the SDK's in-memory test
// world: kv, config, the caller's claims and outbound responses.
#[cfg(test)]
mod tests {
    use super::*;
    use droplet_sdk::testing::TestWorld;

    #[test]
    fn greets_and_counts_visits() {
        let mut world = TestWorld::new().with_config("greeting", "Hi");
        let greeting = world.call(handle, Request::get("/hello/ann"));
        assert_eq!(greeting.body_text(), Some("Hi, ann!\n"));
        for visits in 1..=2 {
            let reply: Value = world.call(handle, Request::get("/a")).json_body().unwrap();
            assert_eq!(reply["visits"], visits);
        }
        assert_eq!(world.call(handle, Request::post("/a", "")).status(), 405);
    }
}
