//! The soak scenario (`droplet-bench --soak-minutes N`; not part of CI):
//! N minutes of mixed traffic at 64 connections in all — hello, kv reads
//! and durable writes, authenticated writes, a runaway droplet hammered,
//! and a deploy every 10 s — then the count of unexpected errors (must be
//! 0) and the host's RSS over time (must be flat after warm-up).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use serde_json::json;

use super::{Load, Opts, Server, admin_token, deploy, finish_wrk, rss_kib, spawn_wrk};

/// How often RSS is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// RSS before this is warm-up.
const WARM_UP: Duration = Duration::from_secs(60);

/// Runs the soak for `minutes` and writes `soak.json` / `soak.md` beside
/// the other reports.
pub fn run(opts: &Opts, minutes: u64) -> Result<()> {
    let duration = Duration::from_secs(minutes.max(1) * 60);
    let opts = Opts {
        duration,
        ..opts.clone()
    };
    let dir = opts.out.join("soak");
    let _ = std::fs::remove_dir_all(&dir);
    let droplets = dir.join("droplets");
    std::fs::create_dir_all(&droplets)?;
    let copy = |example: &str, name: &str, manifest: &str| {
        super::copy_example(&opts, &droplets, example, name, manifest)
    };
    copy("hello", "hello", "")?;
    copy("hello", "swapme", "")?;
    copy("kvstore", "kv", "max_concurrency = 128\n")?;
    copy(
        "kvstore",
        "secure",
        "auth = \"jwt\"\nmax_concurrency = 64\n",
    )?;
    copy("spin", "spin", "budget_ms = 50\n")?;
    let host = Server::start_host_with(&opts, &droplets, &dir.join("data"), &[])?;
    let token = admin_token(&opts)?;
    let seeded = super::http_put_status(host.addr, "/kv/k/soak", "seed")?;
    ensure!(seeded == 200, "seeding the soak's kv key answered {seeded}");

    let bearer = Some(format!("Bearer {token}"));
    let loads = [
        ("hello", Load::get(host.url("/hello/"), 24), true),
        ("kv get", Load::get(host.url("/kv/k/soak"), 8), true),
        (
            "kv durable set",
            Load {
                url: host.url("/kv/k/soak"),
                connections: 8,
                method: "PUT",
                body: "a value written over and over",
                authorization: None,
                spread: 0,
            },
            true,
        ),
        (
            "authenticated set",
            Load {
                url: host.url("/secure/k/soak"),
                connections: 8,
                method: "PUT",
                body: "a value only token holders write",
                authorization: bearer,
                spread: 0,
            },
            true,
        ),
        (
            "runaway (504s expected)",
            Load::get(host.url("/spin/"), 16),
            false,
        ),
    ];
    let started = Instant::now();
    let children = loads
        .iter()
        .map(|(_, load, _)| spawn_wrk(&opts, load))
        .collect::<Result<Vec<_>>>()?;

    // A deploy every 10 s, and an RSS sample every 5 s, until the loads end.
    let stop = Arc::new(AtomicBool::new(false));
    let deployer = std::thread::spawn({
        use base64::Engine;
        let (stop, addr, token) = (Arc::clone(&stop), host.addr, token.clone());
        let module = base64::engine::general_purpose::STANDARD
            .encode(std::fs::read(opts.examples.join("hello.wasm"))?);
        move || -> Result<u64> {
            let mut deploys = 0;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(10));
                let manifest = format!("[config]\ngreeting = \"v{deploys}\"\n");
                let status = deploy(addr, &token, "swapme", &module, &manifest)?;
                ensure!(status == 200, "a deploy answered {status}");
                deploys += 1;
            }
            Ok(deploys)
        }
    });
    let mut rss = Vec::new();
    while started.elapsed() < duration {
        rss.push((started.elapsed().as_secs(), rss_kib(host.pid()) / 1024));
        std::thread::sleep(SAMPLE_EVERY);
    }
    let mut results = Vec::new();
    for ((name, _, must_be_2xx), child) in loads.iter().zip(children) {
        let run = finish_wrk(child)?;
        results.push((*name, *must_be_2xx, run));
    }
    stop.store(true, Ordering::Relaxed);
    let deploys = deployer
        .join()
        .map_err(|_| anyhow::anyhow!("deployer panicked"))??;
    rss.push((started.elapsed().as_secs(), rss_kib(host.pid()) / 1024));

    let unexpected: u64 = results
        .iter()
        .map(|(_, must_be_2xx, run)| run.socket_errors + if *must_be_2xx { run.non_2xx } else { 0 })
        .sum();
    let warm: Vec<u64> = rss
        .iter()
        .filter(|(at, _)| *at >= WARM_UP.as_secs())
        .map(|(_, mib)| *mib)
        .collect();
    let (warm_min, warm_max) = (
        warm.iter().copied().min().unwrap_or(0),
        warm.iter().copied().max().unwrap_or(0),
    );
    write_report(
        &opts.out,
        minutes,
        &results,
        deploys,
        unexpected,
        &rss,
        (warm_min, warm_max),
    )?;
    drop(host);
    ensure!(
        unexpected == 0,
        "{unexpected} unexpected errors in the soak"
    );
    Ok(())
}

fn write_report(
    out: &Path,
    minutes: u64,
    results: &[(&str, bool, super::WrkRun)],
    deploys: u64,
    unexpected: u64,
    rss: &[(u64, u64)],
    (warm_min, warm_max): (u64, u64),
) -> Result<()> {
    let mut md = format!(
        "Soak {minutes} min, 64 connections in all, a deploy every 10 s ({deploys} deploys). \
         Unexpected errors: {unexpected}. RSS after {} s of warm-up: {warm_min}–{warm_max} MiB.\n\n\
         | load | requests | req/s | non-2xx | socket errors | p99 (ms) |\n| --- | --- | --- | --- | --- | --- |\n",
        WARM_UP.as_secs()
    );
    for (name, _, run) in results {
        md.push_str(&format!(
            "| {name} | {} | {:.0} | {} | {} | {:.2} |\n",
            run.requests,
            run.rps(),
            run.non_2xx,
            run.socket_errors,
            run.p99_us as f64 / 1e3
        ));
    }
    md.push_str("\nRSS (MiB) by second: ");
    md.push_str(
        &rss.iter()
            .map(|(at, mib)| format!("{at}s {mib}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    md.push('\n');
    std::fs::write(out.join("soak.md"), &md)?;
    let json = json!({
        "minutes": minutes,
        "deploys": deploys,
        "unexpected_errors": unexpected,
        "rss_mib": rss,
        "warm_rss_mib": [warm_min, warm_max],
    });
    std::fs::write(out.join("soak.json"), serde_json::to_string_pretty(&json)?)?;
    println!("{md}");
    Ok(())
}
