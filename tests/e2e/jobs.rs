//! Work no request waits for, end to end: schedules and queues on one host
//! (sled) and on a fleet (PostgreSQL), the `chores` example as the droplet.
//! A schedule's instants and a queue's jobs are counted in the droplet's
//! kv (`GET /chores/status`).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use serde_json::Value;
use tokio::time::Instant;

use crate::fleet::fleet_host;
use crate::pg::TestDatabase;
use crate::support::{
    GENEROUS, Host, HostBuilder, PATIENCE, Reply, TEST_SECRET, admin_request, claims_with_scope,
    cli, hs256_token,
};

/// `chores` with a schedule and a consumer as the test needs them.
fn manifest(cron: &str, config: &str, consume: &str) -> String {
    format!(
        "{GENEROUS}send_queues = [\"emails\"]\n\
         [[schedule]]\nname = \"tidy\"\ncron = \"{cron}\"\npath = \"/tasks/tidy\"\n\
         {consume}\
         [config]\n{config}"
    )
}

const CONSUME: &str = "[[consume]]\nqueue = \"emails\"\npath = \"/jobs/email\"\nmax_attempts = 3\nbackoff_ms = 100\nbatch = 10\n";

/// The droplet's counters, by key.
async fn status(host: &Host) -> BTreeMap<String, i64> {
    status_of(host.get("/chores/status").await)
}

/// The counters in a `/chores/status` reply, which must be a 200.
fn status_of(reply: Reply) -> BTreeMap<String, i64> {
    assert_eq!(reply.status, 200, "{}", reply.text());
    let Value::Object(counts) = reply.json() else {
        panic!("not an object: {}", reply.text())
    };
    counts
        .into_iter()
        .map(|(key, value)| (key, value.as_i64().unwrap_or_default()))
        .collect()
}

/// Polls `host`'s counters until `done` says so.
async fn wait_for(
    host: &Host,
    within: Duration,
    done: impl Fn(&BTreeMap<String, i64>) -> bool,
) -> BTreeMap<String, i64> {
    let deadline = Instant::now() + within;
    loop {
        // While the droplet's slots are busy with jobs, a poll may run out of
        // its budget (504); that is not what these tests judge: poll again.
        let reply = host.get("/chores/status").await;
        if reply.status == 504 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let counts = status_of(reply);
        if done(&counts) {
            return counts;
        }
        assert!(
            Instant::now() < deadline,
            "not done in time; the droplet's counters: {counts:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn with_prefix<'a>(
    counts: &'a BTreeMap<String, i64>,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a str, i64)> + 'a {
    counts
        .iter()
        .filter_map(move |(key, count)| Some((key.strip_prefix(prefix)?, *count)))
}

fn post(path: &str, body: &str) -> Request<Bytes> {
    Request::builder()
        .method("POST")
        .uri(path)
        .body(Bytes::from(body.to_string()))
        .unwrap()
}

/// Queues an email through `host`; the job's id.
async fn signup(host: &Host, address: &str) -> u64 {
    let reply = host.send(post("/chores/signup", address)).await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    reply.json()["queued"].as_u64().expect("a job id")
}

/// Seconds since the epoch of an instant as `x-droplet-scheduled-at` says it.
fn epoch_s(instant: &str) -> i64 {
    let (date, time) = instant.trim_end_matches('Z').split_once('T').unwrap();
    let [y, mo, d]: [i64; 3] = date
        .split('-')
        .map(|part| part.parse().unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    let [h, mi, s]: [i64; 3] = time
        .split(':')
        .map(|part| part.parse().unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + h * 3600 + mi * 60 + s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schedule_every_second_runs_each_instant_once_and_outside_headers_are_dropped() {
    let host = HostBuilder::new()
        .droplet_with("chores", "chores", &manifest("* * * * * *", "", ""))
        .env("JWT_SECRET", TEST_SECRET)
        .start()
        .await;
    let counts = wait_for(&host, PATIENCE * 2, |counts| {
        with_prefix(counts, "run:").count() >= 10
    })
    .await;
    let runs: Vec<(i64, i64)> = with_prefix(&counts, "run:")
        .map(|(instant, count)| (epoch_s(instant), count))
        .collect();
    assert!(
        runs.iter().all(|(_, count)| *count == 1),
        "each instant once: {runs:?}"
    );
    // No instant skipped between the first and the last.
    let (first, last) = (runs[0].0, runs[runs.len() - 1].0);
    assert_eq!(
        (last - first + 1) as usize,
        runs.len(),
        "every second from the first run to the last: {runs:?}"
    );

    // From outside, the host's headers are dropped: the droplet refuses.
    let forged = Request::builder()
        .method("POST")
        .uri("/chores/tasks/tidy")
        .header("x-droplet-schedule", "tidy")
        .header("x-droplet-scheduled-at", "2020-01-01T00:00:00Z")
        .body(Bytes::new())
        .unwrap();
    host.send(forged).await.assert_error(403, "forbidden");
    let forged_job = Request::builder()
        .method("POST")
        .uri("/chores/jobs/email")
        .header("x-droplet-queue", "emails")
        .header("x-droplet-job-id", "1")
        .header("x-droplet-attempt", "1")
        .body(Bytes::from("eve@example.com"))
        .unwrap();
    host.send(forged_job).await.assert_error(403, "forbidden");
    assert!(!status(&host).await.contains_key("run:2020-01-01T00:00:00Z"));

    // Operators see the schedule's next instant and last run.
    let schedules = admin_request(&host, "GET", "/_admin/schedules", None).await;
    assert_eq!(schedules.status, 200, "{}", schedules.text());
    let tidy = &schedules.json()["schedules"][0];
    assert_eq!(
        (tidy["droplet"].as_str(), tidy["name"].as_str()),
        (Some("chores"), Some("tidy"))
    );
    assert!(tidy["next_at"].is_string(), "{tidy}");
    assert_eq!(tidy["last"]["status"], 200, "{tidy}");
    // Each run is a call with its own trace id and access line.
    let calls = host
        .log_lines()
        .into_iter()
        .filter(|line| line["message"] == "scheduled call")
        .count();
    assert!(calls >= 10, "{calls} scheduled calls logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_are_retried_dead_lettered_redriven_and_kept_across_a_restart() {
    let data = tempfile::tempdir().unwrap();
    // First without a consumer: the jobs wait in the host's sled store.
    let sender_only = manifest("0 0 1 1 *", "", "");
    let mut host = HostBuilder::new()
        .droplet_with("chores", "chores", &sender_only)
        .env("JWT_SECRET", TEST_SECRET)
        .data(data.path())
        .start()
        .await;
    let ada = signup(&host, "ada@example.com").await;
    let flaky = signup(&host, "flaky@example.com").await;
    let bounce = signup(&host, "bounce@example.com").await;
    let queues = admin_request(&host, "GET", "/_admin/queues", None).await;
    assert_eq!(queues.json()["queues"][0]["depth"], 3, "{}", queues.text());
    host.signal("TERM");
    host.wait_exit(PATIENCE).await.expect("the host stops");
    drop(host);

    // Back with a consumer, on the same data: every job is delivered.
    let host = HostBuilder::new()
        .droplet_with("chores", "chores", &manifest("0 0 1 1 *", "", CONSUME))
        .env("JWT_SECRET", TEST_SECRET)
        .data(data.path())
        .start()
        .await;
    let attempts = |id: u64| format!("attempts:{id}");
    let counts = wait_for(&host, PATIENCE, |counts| {
        counts.get(&format!("sent:{flaky}")) == Some(&1)
            && counts.get(&attempts(bounce)) == Some(&3)
            && counts.get(&format!("sent:{ada}")) == Some(&1)
    })
    .await;
    assert_eq!(counts.get(&attempts(ada)), Some(&1), "{counts:?}");
    assert_eq!(counts.get(&attempts(flaky)), Some(&3), "attempts 1, 2, 3");
    assert_eq!(counts.get(&format!("sent:{bounce}")), None);

    // The bounced one is in the dead-letter list, with why.
    let deadline = Instant::now() + PATIENCE;
    let dead = loop {
        let dead = admin_request(&host, "GET", "/_admin/queues/emails/dead", None).await;
        assert_eq!(dead.status, 200, "{}", dead.text());
        if dead.json()["jobs"]
            .as_array()
            .is_some_and(|jobs| !jobs.is_empty())
        {
            break dead.json();
        }
        assert!(Instant::now() < deadline, "no dead job: {}", dead.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let job = &dead["jobs"][0];
    assert_eq!(job["id"].as_u64(), Some(bounce));
    assert_eq!(job["attempts"], 3);
    assert_eq!(job["payload"], "bounce@example.com");
    assert!(
        job["error"].as_str().unwrap().contains("502"),
        "the last failure: {job}"
    );
    let token = hs256_token(&claims_with_scope("droplets:admin"));
    let (ok, out, err) = cli(
        &[
            "queue",
            "dead",
            "emails",
            "--host",
            &host.url(),
            "--token",
            &token,
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert!(out.contains("bounce@example.com"), "{out}");
    let (ok, out, err) = cli(
        &["queue", "list", "--host", &host.url(), "--token", &token],
        &[],
    );
    assert!(ok, "{err}");
    assert!(out.contains("emails") && out.contains("chores"), "{out}");

    // Re-driven, it gets three fresh attempts (and fails them again).
    let (ok, out, err) = cli(
        &[
            "queue",
            "redrive",
            "emails",
            "--job",
            &bounce.to_string(),
            "--host",
            &host.url(),
            "--token",
            &token,
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("1 job(s)"), "{out}");
    wait_for(&host, PATIENCE, |counts| {
        counts.get(&attempts(bounce)) == Some(&6)
    })
    .await;
    let missing = admin_request(
        &host,
        "POST",
        "/_admin/queues/emails/redrive?job=999999",
        None,
    )
    .await;
    missing.assert_error(404, "not_found");
    let queues = admin_request(&host, "GET", "/_admin/queues", None).await;
    let emails = &queues.json()["queues"][0];
    assert_eq!(emails["queue"], "emails");
    assert_eq!(emails["consumers"][0], "chores");
    assert_eq!(emails["senders"][0], "chores");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_schedules_consumers_and_ungranted_queues_are_refused_at_load() {
    let host = HostBuilder::new()
        .droplet_with(
            "badcron",
            "chores",
            "send_queues = [\"emails\"]\n[[schedule]]\nname = \"x\"\ncron = \"61 * * * *\"\n",
        )
        .droplet_with(
            "badopt",
            "chores",
            "send_queues = [\"emails\"]\n[[consume]]\nqueue = \"emails\"\nretries = 3\n",
        )
        .droplet_with("ungranted", "chores", "")
        .droplet("hello", "hello")
        .start()
        .await;
    let reason = host
        .get("/badcron/status")
        .await
        .assert_error(503, "droplet_unavailable");
    assert!(reason.contains("schedule.cron"), "{reason}");
    let reason = host
        .get("/badopt/status")
        .await
        .assert_error(503, "droplet_unavailable");
    assert!(reason.contains("unknown field `retries`"), "{reason}");
    let reason = host
        .get("/ungranted/status")
        .await
        .assert_error(503, "droplet_unavailable");
    assert!(
        reason.contains("fp:droplet/queue") && reason.contains("send_queues"),
        "{reason}"
    );
    assert_eq!(host.get("/hello/").await.status, 200);
}

/// Rows of `droplet_jobs` held by host `id` now.
async fn held_by(db: &TestDatabase, id: &str) -> i64 {
    db.client()
        .await
        .query_one(
            "SELECT count(*) FROM droplet_jobs WHERE state = 'held' AND holder LIKE $1",
            &[&format!("{id}#%")],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_of_three_runs_each_instant_once_and_reruns_one_its_host_left() {
    let Some(db) = TestDatabase::create("jobs_fleet_schedule").await else {
        return;
    };
    // A run takes 1.5 s, every 2 s; its lease ends 3 + 5 s after it began.
    let chores = format!(
        "budget_ms = 3000\n{}",
        manifest("*/2 * * * * *", "run_ms = \"1500\"\n", "").replace(GENEROUS, "")
    );
    let start = |id: &'static str| {
        fleet_host(&db, id)
            .droplet_with("chores", "chores", &chores)
            .start()
    };
    let (a, b, c) = tokio::join!(start("a"), start("b"), start("c"));
    let mut a = Some(a);
    // Kill host a while it holds a run.
    let deadline = Instant::now() + PATIENCE * 2;
    while held_by(&db, "a").await == 0 {
        assert!(Instant::now() < deadline, "host a never held a run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Well into the run (it started within milliseconds of being held).
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.as_mut().unwrap().signal("KILL");
    let killed_at = Instant::now();
    a.take();
    // Every instant from then on, and the one a left, runs exactly once.
    let counts = wait_for(&b, PATIENCE * 3, |counts| {
        killed_at.elapsed() > Duration::from_secs(14)
            && with_prefix(counts, "started:")
                .all(|(instant, _)| counts.contains_key(&format!("run:{instant}")))
    })
    .await;
    let started: Vec<(&str, i64)> = with_prefix(&counts, "started:").collect();
    let runs: BTreeMap<&str, i64> = with_prefix(&counts, "run:").collect();
    assert!(runs.len() >= 6, "{counts:#?}");
    for (instant, count) in &runs {
        assert_eq!(
            *count, 1,
            "instant {instant} ran {count} times: {counts:#?}"
        );
    }
    let rerun: Vec<&str> = started
        .iter()
        .filter(|(_, count)| *count == 2)
        .map(|(instant, _)| *instant)
        .collect();
    assert!(
        !rerun.is_empty(),
        "the instant host a left was started again: {counts:#?}"
    );
    // Instants are two seconds apart, none lost between the first and last.
    let seconds: Vec<i64> = runs.keys().map(|instant| epoch_s(instant)).collect();
    for pair in seconds.windows(2) {
        assert_eq!(pair[1] - pair[0], 2, "an instant was lost: {seconds:?}");
    }
    let schedules = admin_request(&c, "GET", "/_admin/schedules", None).await;
    let last = &schedules.json()["schedules"][0]["last"];
    assert!(
        ["b", "c"].contains(&last["host"].as_str().unwrap_or("")),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_jobs_through_two_hosts_are_each_acknowledged_once_and_outlive_a_killed_host() {
    let Some(db) = TestDatabase::create("jobs_fleet_queue").await else {
        return;
    };
    let chores = manifest("0 0 1 1 *", "", CONSUME);
    let start = |id: &'static str| {
        fleet_host(&db, id)
            .droplet_with("chores", "chores", &chores)
            .start()
    };
    let (a, b) = tokio::join!(start("a"), start("b"));
    let mut ids = Vec::new();
    for index in 0..1000 {
        let host = if index % 2 == 0 { &a } else { &b };
        ids.push(signup(host, &format!("user{index}@example.com")).await);
    }
    let counts = wait_for(&a, PATIENCE * 4, |counts| {
        with_prefix(counts, "sent:").count() >= 1000
    })
    .await;
    for id in &ids {
        assert_eq!(counts.get(&format!("sent:{id}")), Some(&1), "job {id}");
        assert_eq!(counts.get(&format!("attempts:{id}")), Some(&1), "job {id}");
    }
    let handled = |host: &Host| {
        host.log_lines()
            .into_iter()
            .filter(|line| line["message"] == "job call")
            .count()
    };
    assert!(handled(&a) > 0 && handled(&b) > 0, "both hosts consumed");
    drop((a, b));

    // Slow sends: host c holds jobs when it is killed; host d delivers them.
    let slow = format!(
        "budget_ms = 3000\n{}",
        manifest("0 0 1 1 *", "send_ms = \"1500\"\n", CONSUME).replace(GENEROUS, "")
    );
    let mut c = fleet_host(&db, "c")
        .droplet_with("chores", "chores", &slow)
        .start()
        .await;
    let mut slow_ids = Vec::new();
    for index in 0..10 {
        slow_ids.push(signup(&c, &format!("slow{index}@example.com")).await);
    }
    let deadline = Instant::now() + PATIENCE;
    while held_by(&db, "c").await == 0 {
        assert!(Instant::now() < deadline, "host c never held a job");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.signal("KILL");
    c.wait_exit(PATIENCE).await;
    let d = fleet_host(&db, "d")
        .droplet_with("chores", "chores", &slow)
        .start()
        .await;
    let counts = wait_for(&d, PATIENCE * 3, |counts| {
        slow_ids
            .iter()
            .all(|id| counts.contains_key(&format!("sent:{id}")))
    })
    .await;
    let redelivered = slow_ids
        .iter()
        .filter(|id| {
            counts
                .get(&format!("attempts:{id}"))
                .is_some_and(|n| *n >= 2)
        })
        .count();
    assert!(redelivered > 0, "a job c held ran again on d: {counts:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hot_swap_hands_queues_and_schedules_to_the_new_version_without_losing_or_doubling() {
    let version = |batch: u32, budget: u32| {
        manifest(
            "* * * * * *",
            "send_ms = \"20\"\n",
            &CONSUME.replace("batch = 10", &format!("batch = {batch}")),
        )
        .replace(
            "path = \"/tasks/tidy\"\n",
            &format!("path = \"/tasks/tidy\"\nbudget_ms = {budget}\n"),
        )
    };
    let host = HostBuilder::new()
        .droplet_with("chores", "chores", &version(2, 20_000))
        .env("JWT_SECRET", TEST_SECRET)
        .arg("--no-watch")
        .start()
        .await;
    let mut ids = Vec::new();
    for index in 0..150 {
        ids.push(signup(&host, &format!("user{index}@example.com")).await);
    }
    wait_for(&host, PATIENCE, |counts| {
        with_prefix(counts, "sent:").count() >= 20
    })
    .await;
    // A new version (the same module, another consumer and schedule) while
    // the queue drains and the schedule fires.
    let deployed = admin_request(
        &host,
        "PUT",
        "/_admin/droplets/chores",
        Some(&serde_json::json!({ "manifest": version(5, 30_000) })),
    )
    .await;
    assert!(deployed.status < 300, "{}", deployed.text());
    let swapped_at = Instant::now();
    let counts = wait_for(&host, PATIENCE * 2, |counts| {
        with_prefix(counts, "sent:").count() >= 150 && swapped_at.elapsed() > Duration::from_secs(3)
    })
    .await;
    for id in &ids {
        assert_eq!(
            counts.get(&format!("sent:{id}")),
            Some(&1),
            "job {id}: {counts:?}"
        );
        assert_eq!(counts.get(&format!("attempts:{id}")), Some(&1), "job {id}");
    }
    for (instant, count) in with_prefix(&counts, "run:") {
        assert_eq!(count, 1, "instant {instant} across the swap");
    }
    // Operators' figures.
    let metrics = host.get("/metrics").await.text();
    for name in [
        "droplet_jobs_sent_total{queue=\"emails\"} 150",
        "droplet_job_attempts_total{queue=\"emails\",outcome=\"acknowledged\"} 150",
        "droplet_schedule_runs_total{",
    ] {
        assert!(metrics.contains(name), "no {name} in:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catch_up_latest_runs_the_instant_missed_while_down_once() {
    let data = tempfile::tempdir().unwrap();
    // Every minute: without catch-up the first run would wait for the next
    // minute; with `latest`, the current minute's instant (missed: no host
    // ran it) runs at start.
    let chores = manifest("* * * * *", "", "").replace(
        "path = \"/tasks/tidy\"\n",
        "path = \"/tasks/tidy\"\ncatch_up = \"latest\"\n",
    );
    let start = || {
        HostBuilder::new()
            .droplet_with("chores", "chores", &chores)
            .data(data.path())
            .start()
    };
    let mut host = start().await;
    let counts = wait_for(&host, PATIENCE, |counts| {
        with_prefix(counts, "run:").count() >= 1
    })
    .await;
    let (instant, count) = with_prefix(&counts, "run:").next().unwrap();
    assert_eq!(count, 1);
    assert!(instant.ends_with(":00Z"), "a whole minute: {instant}");
    host.signal("TERM");
    host.wait_exit(PATIENCE).await.expect("the host stops");
    drop(host);
    // Back on the same data: that instant ran already, so it is not run again.
    let host = start().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (instant, count) in with_prefix(&status(&host).await, "run:") {
        assert_eq!(count, 1, "instant {instant} ran {count} times");
    }
}
