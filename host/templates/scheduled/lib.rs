//! A scheduled droplet: the host calls `POST /tasks/tick` at every instant
//! of the manifest's `[[schedule]]`, and `GET /` says what it did.
//!
//! Each instant runs once across a fleet. A run whose host went away is
//! run again by another host with the same `scheduled_at`, so the work
//! here is keyed on the instant: running it twice changes nothing.

use droplet_sdk::{Error, Json, Request, Response, Result, Router, droplet, kv};
use serde_json::{Value, json};

/// How long a run's record is kept: `GET /` counts the last hour's runs.
const KEEP_MS: u64 = 60 * 60 * 1000;

fn handle(req: Request) -> Response {
    Router::new()
        .post("/tasks/tick", tick)
        .get("/", status)
        .handle(req)
}

/// One instant of the `tick` schedule. Only the host sets the headers
/// `req.schedule()` reads (it drops them from requests that come from
/// outside), so a request from anyone else is refused.
fn tick(req: Request) -> Result<String> {
    let run = req
        .schedule()
        .ok_or_else(|| Error::new(403, "forbidden", "only the host's schedule calls this"))?;
    kv::set(&format!("run:{}", run.scheduled_at), b"done", Some(KEEP_MS))?;
    kv::set("last", run.scheduled_at.as_bytes(), None)?;
    Ok(format!("{} ran for {}\n", run.name, run.scheduled_at))
}

/// `GET /`: the last instant run and how many ran in the last hour.
fn status(_req: Request) -> Result<Json<Value>> {
    let mut runs = 0;
    let mut cursor = None;
    loop {
        let page = kv::list_keys("run:", cursor.as_deref(), 1000)?;
        runs += page.keys.len();
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let last = kv::get("last")?.map(|at| String::from_utf8_lossy(&at).into_owned());
    Ok(Json(json!({ "runs_last_hour": runs, "last": last })))
}

droplet!(handle);

// `cargo test` runs the handler natively against the SDK's in-memory test
// world; a test plays the host by setting the schedule's headers.
#[cfg(test)]
mod tests {
    use super::*;
    use droplet_sdk::testing::TestWorld;

    fn run_at(instant: &str) -> Request {
        Request::post("/tasks/tick", "")
            .with_header("x-droplet-schedule", "tick")
            .with_header("x-droplet-scheduled-at", instant)
    }

    #[test]
    fn each_instant_counts_once_even_when_run_again() {
        let mut world = TestWorld::new();
        for instant in ["2026-12-04T10:00:00Z", "2026-12-04T10:01:00Z", "2026-12-04T10:01:00Z"] {
            assert_eq!(world.call(handle, run_at(instant)).status(), 200);
        }
        let status: Value = world.call(handle, Request::get("/")).json_body().unwrap();
        assert_eq!(status["runs_last_hour"], 2);
        assert_eq!(status["last"], "2026-12-04T10:01:00Z");
    }

    #[test]
    fn only_the_host_runs_the_task() {
        let mut world = TestWorld::new();
        let outside = world.call(handle, Request::post("/tasks/tick", ""));
        assert_eq!(outside.status(), 403);
        let status: Value = world.call(handle, Request::get("/")).json_body().unwrap();
        assert_eq!(status["runs_last_hour"], 0);
    }
}
