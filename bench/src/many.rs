//! Many droplets on one host: start-up, idle RSS, the first request to
//! droplets never called before and the dashboard's overview, at 1 000 and
//! 10 000 distinct modules (100 in short mode); then 100 droplets receiving
//! traffic at once against one.
//!
//! Every droplet is `hello` with a custom section of its own, so each is a
//! distinct module with a code-cache entry of its own. A cold run is a new
//! host's first start (it stores every module as a droplet's first
//! version); a warm run is the same host started again, with its data and
//! code cache. At 1 000 and below the host is started eagerly and lazily;
//! past that only lazily, as such a host would be run (compiling 10 000
//! modules eagerly takes minutes): the cold run compiles the sampled
//! droplets into its cache, which the warm run then starts from.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::{
    Load, Opts, Report, Row, Server, Startup, admin_token, hello_variant, http_exchange,
    http_get_status, http_status, median, rss_kib,
};

/// How many droplets' first requests are timed per run (at most).
const SAMPLE: usize = 100;

/// Every size, then the spread rows on the first.
pub fn run(opts: &Opts, report: &mut Report) -> Result<()> {
    let sizes: &[usize] = if opts.short { &[100] } else { &[1000, 10_000] };
    let hello = std::fs::read(opts.examples.join("hello.wasm"))?;
    let mut first = None;
    for &count in sizes {
        let dir = opts.out.join(format!("many-{count}"));
        let droplets = dir.join("droplets");
        // A directory left by an earlier run may hold more droplets.
        if droplets.exists() {
            std::fs::remove_dir_all(&droplets)?;
        }
        std::fs::create_dir_all(&droplets)?;
        for i in 0..count {
            std::fs::write(
                droplets.join(format!("d{i}.wasm")),
                hello_variant(&hello, i as u32),
            )?;
        }
        let warm = size(opts, &dir, count, report)?;
        first.get_or_insert((droplets, warm, count));
    }
    let (droplets, warm_cache, count) = first.context("no size ran")?;
    spread_over_droplets(opts, &droplets, &warm_cache, count, report)
}

/// The runs of one size; returns a cache every droplet is compiled into
/// when there is one (the eager runs'), else the lazy runs'.
fn size(opts: &Opts, dir: &Path, count: usize, report: &mut Report) -> Result<PathBuf> {
    let eager_cache = dir.join("cache-eager");
    let lazy_cache = dir.join("cache-lazy");
    for cache in [&eager_cache, &lazy_cache] {
        if cache.exists() {
            std::fs::remove_dir_all(cache)?;
        }
    }
    let mut runs: Vec<(&str, &str, &Path)> = Vec::new();
    if count <= 1000 {
        runs.push(("cold", "eager", &eager_cache));
        runs.push(("warm", "eager", &eager_cache));
    }
    runs.push(("cold", "lazy", &lazy_cache));
    runs.push(("warm", "lazy", &lazy_cache));
    for (cache, loading, cache_dir) in runs {
        // A warm run is the cold run's host started again: the same data
        // (its deployment store holds every version the cold run stored)
        // and the same code cache.
        let data = dir.join(format!("data-{count}-{loading}"));
        if cache == "cold" && data.exists() {
            std::fs::remove_dir_all(&data)?;
        }
        let mut args = vec![
            "--no-watch",
            "--cache",
            cache_dir.to_str().context("cache path")?,
        ];
        if loading == "lazy" {
            args.push("--lazy");
        }
        let started = Instant::now();
        let host = Server::start_host_with(opts, &dir.join("droplets"), &data, &args)?;
        // The host listens at once; eager start-up ends when every droplet
        // has compiled (`/health` no longer says `starting`).
        if loading == "eager" {
            wait_until_compiled(&host)?;
        }
        let startup_ms = started.elapsed().as_secs_f64() * 1e3;
        let idle_rss_mib = rss_kib(host.pid()) as f64 / 1024.0;
        let timed = |path: &str| -> Result<f64> {
            let started = Instant::now();
            let status = http_get_status(host.addr, path)?;
            ensure!(status == 200, "{path} answered {status}");
            Ok(started.elapsed().as_secs_f64() * 1e3)
        };
        // The same sample in every run, spread over the directory, so that
        // the warm lazy run finds in its cache what the cold one compiled.
        let sample = SAMPLE.min(count);
        let mut firsts = (0..sample)
            .map(|i| timed(&format!("/d{}/", i * count / sample)))
            .collect::<Result<Vec<f64>>>()?;
        let second_request_ms = timed("/d0/")?;
        firsts.sort_by(f64::total_cmp);
        let first_request_p99_ms = firsts[(firsts.len() * 99).div_ceil(100) - 1];
        let token = admin_token(opts)?;
        let mut overview = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            let status = http_status(
                host.addr,
                &format!(
                    "GET /_admin/overview?points=60&sort=requests_per_s HTTP/1.1\r\nhost: bench\r\n\
                     authorization: Bearer {token}\r\nconnection: close\r\n\r\n"
                ),
            )?;
            ensure!(status == 200, "the overview answered {status}");
            overview.push(started.elapsed().as_secs_f64() * 1e3);
        }
        report.check(
            startup_ms > 0.0,
            format!("{count} droplets ({cache}, {loading}) did not start"),
        );
        report.startups.push(Startup {
            droplets: count,
            cache,
            loading,
            startup_ms,
            idle_rss_mib,
            first_request_p50_ms: median(&firsts),
            first_request_p99_ms,
            second_request_ms,
            overview_ms: median(&overview),
        });
    }
    Ok(if count <= 1000 {
        eager_cache
    } else {
        lazy_cache
    })
}

/// 100 droplets receiving traffic at once (round robin: a working set larger
/// than the caches) vs one droplet, at 16 connections, on a host serving the
/// many-droplets directory from the warm code cache.
fn spread_over_droplets(
    opts: &Opts,
    droplets: &Path,
    cache: &Path,
    count: usize,
    report: &mut Report,
) -> Result<()> {
    let spread = count.min(100) as u32;
    let cache = cache.to_str().context("cache path")?;
    let start = |data: &str, extra: &[&str]| {
        let mut args = vec!["--no-watch", "--cache", cache];
        args.extend_from_slice(extra);
        let data = opts.out.join(format!("many-{count}")).join(data);
        if data.exists() {
            std::fs::remove_dir_all(&data)?;
        }
        Server::start_host_with(opts, droplets, &data, &args)
    };
    let host = start("data-spread", &[])?;
    warm_up(&host, spread)?;
    let connections = 16;
    let many = Load {
        spread,
        ..Load::get(host.url("/"), connections)
    };
    let one = Load {
        spread: 1,
        ..Load::get(host.url("/"), connections)
    };
    let mut row = Row::new(
        &format!("{spread} droplets receiving traffic at once vs one droplet"),
        &format!("round robin over {spread} droplets"),
        "one droplet",
        connections,
        "the same hello module, a distinct compiled copy each",
    );
    row.measure_pair(opts, (&host, &many), (&host, &one))?;
    report.push_clean(row);

    // The same spread with wasmtime's default of 100 warm slots, which the
    // host used to keep: most calls then remap a slot's memory image.
    let few_warm = start("data-spread-warm100", &["--warm-slots", "100"])?;
    warm_up(&few_warm, spread)?;
    let mut row = Row::new(
        &format!(
            "warm slots: {spread} droplets at once, --warm-slots 100 vs every slot (the default)"
        ),
        "--warm-slots 100",
        "every slot warm",
        connections,
        "slots taken from another droplet remap its memory image",
    );
    let few_warm_load = Load {
        spread,
        ..Load::get(few_warm.url("/"), connections)
    };
    row.measure_pair(opts, (&few_warm, &few_warm_load), (&host, &many))?;
    report.push_clean(row);
    Ok(())
}

/// Waits until an eagerly started host has compiled (or loaded from its
/// code cache) every droplet: `/health` no longer says `starting`.
fn wait_until_compiled(host: &Server) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while http_exchange(
        host.addr,
        "GET /health HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n",
    )?
    .contains("\"starting\"")
    {
        ensure!(
            Instant::now() < deadline,
            "many droplets never finished compiling"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Makes a spread row measure traffic, not start-up: the host has loaded
/// every droplet (its code-cache reads done, which would otherwise run
/// beside the first rounds and count in their CPU), and each of the
/// `spread` droplets has answered once.
fn warm_up(host: &Server, spread: u32) -> Result<()> {
    wait_until_compiled(host)?;
    for i in 0..spread {
        let status = http_get_status(host.addr, &format!("/d{i}/"))?;
        ensure!(status == 200, "/d{i}/ answered {status} while warming up");
    }
    Ok(())
}
