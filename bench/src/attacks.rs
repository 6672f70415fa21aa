//! The attack scenario (`droplet-bench --attacks`; `--short` runs it
//! small, in CI): the recipes of the third hardening pass run against a
//! release host while its RSS is sampled every 10 ms. Each recipe must be
//! refused as documented, and the host's RSS must stay under the
//! recipe's documented bound (its growth over the RSS before the recipe).
//! Writes `attacks.md` and `attacks.json`; fails when a recipe is not
//! refused or a bound is passed.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use serde::Serialize;

use super::{Opts, Server, admin_token, deploy, http_get_header, http_get_status, rss_kib};

/// The host's budgets in this scenario: the bounds follow from them.
const GUEST_HELD_MB: u64 = 512;
const REQUEST_BUFFER_MB: u64 = 256;
const INTERNAL_CALLS: u32 = 100;
/// What a recipe may add beyond its budget: the allocator's slack, the
/// instances' own memories, connection buffers.
const SLACK_MB: u64 = 128;

/// One recipe's outcome.
#[derive(Debug, Serialize)]
struct Outcome {
    recipe: &'static str,
    item: u32,
    refused: String,
    refused_ok: bool,
    rss_before_mib: u64,
    rss_peak_mib: u64,
    rss_after_mib: u64,
    bound_mib: u64,
    bound_met: bool,
}

/// Samples a process's RSS until stopped; the peak in KiB.
struct Sampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_kib(pid)));
        let (stopping, highest) = (Arc::clone(&stop), Arc::clone(&peak));
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                highest.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn peak_kib(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// Runs `recipe` while sampling the host's RSS; `recipe` answers what the
/// host did and whether that is the documented refusal.
fn measured(
    host: &Server,
    recipe: &'static str,
    item: u32,
    bound_mib: u64,
    run: impl FnOnce() -> Result<(String, bool)>,
) -> Result<Outcome> {
    // Let the previous recipe's memory go back first.
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib(host.pid());
    let sampler = Sampler::start(host.pid());
    let (refused, refused_ok) = run()?;
    let peak = sampler.peak_kib();
    std::thread::sleep(Duration::from_millis(300));
    let after = rss_kib(host.pid());
    let grown = peak.saturating_sub(before) >> 10;
    let outcome = Outcome {
        recipe,
        item,
        refused,
        refused_ok,
        rss_before_mib: before >> 10,
        rss_peak_mib: peak >> 10,
        rss_after_mib: after >> 10,
        bound_mib,
        bound_met: grown <= bound_mib,
    };
    eprintln!("attacks: {outcome:?}");
    Ok(outcome)
}

/// Runs every recipe and writes the report.
pub fn run(opts: &Opts) -> Result<()> {
    let dir = opts.out.join("attacks");
    let _ = std::fs::remove_dir_all(&dir);
    let droplets = dir.join("droplets");
    std::fs::create_dir_all(&droplets)?;
    let copy = |example: &str, name: &str, manifest: &str| {
        super::copy_example(opts, &droplets, example, name, manifest)
    };
    let generous = "budget_ms = 60000\n";
    copy("proxy-hello", "web", generous)?;
    copy("hello", "hello", generous)?;
    copy("hello", "sink", "budget_ms = 60000\nmax_body_kb = 16384\n")?;
    copy("echo", "echo", generous)?;
    copy(
        "gateway",
        "fan",
        "allowed_outbound_hosts = [\"http://*.droplet.internal\"]\nmax_outbound_requests = 1000\nbudget_ms = 60000\n",
    )?;
    copy(
        "gateway",
        "named",
        "allowed_outbound_hosts = [\"http://upstream.invalid\"]\nbudget_ms = 60000\n",
    )?;
    // A listener standing in for an egress proxy named by the environment.
    let proxy = std::net::TcpListener::bind("127.0.0.1:0")?;
    proxy.set_nonblocking(true)?;
    let proxy_url = format!("http://{}", proxy.local_addr()?);
    let args = [
        "--max-guest-held-mb",
        &GUEST_HELD_MB.to_string(),
        "--max-request-buffer-mb",
        &REQUEST_BUFFER_MB.to_string(),
        "--max-internal-calls",
        &INTERNAL_CALLS.to_string(),
        "--access-log",
        "errors",
    ]
    .map(String::from);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Each recipe meets a fresh host, so that what one left in the
    // allocator's free lists does not hide what the next one grows.
    let env = [
        ("HTTP_PROXY", proxy_url.as_str()),
        ("http_proxy", proxy_url.as_str()),
    ];
    let fresh = || Server::start_host_env(opts, &droplets, &dir.join("data"), &args, &env);
    let token = admin_token(opts)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let scale = |full: usize, short: usize| if opts.short { short } else { full };
    let mut outcomes = Vec::new();

    let hoarders = scale(16, 4);
    let host = fresh()?;
    outcomes.push(measured(
        &host,
        "wasi:http `fields` hoarded by parallel calls",
        1,
        GUEST_HELD_MB + SLACK_MB,
        || {
            let statuses = parallel_gets(host.addr, "/web/hoard", hoarders);
            let ok = statuses.iter().all(|status| matches!(status, 500 | 503));
            Ok((format!("{hoarders} calls: {statuses:?}"), ok))
        },
    )?);

    drop(host);
    let host = fresh()?;
    outcomes.push(measured(
        &host,
        "Service-Worker-Allowed: / from a droplet",
        2,
        SLACK_MB,
        || {
            let header = http_get_header(
                host.addr,
                "/echo/sw.js?set=service-worker-allowed:/",
                "service-worker-allowed",
            )?;
            Ok((format!("header forwarded: {header:?}"), header.is_none()))
        },
    )?);

    let connections = scale(1000, 100);
    drop(host);
    let host = fresh()?;
    outcomes.push(measured(
        &host,
        "HTTP/1.1 bodies of 1 MiB - 1 held at once",
        3,
        // The budget, each admitted body's copy in its guest's memory, and
        // each connection's read buffer (64 KiB).
        2 * REQUEST_BUFFER_MB + ((connections as u64 * 64) >> 10) + SLACK_MB,
        || {
            let statuses = runtime.block_on(body_flood(host.addr, connections, (1 << 20) - 1));
            // 0: the host closed the connection on its 503 before it was read.
            let busy = statuses
                .iter()
                .filter(|status| matches!(status, 503 | 0))
                .count();
            let served = statuses.iter().filter(|status| **status == 200).count();
            let others = statuses.len() - busy - served;
            // Refused past the budget (those that fit are served).
            let fit = (REQUEST_BUFFER_MB as usize) << 20;
            let ok = others == 0 && (connections * ((1 << 20) - 1) <= fit || busy > 0);
            Ok((
                format!("{connections} connections: {served} served, {busy} 503 host_busy, {others} other"),
                ok,
            ))
        },
    )?);

    let streams = scale(100, 20);
    drop(host);
    let host = fresh()?;
    outcomes.push(measured(
        &host,
        "HTTP/2: one connection, streams of 8 MiB",
        3,
        // The budget, and each admitted body's copy in its guest's memory.
        2 * REQUEST_BUFFER_MB + SLACK_MB,
        || {
            let statuses = runtime.block_on(h2_flood(host.addr, streams, 8 << 20))?;
            let busy = statuses.iter().filter(|status| **status == 503).count();
            let ok = statuses.iter().all(|status| matches!(status, 200 | 503))
                && (streams < 40 || busy > 0);
            Ok((format!("{streams} streams: {busy} 503 host_busy"), ok))
        },
    )?);

    drop(host);
    let host = fresh()?;
    outcomes.push(measured(
        &host,
        "allowlist entries in numeric host forms",
        4,
        SLACK_MB,
        || {
            let module = base64_module(&opts.examples.join("gateway.wasm"))?;
            let mut refused = Vec::new();
            for form in ["2130706433", "0x7f000001", "127.1", "0177.0.0.1", "*.0.1"] {
                let manifest = format!("allowed_outbound_hosts = [\"http://{form}:9\"]\n");
                refused.push(deploy(host.addr, &token, "numeric", &module, &manifest)?);
            }
            let ok = refused.iter().all(|status| *status == 400);
            Ok((format!("deploys answered {refused:?}"), ok))
        },
    )?);

    drop(host);
    let host = fresh()?;
    outcomes.push(measured(
        &host,
        "HTTP_PROXY in the host's environment",
        5,
        SLACK_MB,
        || {
            let status = http_get_status(
                host.addr,
                "/named/fetch?url=http%3A%2F%2Fupstream.invalid%2F",
            )?;
            let reached = proxy.accept().is_ok();
            Ok((
                format!("fetch answered {status}, proxy reached: {reached}"),
                !reached,
            ))
        },
    )?);

    let calls = scale(1000, 200);
    drop(host);
    let host = fresh()?;
    outcomes.push(measured(
        &host,
        "in-process fan-out from one request",
        6,
        SLACK_MB,
        || {
            let url = format!("/fan/many?url=http%3A%2F%2Fhello.droplet.internal%2F&n={calls}");
            let (fan, bystander) = std::thread::scope(|scope| {
                let fan = scope.spawn(|| http_get_status(host.addr, &url));
                let bystander: Vec<u16> = (0..20)
                    .map(|_| http_get_status(host.addr, "/hello/").unwrap_or(0))
                    .collect();
                (fan.join(), bystander)
            });
            let fan = fan.map_err(|_| anyhow::anyhow!("the fan-out thread panicked"))??;
            let ok = fan == 200 && bystander.iter().all(|status| *status == 200);
            Ok((
                format!("{calls} calls asked: {fan}; a bystander answered {bystander:?}"),
                ok,
            ))
        },
    )?);

    drop(host);
    write(&opts.out, &outcomes)?;
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|outcome| !outcome.refused_ok || !outcome.bound_met)
        .map(|outcome| format!("{}: {}", outcome.recipe, outcome.refused))
        .collect();
    ensure!(
        failed.is_empty(),
        "attack recipes failed:\n{}",
        failed.join("\n")
    );
    Ok(())
}

fn base64_module(path: &Path) -> Result<String> {
    use base64::Engine;
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// `count` GETs of `path` at once; their statuses (0: no answer).
fn parallel_gets(addr: SocketAddr, path: &str, count: usize) -> Vec<u16> {
    std::thread::scope(|scope| {
        let calls: Vec<_> = (0..count)
            .map(|_| scope.spawn(|| long_get(addr, path).unwrap_or(0)))
            .collect();
        calls
            .into_iter()
            .map(|call| call.join().unwrap_or(0))
            .collect()
    })
}

/// A GET that may take long (the readiness helper gives up after 2 s).
fn long_get(addr: SocketAddr, path: &str) -> Result<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).context("status line")?;
    Ok(status.parse()?)
}

/// `connections` clients each send all but the last byte of a body of
/// `length` bytes to `/sink/`, and the last byte only once every one has
/// (so the host holds them all at once, as far as it lets them in); their
/// statuses (0: the connection was cut before an answer was read).
async fn body_flood(addr: SocketAddr, connections: usize, length: usize) -> Vec<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = Instant::now();
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::channel::<()>(connections.max(1));
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (sent_tx, mut go_rx) = (sent_tx.clone(), go_rx.clone());
            tokio::spawn(async move {
                let run = async {
                    let mut stream = tokio::net::TcpStream::connect(addr).await?;
                    let head = format!(
                        "POST /sink/ HTTP/1.1\r\nhost: bench\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n"
                    );
                    stream.write_all(head.as_bytes()).await?;
                    let chunk = vec![b'a'; 64 << 10];
                    let mut sent = 0;
                    // A refused body is answered before it is sent whole:
                    // stop writing when the answer is there.
                    let mut answer = Vec::new();
                    while sent + 1 < length {
                        let piece = chunk.len().min(length - 1 - sent);
                        if stream.write_all(&chunk[..piece]).await.is_err() {
                            break;
                        }
                        sent += piece;
                    }
                    let _ = sent_tx.send(()).await;
                    let _ = go_rx.wait_for(|go| *go).await;
                    let _ = stream.write_all(b"a").await;
                    let _ = tokio::time::timeout(
                        Duration::from_secs(60),
                        stream.read_to_end(&mut answer),
                    )
                    .await;
                    let text = String::from_utf8_lossy(&answer);
                    Ok::<u16, std::io::Error>(
                        text.split_whitespace()
                            .nth(1)
                            .and_then(|status| status.parse().ok())
                            .unwrap_or(0),
                    )
                };
                run.await.unwrap_or(0)
            })
        })
        .collect();
    drop(sent_tx);
    let all_sent = async {
        for _ in 0..connections {
            if sent_rx.recv().await.is_none() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(120), all_sent).await;
    let _ = go_tx.send(true);
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap_or(0));
    }
    eprintln!(
        "attacks: {connections} bodies in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    statuses
}

/// One HTTP/2 connection with `streams` requests of `length` bytes each to
/// `/sink/`, every body sent but the last byte until all are open; their
/// statuses.
async fn h2_flood(addr: SocketAddr, streams: usize, length: usize) -> Result<Vec<u16>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await?;
    tokio::spawn(connection);
    let mut tasks = Vec::new();
    let mut finish = Vec::new();
    for _ in 0..streams {
        let (mut body_tx, body) =
            http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(2);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        finish.push(done_tx);
        let mut sender = sender.clone();
        tasks.push(tokio::spawn(async move {
            let request = http::Request::post(format!("http://{addr}/sink/"))
                .header("content-length", length)
                .body(body)
                .ok()?;
            let feed = async move {
                let piece = Bytes::from(vec![b'a'; 1 << 20]);
                let mut sent = 0;
                while sent + piece.len() < length {
                    if body_tx.send_data(piece.clone()).await.is_err() {
                        return;
                    }
                    sent += piece.len();
                }
                let _ = done_rx.await;
                let _ = body_tx
                    .send_data(Bytes::from(vec![b'a'; length - sent]))
                    .await;
            };
            tokio::spawn(feed);
            sender.ready().await.ok()?;
            let response =
                tokio::time::timeout(Duration::from_secs(60), sender.send_request(request))
                    .await
                    .ok()?
                    .ok()?;
            Some(response.status().as_u16())
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(finish);
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.ok().flatten().unwrap_or(0));
    }
    Ok(statuses)
}

fn write(out: &Path, outcomes: &[Outcome]) -> Result<()> {
    std::fs::write(
        out.join("attacks.json"),
        serde_json::to_string_pretty(outcomes)?,
    )?;
    let mut md = String::from(
        "| item | recipe | the host's answer | refused as documented | RSS before → peak → after (MiB) | bound on growth (MiB) | met |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for outcome in outcomes {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} → {} → {} | {} | {} |\n",
            outcome.item,
            outcome.recipe,
            outcome.refused,
            if outcome.refused_ok { "yes" } else { "**no**" },
            outcome.rss_before_mib,
            outcome.rss_peak_mib,
            outcome.rss_after_mib,
            outcome.bound_mib,
            if outcome.bound_met {
                "met"
            } else {
                "**missed**"
            },
        ));
    }
    std::fs::write(out.join("attacks.md"), &md)?;
    println!("{md}");
    Ok(())
}
