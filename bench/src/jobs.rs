//! Queues (issue 32), on sled and on PostgreSQL (skipped with the reason
//! when there is none): how fast one consumer drains a queue of 10 000
//! jobs (200 in short mode), and hello's throughput while it does, against
//! hello alone on the same host in the same run.
//!
//! Each backend: the `chores` example sends jobs (`POST /chores/signup`,
//! driven by wrk) with no consumer; then a manifest-only deploy adds the
//! consumer (`batch = 16`) and the drain is timed from the deploy until the
//! queue's depth is 0 — once alone, once with hello under load beside it.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde::Serialize;
use serde_json::Value;

use crate::fleet::Schema;
use crate::{
    Load, Opts, Report, Server, admin_token, finish_wrk, http_exchange, measure, spawn_wrk,
};

/// One backend's figures.
#[derive(Debug, Clone, Serialize)]
pub struct JobsRow {
    pub backend: &'static str,
    /// Jobs sent through `POST /chores/signup` per second (16 connections).
    pub sends_per_s: f64,
    /// Jobs drained alone.
    pub jobs: u64,
    /// Jobs per second through one consumer, alone.
    pub jobs_per_s: f64,
    /// Jobs per second while hello is under load.
    pub jobs_per_s_beside_hello: f64,
    /// hello's req/s alone, then while the queue drains.
    pub hello_alone_rps: f64,
    pub hello_beside_rps: f64,
}

impl JobsRow {
    /// hello beside the drain ÷ hello alone.
    pub fn hello_ratio(&self) -> f64 {
        self.hello_beside_rps / self.hello_alone_rps.max(1.0)
    }
}

/// hello's throughput beside a draining queue must stay at least this
/// share of its throughput alone: background calls are held to
/// `--max-background-calls`, so requests keep the rest of the host.
pub const HELLO_BESIDE_TARGET: f64 = 0.5;

const SENDER: &str = "budget_ms = 60000\nsend_queues = [\"emails\"]\nmax_concurrency = 128\n";
const CONSUMER: &str = "budget_ms = 60000\nsend_queues = [\"emails\"]\nmax_concurrency = 128\n\
     [[consume]]\nqueue = \"emails\"\npath = \"/jobs/email\"\nbatch = 16\n";

/// Both backends' rows.
pub fn run(opts: &Opts, report: &mut Report) -> Result<()> {
    let droplets = opts.out.join("jobs-droplets");
    let _ = std::fs::remove_dir_all(&droplets);
    std::fs::create_dir_all(&droplets)?;
    for name in ["hello", "chores"] {
        std::fs::copy(
            opts.examples.join(format!("{name}.wasm")),
            droplets.join(format!("{name}.wasm")),
        )
        .with_context(|| format!("copy {name}.wasm (build the examples first)"))?;
    }
    std::fs::write(droplets.join("chores.toml"), SENDER)?;
    std::fs::write(droplets.join("hello.toml"), "max_concurrency = 128\n")?;
    let token = admin_token(opts)?;
    let data = opts.out.join("jobs-data");
    let _ = std::fs::remove_dir_all(&data);
    let sled = Server::start_host_with(opts, &droplets, &data, &["--no-watch"])?;
    report.jobs.push(backend(opts, "sled", &sled, &token)?);
    drop(sled);
    match Schema::create() {
        Ok(schema) => {
            let data = opts.out.join("jobs-data-pg");
            let _ = std::fs::remove_dir_all(&data);
            let url = schema.url();
            let postgres = Server::start_host_with(
                opts,
                &droplets,
                &data,
                &["--no-watch", "--database-url", &url],
            )?;
            report
                .jobs
                .push(backend(opts, "PostgreSQL", &postgres, &token)?);
        }
        Err(err) => eprintln!("queue rows on PostgreSQL skipped: no PostgreSQL to use ({err:#})"),
    }
    Ok(())
}

fn backend(opts: &Opts, name: &'static str, host: &Server, token: &str) -> Result<JobsRow> {
    let target = if opts.short { 200 } else { 10_000 };
    let hello = Load::get(host.url("/hello/"), 16);

    let sends_per_s = fill(opts, host, token, target)?;
    let jobs = depth(host, token)?;
    let drained = drain(host, token, None, opts)?;
    let jobs_per_s = jobs as f64 / drained.as_secs_f64();

    deploy_manifest(host, token, SENDER)?;
    fill(opts, host, token, target)?;
    let hello_alone = measure(opts, host, &hello, None)?;
    let beside_jobs = depth(host, token)?;
    let mut beside = None;
    let drained_beside = drain(host, token, Some((&hello, &mut beside)), opts)?;
    let hello_beside = beside.context("hello ran beside the drain")?;
    Ok(JobsRow {
        backend: name,
        sends_per_s,
        jobs,
        jobs_per_s,
        jobs_per_s_beside_hello: beside_jobs as f64 / drained_beside.as_secs_f64(),
        hello_alone_rps: hello_alone.rps,
        hello_beside_rps: hello_beside,
    })
}

/// Sends jobs with wrk until the queue holds at least `target`; the sends
/// per second of the last run. Runs of one second: a run of the bench's
/// usual length sends up to 100 000 jobs on sled, the queue's limit.
fn fill(opts: &Opts, host: &Server, token: &str, target: u64) -> Result<f64> {
    let runs = Opts {
        duration: Duration::from_secs(1),
        ..opts.clone()
    };
    let load = Load {
        method: "POST",
        body: "bench@example.com",
        ..Load::get(host.url("/chores/signup"), 16)
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let run = finish_wrk(spawn_wrk(&runs, &load)?)?;
        ensure!(run.non_2xx == 0, "{} signups were refused", run.non_2xx);
        if depth(host, token)? >= target {
            return Ok(run.rps());
        }
        ensure!(Instant::now() < deadline, "the queue did not fill");
    }
}

/// Adds the consumer and waits until the queue is empty; with `hello`,
/// hello is under load from the deploy on (its req/s is kept). The time
/// from the deploy to an empty queue.
fn drain(
    host: &Server,
    token: &str,
    hello: Option<(&Load, &mut Option<f64>)>,
    opts: &Opts,
) -> Result<Duration> {
    deploy_manifest(host, token, CONSUMER)?;
    let started = Instant::now();
    let wrk = match &hello {
        Some((load, _)) => Some(spawn_wrk(opts, load)?),
        None => None,
    };
    let deadline = started + Duration::from_secs(600);
    let drained = loop {
        if depth(host, token)? == 0 {
            break started.elapsed();
        }
        ensure!(Instant::now() < deadline, "the queue did not drain");
        std::thread::sleep(Duration::from_millis(20));
    };
    if let (Some(wrk), Some((_, rps))) = (wrk, hello) {
        *rps = Some(finish_wrk(wrk)?.rps());
    }
    Ok(drained)
}

fn deploy_manifest(host: &Server, token: &str, manifest: &str) -> Result<()> {
    let body = serde_json::json!({ "manifest": manifest }).to_string();
    let response = http_exchange(
        host.addr,
        &format!(
            "PUT /_admin/droplets/chores HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {token}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ),
    )?;
    ensure!(
        response.starts_with("HTTP/1.1 20"),
        "deploying chores' manifest: {response}"
    );
    Ok(())
}

/// The `emails` queue's depth (waiting and in flight).
fn depth(host: &Server, token: &str) -> Result<u64> {
    let response = http_exchange(
        host.addr,
        &format!(
            "GET /_admin/queues HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
        ),
    )?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .context("no body")?;
    let json: Value = serde_json::from_str(body).with_context(|| format!("not JSON: {body}"))?;
    Ok(json["queues"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|queue| queue["queue"] == "emails")
        .and_then(|queue| queue["depth"].as_u64())
        .unwrap_or(0))
}

/// The rows as a table, with the verdict of hello's target.
pub fn markdown(rows: &[JobsRow]) -> String {
    let mut md = String::from(
        "\nQueues: one consumer (`chores`, `batch = 16`) draining a queue, alone and with hello under load (16 connections, one wrk run from the consumer's deploy on) beside it; hello's req/s alone on the same host just before.\n\n\
         | backend | sends/s (16 conns) | jobs drained | jobs/s alone | jobs/s beside hello | hello req/s alone | hello req/s beside the drain | ratio | target |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for row in rows {
        let ratio = row.hello_ratio();
        md.push_str(&format!(
            "| {} | {:.0} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2}× | ≥ {HELLO_BESIDE_TARGET}×: {} |\n",
            row.backend,
            row.sends_per_s,
            row.jobs,
            row.jobs_per_s,
            row.jobs_per_s_beside_hello,
            row.hello_alone_rps,
            row.hello_beside_rps,
            ratio,
            if ratio >= HELLO_BESIDE_TARGET { "met" } else { "missed" }
        ));
    }
    md
}
