//! Counts requests: every request increments one durable counter and gets
//! the new count back. `GET /` counts; the count survives restarts.

use droplet_sdk::{Request, Response, droplet, kv};

fn handle(_req: Request) -> Response {
    match kv::increment("count", 1) {
        Ok(count) => Response::json(&serde_json::json!({ "count": count })),
        Err(err) => Response::error(503, "kv_unavailable", &err.to_string()),
    }
}

droplet!(handle);
