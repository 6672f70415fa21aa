//! Fleet scenarios, on the machine's PostgreSQL (skipped with the reason
//! when there is none): kv through a droplet on PostgreSQL vs on sled,
//! three hosts behind one load generator vs one host, and the time from a
//! deploy to every host serving it.
//!
//! The database is `DROPLET_BENCH_DATABASE_URL`, else
//! `postgres://postgres@127.0.0.1:5432/test`; each run works in a schema of
//! its own, dropped at the end.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::{
    Load, Measurement, Opts, Report, Row, Server, admin_token, deploy, finish_wrk, hello_variant,
    http_put_status, measure, spawn_wrk,
};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A schema of the run's own, dropped when this is.
pub struct Schema {
    base: String,
    name: String,
}

impl Schema {
    pub fn create() -> Result<Self> {
        let base = std::env::var("DROPLET_BENCH_DATABASE_URL").unwrap_or(DEFAULT_URL.into());
        let name = format!("bench_{}", std::process::id());
        sql(
            &base,
            &format!("DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"),
        )?;
        Ok(Self { base, name })
    }

    pub fn url(&self) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-c%20search_path%3D{}",
            self.base, self.name
        )
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = sql(
            &self.base,
            &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
        );
    }
}

/// Runs `statements` on the database at `url`.
fn sql(url: &str, statements: &str) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut config: tokio_postgres::Config = url.parse()?;
        config.connect_timeout(Duration::from_secs(3));
        let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client.batch_execute(statements).await?;
        anyhow::Ok(())
    })
}

/// Every fleet scenario; `sled_host` is the run's main host (sled).
pub fn run(opts: &Opts, sled_host: &Server, report: &mut Report) -> Result<()> {
    let schema = match Schema::create() {
        Ok(schema) => schema,
        Err(err) => {
            eprintln!("fleet scenarios skipped: no PostgreSQL to use ({err:#})");
            return Ok(());
        }
    };
    let url = schema.url();
    let droplets = opts.out.join("fleet-droplets");
    let empty = opts.out.join("fleet-empty");
    for dir in [&droplets, &empty] {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
    }
    for name in ["hello", "kvstore"] {
        std::fs::copy(
            opts.examples.join(format!("{name}.wasm")),
            droplets.join(format!("{name}.wasm")),
        )?;
    }
    std::fs::write(droplets.join("kvstore.toml"), "max_concurrency = 128\n")?;
    let start = |dir: &Path, i: u32| -> Result<Server> {
        let data = opts.out.join(format!("fleet-data-{i}"));
        let _ = std::fs::remove_dir_all(&data);
        Server::start_host_with(
            opts,
            dir,
            &data,
            &[
                "--database-url",
                &url,
                "--host-id",
                &format!("bench-{i}"),
                "--no-watch",
            ],
        )
    };
    let one = start(&droplets, 1)?;
    kv_on_postgres(opts, &one, sled_host, report)?;
    kv_get_vs_round_trip(opts, &one, &url, report)?;
    let two = start(&empty, 2)?;
    let three = start(&empty, 3)?;
    let hosts = [&one, &two, &three];
    three_hosts(opts, &hosts, report)?;
    deploy_to_all(opts, &hosts, report)?;
    Ok(())
}

/// kv get and durable set through the kvstore droplet: PostgreSQL vs sled.
fn kv_on_postgres(opts: &Opts, pg: &Server, sled: &Server, report: &mut Report) -> Result<()> {
    let connections = 16;
    let body = "a value of moderate size for the benchmark";
    for host in [pg, sled] {
        let status = http_put_status(host.addr, "/kvstore/k/bench", body)?;
        ensure!(
            status == 200,
            "seeding the kv benchmark key answered {status}"
        );
    }
    let put = |host: &Server| Load {
        url: host.url("/kvstore/k/bench"),
        connections,
        method: "PUT",
        body,
        authorization: None,
        spread: 0,
    };
    let cases = [
        (
            "kv get through a droplet: PostgreSQL vs sled",
            Load::get(pg.url("/kvstore/k/bench"), connections),
            Load::get(sled.url("/kvstore/k/bench"), connections),
        ),
        (
            "durable kv set through a droplet: PostgreSQL vs sled",
            put(pg),
            put(sled),
        ),
    ];
    for (scenario, on_pg, on_sled) in cases {
        let mut row = Row::new(
            scenario,
            "kvstore on PostgreSQL",
            "kvstore on sled",
            connections,
            "",
        );
        row.measure_pair(opts, (pg, &on_pg), (sled, &on_sled))?;
        report.push_clean(row);
    }
    Ok(())
}

/// kv get through the kvstore droplet on PostgreSQL vs native hyper running
/// the host's get query once per request (the same key, 16 connections to
/// the database like the host's default pool): what the get costs beyond
/// its round trip. `kv_on_postgres` seeded the key.
fn kv_get_vs_round_trip(opts: &Opts, pg: &Server, url: &str, report: &mut Report) -> Result<()> {
    let connections = 16;
    let native = Server::start_native_with(opts, &[url])?;
    let status = crate::http_get_status(native.addr, "/pg")?;
    ensure!(
        status == 200,
        "native hyper's PostgreSQL round trip answered {status}"
    );
    let mut row = Row::new(
        "kv get on PostgreSQL: droplet vs native round trip",
        "kvstore GET on PostgreSQL",
        "native hyper, the same query",
        connections,
        "target: within 10 % of hello's cost plus the round trip's",
    );
    let (droplet, round_trip) = (
        Load::get(pg.url("/kvstore/k/bench"), connections),
        Load::get(native.url("/pg"), connections),
    );
    row.measure_pair(opts, (pg, &droplet), (&native, &round_trip))?;
    report.push_clean(row);
    Ok(())
}

/// hello at 48 connections: spread over three hosts (16 each, one load
/// generator per host, run together) vs all on one host.
fn three_hosts(opts: &Opts, hosts: &[&Server; 3], report: &mut Report) -> Result<()> {
    let mut row = Row::new(
        "three hosts on one database vs one host (hello, 48 conns)",
        "3 hosts",
        "1 host",
        48,
        "3 hosts: summed req/s, slowest host's latency, summed CPU; all on the same 2 cores",
    );
    row.measure_rounds(
        opts,
        || measure_spread(opts, hosts),
        || {
            measure(
                opts,
                hosts[0],
                &Load::get(hosts[0].url("/hello/"), 48),
                None,
            )
        },
    )?;
    report.push_clean(row);
    Ok(())
}

/// wrk against each host at once, 16 connections each.
fn measure_spread(opts: &Opts, hosts: &[&Server; 3]) -> Result<Measurement> {
    let cpu_before: u64 = hosts
        .iter()
        .map(|h| crate::cpu_ticks(h.pid()).unwrap_or(0))
        .sum();
    let runs = hosts
        .iter()
        .map(|host| spawn_wrk(opts, &Load::get(host.url("/hello/"), 16)))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .map(finish_wrk)
        .collect::<Result<Vec<_>>>()?;
    let cpu_after: u64 = hosts
        .iter()
        .map(|h| crate::cpu_ticks(h.pid()).unwrap_or(0))
        .sum();
    let rps: f64 = runs.iter().map(|run| run.rps()).sum();
    let requests: u64 = runs.iter().map(|run| run.requests).sum();
    let slowest = runs
        .into_iter()
        .max_by_key(|run| run.p99_us)
        .context("three runs")?;
    let cpu_us =
        cpu_after.saturating_sub(cpu_before) as f64 * 1e6 / crate::clock_ticks_per_second() as f64;
    Ok(Measurement {
        rps,
        cpu_us_per_request: cpu_us / requests.max(1) as f64,
        peak_rss_mib: hosts.iter().map(|h| crate::rss_kib(h.pid())).sum::<u64>() as f64 / 1024.0,
        wrk: crate::WrkRun {
            requests,
            ..slowest
        },
    })
}

/// Deploys through host one and times until every host serves the new
/// version (`x-droplet-version`).
fn deploy_to_all(opts: &Opts, hosts: &[&Server; 3], report: &mut Report) -> Result<()> {
    use base64::Engine;
    let token = admin_token(opts)?;
    let hello = std::fs::read(opts.examples.join("hello.wasm"))?;
    let rounds = if opts.short { 2 } else { 10 };
    let mut times_ms = Vec::new();
    for round in 0..rounds {
        let module =
            base64::engine::general_purpose::STANDARD.encode(hello_variant(&hello, 1000 + round));
        let started = Instant::now();
        let status = deploy(hosts[0].addr, &token, "hello", &module, "")?;
        ensure!(status == 200, "a fleet deploy answered {status}");
        let wanted = crate::http_get_header(hosts[0].addr, "/hello/", "x-droplet-version")?
            .context("host one names no version")?;
        let deadline = started + Duration::from_secs(30);
        for host in &hosts[1..] {
            while crate::http_get_header(host.addr, "/hello/", "x-droplet-version")?.as_deref()
                != Some(wanted.as_str())
            {
                ensure!(
                    Instant::now() < deadline,
                    "a deploy did not reach every host in 30 s"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        times_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    report.fleet_deploys_ms = times_ms;
    Ok(())
}
