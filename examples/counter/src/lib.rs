//! Counts requests: every request increments one durable counter and gets
//! the new count back. `GET /` counts; the count survives restarts.

use droplet_sdk::{Json, Request, Result, droplet, kv};
use serde_json::{Value, json};

fn handle(_req: Request) -> Result<Json<Value>> {
    Ok(Json(json!({ "count": kv::increment("count", 1)? })))
}

droplet!(handle);
