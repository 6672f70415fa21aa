//! Work no request waits for.
//!
//! - `POST /signup` with an address queues a welcome email (`emails`)
//!   and answers at once, with the job's id.
//! - `POST /jobs/email` is the `emails` consumer: it "sends" the email
//!   (it keeps it in kv). An address containing `bounce` always fails,
//!   so its job ends in the dead-letter list; one containing `flaky`
//!   fails its first two attempts. `[config] send_ms` makes each send
//!   take that long.
//! - `POST /tasks/tidy` is the `tidy` schedule: it counts its runs per
//!   instant (`run:{scheduled-at}`), and, when the manifest's
//!   `[config] run_ms` says so, takes that long (to show a run whose host
//!   goes away being run again).
//! - `GET /status` lists what happened.
//!
//! The `x-droplet-*` headers these read are set by the host only.

use droplet_sdk::{
    Error, IntoResponse, Json, Request, Response, Result, Router, config, droplet, kv, queue,
};
use serde_json::json;

fn handle(req: Request) -> Response {
    Router::new()
        .post("/signup", signup)
        .post("/jobs/email", send_email)
        .post("/tasks/tidy", tidy)
        .get("/status", status)
        .handle(req)
}

fn signup(req: Request) -> Result<Response> {
    let address = req.text()?.trim().to_string();
    if address.is_empty() || !address.contains('@') {
        return Err(Error::new(
            400,
            "bad_request",
            "give an email address as the body",
        ));
    }
    let id = queue::send("emails", address.as_bytes())?;
    Ok(Json(json!({ "queued": id, "to": address }))
        .into_response()
        .with_status(202))
}

fn send_email(req: Request) -> Result<String> {
    let job = req
        .job()
        .ok_or_else(|| Error::new(403, "forbidden", "only the host calls /jobs/email"))?;
    let address = req.text()?.to_string();
    kv::increment(&format!("attempts:{}", job.id), 1)?;
    let send_ms: u64 = config::get_as("send_ms")?.unwrap_or(0);
    if send_ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(send_ms));
    }
    if address.contains("bounce") || (address.contains("flaky") && job.attempt < 3) {
        return Err(Error::new(
            502,
            "upstream_failed",
            format!(
                "the mail server refused {address} (attempt {})",
                job.attempt
            ),
        ));
    }
    kv::increment(&format!("sent:{}", job.id), 1)?;
    kv::set(&format!("to:{}", job.id), address.as_bytes(), None)?;
    Ok(format!("sent job {} on attempt {}", job.id, job.attempt))
}

fn tidy(req: Request) -> Result<String> {
    let run = req
        .schedule()
        .ok_or_else(|| Error::new(403, "forbidden", "only the host calls /tasks/tidy"))?;
    kv::increment(&format!("started:{}", run.scheduled_at), 1)?;
    let run_ms: u64 = config::get_as("run_ms")?.unwrap_or(0);
    if run_ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(run_ms));
    }
    kv::increment(&format!("run:{}", run.scheduled_at), 1)?;
    Ok(format!("{} ran for {}", run.name, run.scheduled_at))
}

fn status(_req: Request) -> Result<Json<serde_json::Value>> {
    let mut counts = serde_json::Map::new();
    for prefix in ["run:", "started:", "sent:", "attempts:"] {
        let mut cursor = None;
        loop {
            let page = kv::list_keys(prefix, cursor.as_deref(), 1000)?;
            for key in page.keys {
                let value = kv::get(&key)?.unwrap_or_default();
                let count: i64 = String::from_utf8_lossy(&value).parse().unwrap_or(0);
                counts.insert(key, json!(count));
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    Ok(Json(serde_json::Value::Object(counts)))
}

droplet!(handle);

#[cfg(test)]
mod tests {
    use super::*;
    use droplet_sdk::testing::TestWorld;

    #[test]
    fn a_signup_queues_the_email_and_the_job_sends_it() {
        let mut world = TestWorld::new();
        let answer = world.call(handle, Request::post("/signup", "ada@example.com"));
        assert_eq!(answer.status(), 202);
        assert_eq!(world.sent()[0].queue, "emails");
        let job = Request::post("/jobs/email", "ada@example.com")
            .with_header("x-droplet-queue", "emails")
            .with_header("x-droplet-job-id", "1")
            .with_header("x-droplet-attempt", "1");
        assert_eq!(world.call(handle, job).status(), 200);
        assert_eq!(world.kv_get("sent:1").as_deref(), Some(&b"1"[..]));
    }

    #[test]
    fn only_the_host_calls_the_job_and_the_task() {
        let mut world = TestWorld::new();
        let outside = world.call(handle, Request::post("/jobs/email", "x@example.com"));
        assert_eq!(outside.status(), 403);
        let outside = world.call(handle, Request::post("/tasks/tidy", ""));
        assert_eq!(outside.status(), 403);
    }

    #[test]
    fn a_scheduled_run_is_counted_per_instant() {
        let mut world = TestWorld::new();
        let run = Request::post("/tasks/tidy", "")
            .with_header("x-droplet-schedule", "tidy")
            .with_header("x-droplet-scheduled-at", "2026-12-04T10:05:00Z");
        assert_eq!(world.call(handle, run).status(), 200);
        assert_eq!(
            world.kv_get("run:2026-12-04T10:05:00Z").as_deref(),
            Some(&b"1"[..])
        );
    }
}
