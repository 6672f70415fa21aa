//! `droplet-bench`: load scenarios against the real `droplet` binary, each
//! measured against a baseline in the same run.
//!
//! The machines are shared and noisy, so every figure is a ratio against a
//! baseline measured in the same run, in alternating A/B rounds; the median
//! is reported with the min–max. Beside req/s and latency we report the
//! server's CPU per request (utime+stime from `/proc/PID/stat` across the
//! run): the load generator shares the cores, so that is the stable figure.
//!
//! Run it with `cargo xtask bench` (full) or `cargo xtask bench --short`
//! (seconds; checks that every scenario runs and its numbers are sane, and
//! asserts nothing about speed).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use droplet_host::ops::child_env::isolate;
use serde::Serialize;
use serde_json::Value;

mod attacks;
mod fleet;
mod jobs;
mod many;
mod soak;
mod streaming;
mod targets;

fn main() -> Result<()> {
    let opts = Opts::parse()?;
    std::fs::create_dir_all(&opts.out)?;
    if let Some(minutes) = opts.soak_minutes {
        return soak::run(&opts, minutes);
    }
    if opts.attacks {
        return attacks::run(&opts);
    }
    let machine = Machine::read();
    if opts.jobs_only {
        let mut report = Report::new(machine, &opts);
        jobs::run(&opts, &mut report)?;
        let table = jobs::markdown(&report.jobs);
        return write_alone(&opts, &report, "Queue rows", "jobs.md", &table);
    }
    if opts.many_only {
        let mut report = Report::new(machine, &opts);
        many::run(&opts, &mut report)?;
        let tables = report.markdown();
        return write_alone(&opts, &report, "Many-droplets rows", "many.md", &tables);
    }
    eprintln!(
        "droplet-bench: {} mode, {} round(s) of {} s, {} cores ({})",
        if opts.short { "short" } else { "full" },
        opts.rounds,
        opts.duration.as_secs(),
        machine.nproc,
        machine.cpu
    );

    // Every run starts from scratch: no stored versions or data of an earlier one.
    for dir in [
        "droplets",
        "data",
        "data-traced",
        "data-wide",
        "data-log-off",
        "data-log-errors",
        "data-log-sampled",
        "many",
    ] {
        let _ = std::fs::remove_dir_all(opts.out.join(dir));
    }
    let droplets = opts.out.join("droplets");
    std::fs::create_dir_all(&droplets)?;
    std::fs::copy(
        opts.examples.join("hello.wasm"),
        droplets.join("swapme.wasm"),
    )?;
    for name in [
        "hello",
        "spin",
        "kvstore",
        "gateway",
        "proxy-hello",
        "dirty",
        "routes",
    ] {
        let from = opts.examples.join(format!("{name}.wasm"));
        std::fs::copy(&from, droplets.join(format!("{name}.wasm")))
            .with_context(|| format!("copy {} (build the examples first)", from.display()))?;
    }
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hello-sdk-first-edition.wasm"),
        droplets.join("hello-sdk1.wasm"),
    )?;
    std::fs::write(droplets.join("spin.toml"), "budget_ms = 50\n")?;
    std::fs::write(droplets.join("kvstore.toml"), "max_concurrency = 128\n")?;
    // The same droplets recorded otherwise than the host's default
    // (`errors`), for the recording rows.
    for (name, example) in [("hello", "hello"), ("kvstore", "kvstore")] {
        for mode in ["off", "all"] {
            std::fs::copy(
                opts.examples.join(format!("{example}.wasm")),
                droplets.join(format!("{name}-{mode}.wasm")),
            )?;
            std::fs::write(
                droplets.join(format!("{name}-{mode}.toml")),
                format!("max_concurrency = 128\nrecord = \"{mode}\"\n"),
            )?;
        }
    }

    let native = Server::start_native(&opts)?;
    std::fs::write(
        droplets.join("gateway.toml"),
        format!(
            "allowed_outbound_hosts = [\"http://{}\", \"http://*.droplet.internal\"]\nmax_concurrency = 128\n",
            native.addr
        ),
    )?;
    let host = Server::start_host(&opts, &droplets)?;
    let mut report = Report::new(machine, &opts);

    throughput(&opts, &host, &native, &mut report)?;
    targets::guard_fresh_instance_cost(&mut report);
    kv_calls(&opts, &host, &mut report)?;
    sdk_costs(&opts, &host, &mut report)?;
    rollout_split(&opts, &host, &mut report)?;
    recording_cost(&opts, &host, &mut report)?;
    noisy_neighbour(&opts, &host, &mut report)?;
    budget_precision(&opts, &host, &mut report)?;
    swap_under_load(&opts, &host, &mut report)?;
    contract_endpoints(&opts, &host, &mut report)?;
    outbound_calls(&opts, &host, &native, &mut report)?;
    report.streams = streaming::run(host.addr, opts.rounds)?;
    tracing_cost(&opts, &droplets, &host, &native, &mut report)?;
    scattered_pages(&opts, &droplets, &mut report)?;
    dirty_pages(&opts, &droplets, &host, &mut report)?;
    access_log_modes(&opts, &droplets, &host, &mut report)?;
    fleet::run(&opts, &host, &mut report)?;
    drop(host);
    drop(native);
    jobs::run(&opts, &mut report)?;
    many::run(&opts, &mut report)?;
    // The attack recipes have their own report (`attacks.md`); small in
    // short mode, so that CI runs them.
    attacks::run(&opts)?;

    report.write(&opts.out)?;
    println!("{}", report.markdown());
    // Only a full run with the default rounds speaks for the README.
    if !opts.short && opts.rounds == 3 && report.failures.is_empty() {
        targets::write_into_readme(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"),
            &report.markdown(),
        )?;
    }
    ensure!(
        report.failures.is_empty(),
        "sanity checks failed:\n{}",
        report.failures.join("\n")
    );
    Ok(())
}

/// Writes (and prints) the tables of a run of one section alone, headed
/// with the run: they never go into the README.
fn write_alone(opts: &Opts, report: &Report, what: &str, file: &str, tables: &str) -> Result<()> {
    let md = format!(
        "{what} only, {} ({} mode), commit `{}`, {} cores, {}.\n{tables}",
        report.machine.date,
        report.mode,
        report.machine.commit,
        report.machine.nproc,
        report.machine.cpu,
    );
    std::fs::write(opts.out.join(file), &md)?;
    println!("{md}");
    Ok(())
}

/// Load benchmarks of the droplet host against a native hyper baseline.
#[derive(clap::Parser)]
#[command(name = "droplet-bench")]
struct Args {
    /// Short mode (CI): one round of one second per scenario, 20 droplets
    /// instead of 1000; checks the harness runs, asserts no speed.
    #[arg(long)]
    short: bool,
    /// Rounds per scenario [default: 3, or 1 with --short].
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds per round [default: 5, or 1 with --short].
    #[arg(long)]
    duration: Option<u64>,
    /// Where the report and the scenarios' files go [default: target/release/../bench].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run only the soak scenario, for this many minutes (not part of CI).
    #[arg(long)]
    soak_minutes: Option<u64>,
    /// Run only the attack recipes, with the host's RSS bounds checked.
    #[arg(long)]
    attacks: bool,
    /// Run only the queue rows (their own table, `jobs.md`).
    #[arg(long)]
    jobs: bool,
    /// Run only the many-droplets rows (their own tables, `many.md`).
    #[arg(long)]
    many: bool,
}

/// What a run was asked to do, and where things are.
#[derive(Clone)]
struct Opts {
    short: bool,
    /// Minutes of the soak scenario, when that is what runs.
    soak_minutes: Option<u64>,
    /// Only the attack recipes.
    attacks: bool,
    /// Only the queue rows.
    jobs_only: bool,
    /// Only the many-droplets rows.
    many_only: bool,
    rounds: usize,
    duration: Duration,
    out: PathBuf,
    bin_dir: PathBuf,
    examples: PathBuf,
    wrk_script: PathBuf,
}

impl Opts {
    fn parse() -> Result<Self> {
        let args = <Args as clap::Parser>::parse();
        let short = args.short;
        let bin_dir = std::env::current_exe()?
            .parent()
            .context("the binary's directory")?
            .to_path_buf();
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let examples = std::env::var_os("DROPLET_EXAMPLES_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("../target/wasm32-wasip2/release"));
        Ok(Self {
            short,
            soak_minutes: args.soak_minutes,
            attacks: args.attacks,
            jobs_only: args.jobs,
            many_only: args.many,
            rounds: args.rounds.unwrap_or(if short { 1 } else { 3 }),
            duration: Duration::from_secs(args.duration.unwrap_or(if short { 1 } else { 5 })),
            out: args.out.unwrap_or_else(|| bin_dir.join("../bench")),
            bin_dir,
            examples,
            wrk_script: root.join("wrk/report.lua"),
        })
    }
}

/// A server under test, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start_host(opts: &Opts, droplets: &Path) -> Result<Self> {
        Self::start_host_with(opts, droplets, &opts.out.join("data"), &[])
    }

    /// Starts `droplet serve` with extra flags; the admin API is enabled with
    /// [`BENCH_SECRET`].
    fn start_host_with(opts: &Opts, droplets: &Path, data: &Path, args: &[&str]) -> Result<Self> {
        Self::start_host_env(opts, droplets, data, args, &[])
    }

    /// [`Server::start_host_with`] with extra environment variables; its log
    /// goes to `{data}.log`.
    fn start_host_env(
        opts: &Opts,
        droplets: &Path,
        data: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let addr = free_addr()?;
        let log_name = match data.file_name().and_then(|name| name.to_str()) {
            Some("data") | None => "host.log".to_string(),
            Some(name) => format!("{name}.log"),
        };
        let log = std::fs::File::create(opts.out.join(log_name))?;
        let mut command = Command::new(opts.bin_dir.join("droplet"));
        // The user's `.env` and `DROPLET_*` variables stay out of the run.
        let child = isolate(&mut command)
            .arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--droplets")
            .arg(droplets)
            .arg("--data")
            .arg(data)
            .args(args)
            .env("JWT_SECRET", BENCH_SECRET)
            .envs(env.iter().copied())
            .stdout(log)
            .stderr(Stdio::inherit())
            .spawn()
            .context("start target/release/droplet")?;
        Self::ready(child, addr, "/health")
    }

    fn start_native(opts: &Opts) -> Result<Self> {
        Self::start_native_with(opts, &[])
    }

    /// The native baseline with more arguments (a PostgreSQL URL).
    fn start_native_with(opts: &Opts, args: &[&str]) -> Result<Self> {
        let addr = free_addr()?;
        let child = Command::new(opts.bin_dir.join("native-hello"))
            .arg(addr.to_string())
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .context("start target/release/native-hello")?;
        Self::ready(child, addr, "/")
    }

    /// Waits until `path` answers 200.
    fn ready(child: Child, addr: SocketAddr, path: &str) -> Result<Self> {
        let server = Self { child, addr };
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if http_get_status(addr, path).is_ok_and(|status| status == 200) {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("server on {addr} did not become ready")
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Copies example `example` into `droplets` as droplet `name` with
/// `manifest`.
fn copy_example(
    opts: &Opts,
    droplets: &Path,
    example: &str,
    name: &str,
    manifest: &str,
) -> Result<()> {
    std::fs::copy(
        opts.examples.join(format!("{example}.wasm")),
        droplets.join(format!("{name}.wasm")),
    )
    .with_context(|| format!("copy {example}.wasm (build the examples first)"))?;
    std::fs::write(droplets.join(format!("{name}.toml")), manifest)?;
    Ok(())
}

/// A minimal GET for readiness checks.
fn http_get_status(addr: SocketAddr, path: &str) -> Result<u16> {
    http_status(
        addr,
        &format!("GET {path} HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n"),
    )
}

/// A minimal PUT, to seed data.
fn http_put_status(addr: SocketAddr, path: &str, body: &str) -> Result<u16> {
    let length = body.len();
    http_status(
        addr,
        &format!(
            "PUT {path} HTTP/1.1\r\nhost: bench\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n{body}"
        ),
    )
}

/// Sends one raw HTTP/1.1 request and returns the response's status.
fn http_status(addr: SocketAddr, request: &str) -> Result<u16> {
    let response = http_exchange(addr, request)?;
    let status = response.split_whitespace().nth(1).context("status line")?;
    Ok(status.parse()?)
}

/// `GET path` and the value of response header `name`, if any.
fn http_get_header(addr: SocketAddr, path: &str, name: &str) -> Result<Option<String>> {
    let response = http_exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n"),
    )?;
    let head = response.split("\r\n\r\n").next().unwrap_or_default();
    Ok(head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    }))
}

/// Sends one raw HTTP/1.1 request and returns the whole response.
fn http_exchange(addr: SocketAddr, request: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// What one wrk run reported.
#[derive(Debug, Clone, Serialize)]
struct WrkRun {
    requests: u64,
    duration_us: u64,
    non_2xx: u64,
    socket_errors: u64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
}

impl WrkRun {
    fn rps(&self) -> f64 {
        self.requests as f64 / (self.duration_us as f64 / 1e6)
    }
}

/// What one wrk process sends.
struct Load {
    url: String,
    connections: u32,
    method: &'static str,
    body: &'static str,
    /// An `Authorization` header value, if any.
    authorization: Option<String>,
    /// Spread requests round robin over droplets `d0` … `d{spread-1}`
    /// (`/d{i}/`) instead of `url`'s path; 0: no spread.
    spread: u32,
}

impl Load {
    fn get(url: String, connections: u32) -> Self {
        Self {
            url,
            connections,
            method: "GET",
            body: "",
            authorization: None,
            spread: 0,
        }
    }
}

/// A wrk process running against `url`.
fn spawn_wrk(opts: &Opts, load: &Load) -> Result<Child> {
    let threads = load.connections.clamp(1, 2);
    Command::new("wrk")
        .env("WRK_METHOD", load.method)
        .env("WRK_BODY", load.body)
        .env(
            "WRK_AUTHORIZATION",
            load.authorization.as_deref().unwrap_or_default(),
        )
        .env("WRK_SPREAD", load.spread.to_string())
        .arg(format!("-t{threads}"))
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{}s", opts.duration.as_secs()))
        .arg("--timeout")
        .arg("5s")
        .arg("-s")
        .arg(&opts.wrk_script)
        .arg(&load.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("run wrk (cargo xtask bench installs it)")
}

fn finish_wrk(child: Child) -> Result<WrkRun> {
    let output = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("WRK_JSON "))
        .with_context(|| {
            format!(
                "wrk printed no summary: {stdout} {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    let json: Value = serde_json::from_str(line)?;
    let num = |value: &Value| value.as_u64().unwrap_or(0);
    let errors = &json["errors"];
    Ok(WrkRun {
        requests: num(&json["requests"]),
        duration_us: num(&json["duration_us"]).max(1),
        non_2xx: num(&errors["status"]),
        socket_errors: num(&errors["connect"])
            + num(&errors["read"])
            + num(&errors["write"])
            + num(&errors["timeout"]),
        p50_us: num(&json["latency_us"]["p50"]),
        p99_us: num(&json["latency_us"]["p99"]),
        p999_us: num(&json["latency_us"]["p999"]),
    })
}

/// One measured run: wrk's figures plus the server's CPU and peak RSS.
#[derive(Debug, Clone, Serialize)]
struct Measurement {
    #[serde(flatten)]
    wrk: WrkRun,
    rps: f64,
    cpu_us_per_request: f64,
    peak_rss_mib: f64,
}

/// Runs wrk against `url` (plus any `background` load) and measures `server`.
fn measure(
    opts: &Opts,
    server: &Server,
    load: &Load,
    background: Option<&Load>,
) -> Result<Measurement> {
    let pid = server.pid();
    let peak_rss = Arc::new(AtomicU64::new(rss_kib(pid)));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = std::thread::spawn({
        let (peak_rss, stop) = (Arc::clone(&peak_rss), Arc::clone(&stop));
        move || {
            while !stop.load(Ordering::Relaxed) {
                peak_rss.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    let cpu_before = cpu_ticks(pid)?;
    let noise = background.map(|load| spawn_wrk(opts, load)).transpose()?;
    let run = finish_wrk(spawn_wrk(opts, load)?)?;
    let cpu_after = cpu_ticks(pid)?;
    if let Some(noise) = noise {
        finish_wrk(noise)?;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let cpu_us = (cpu_after - cpu_before) as f64 * 1e6 / clock_ticks_per_second() as f64;
    // With background load, CPU covers both loads: divide by all requests.
    let served = run.requests.max(1) as f64;
    Ok(Measurement {
        rps: run.rps(),
        cpu_us_per_request: cpu_us / served,
        peak_rss_mib: peak_rss.load(Ordering::Relaxed) as f64 / 1024.0,
        wrk: run,
    })
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_comm = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `after_comm` starts at field 3.
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| value.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: `sysconf` only reads a configuration value; it has no
    // preconditions and touches no memory of ours.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// The machine the figures come from.
#[derive(Debug, Clone, Serialize)]
struct Machine {
    nproc: usize,
    cpu: String,
    commit: String,
    date: String,
}

impl Machine {
    fn read() -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|line| line.strip_prefix("model name"))
                    .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let run = |program: &str, args: &[&str]| {
            Command::new(program)
                .args(args)
                .output()
                .ok()
                .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
                .unwrap_or_default()
        };
        Self {
            nproc: std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1),
            cpu,
            commit: run("git", &["rev-parse", "--short", "HEAD"]),
            date: run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        }
    }
}

/// One row of the results table: a subject against its baseline.
#[derive(Debug, Clone, Serialize)]
struct Row {
    scenario: String,
    subject: String,
    baseline: String,
    connections: u32,
    subject_runs: Vec<Measurement>,
    baseline_runs: Vec<Measurement>,
    /// subject / baseline req/s, one per round.
    ratios: Vec<f64>,
    note: String,
}

impl Row {
    fn new(scenario: &str, subject: &str, baseline: &str, connections: u32, note: &str) -> Self {
        Self {
            scenario: scenario.into(),
            subject: subject.into(),
            baseline: baseline.into(),
            connections,
            subject_runs: Vec::new(),
            baseline_runs: Vec::new(),
            ratios: Vec::new(),
            note: note.into(),
        }
    }

    /// Measures subject and baseline in alternating order, one pair per
    /// round (baseline first in even rounds), recording each round's ratio.
    fn measure_rounds(
        &mut self,
        opts: &Opts,
        mut subject: impl FnMut() -> Result<Measurement>,
        mut baseline: impl FnMut() -> Result<Measurement>,
    ) -> Result<()> {
        for round in 0..opts.rounds {
            let (s, b) = if round % 2 == 0 {
                let b = baseline()?;
                (subject()?, b)
            } else {
                let s = subject()?;
                (s, baseline()?)
            };
            self.ratios.push(s.rps / b.rps.max(1.0));
            self.subject_runs.push(s);
            self.baseline_runs.push(b);
        }
        Ok(())
    }

    /// [`Row::measure_rounds`] of one load on one server against another.
    fn measure_pair(
        &mut self,
        opts: &Opts,
        (subject, subject_load): (&Server, &Load),
        (baseline, baseline_load): (&Server, &Load),
    ) -> Result<()> {
        self.measure_rounds(
            opts,
            || measure(opts, subject, subject_load, None),
            || measure(opts, baseline, baseline_load, None),
        )
    }
}

#[derive(Serialize)]
struct Report {
    machine: Machine,
    mode: &'static str,
    rounds: usize,
    duration_s: u64,
    rows: Vec<Row>,
    startups: Vec<Startup>,
    /// Fleet: from a deploy through one host until all three serve it.
    fleet_deploys_ms: Vec<f64>,
    /// Time to first byte of streamed responses.
    streams: Vec<streaming::StreamRow>,
    /// Queues drained, and hello beside them.
    jobs: Vec<jobs::JobsRow>,
    failures: Vec<String>,
}

/// One start of a host with many droplets.
#[derive(Debug, Clone, Serialize)]
struct Startup {
    droplets: usize,
    cache: &'static str,
    loading: &'static str,
    /// From spawn until `/health` answers.
    startup_ms: f64,
    /// RSS once started, before any request.
    idle_rss_mib: f64,
    /// Latency of the first request to each of a sample of droplets never
    /// called before (up to 100, spread over the directory), in turn: its
    /// median and 99th percentile (nearest rank).
    first_request_p50_ms: f64,
    first_request_p99_ms: f64,
    /// The second request to the first of them.
    second_request_ms: f64,
    /// The dashboard's table (`GET /_admin/overview?points=60`, one page of
    /// 50 with sparklines, sorted by rate over every droplet): median of 5.
    overview_ms: f64,
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        })
}

impl Report {
    fn new(machine: Machine, opts: &Opts) -> Self {
        Self {
            machine,
            mode: if opts.short { "short" } else { "full" },
            rounds: opts.rounds,
            duration_s: opts.duration.as_secs(),
            rows: Vec::new(),
            startups: Vec::new(),
            fleet_deploys_ms: Vec::new(),
            streams: Vec::new(),
            jobs: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// Adds `row`, checking that every run served requests and none failed.
    fn push_clean(&mut self, row: Row) {
        for m in row.subject_runs.iter().chain(&row.baseline_runs) {
            self.check(
                m.wrk.requests > 0 && m.wrk.non_2xx == 0 && m.wrk.socket_errors == 0,
                format!(
                    "{} ({} conns): {} requests, {} non-2xx, {} socket errors",
                    row.scenario,
                    row.connections,
                    m.wrk.requests,
                    m.wrk.non_2xx,
                    m.wrk.socket_errors
                ),
            );
        }
        self.rows.push(row);
    }

    /// Records a sanity failure (no throughput, unexpected errors).
    fn check(&mut self, ok: bool, what: String) {
        if !ok {
            eprintln!("droplet-bench: FAILED {what}");
            self.failures.push(what);
        }
    }

    fn write(&self, out: &Path) -> Result<()> {
        std::fs::write(
            out.join("results.json"),
            serde_json::to_string_pretty(self)?,
        )?;
        std::fs::write(out.join("results.md"), self.markdown())?;
        eprintln!("droplet-bench: wrote {}/results.{{md,json}}", out.display());
        Ok(())
    }

    fn markdown(&self) -> String {
        let mut md = targets::markdown(self);
        md.push_str(&format!(
            "\nEvery row, same run {} ({} mode, {} round(s) × {} s, alternating A/B), commit `{}`, {} cores, {}.\n\n\
             | scenario | conns | subject vs baseline | req/s ratio: median (min–max) | subject req/s | baseline req/s | subject p50 / p99 / p99.9 (ms) | baseline p50 / p99 / p99.9 (ms) | subject CPU µs/req | baseline CPU µs/req | subject peak RSS MiB | note |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
            self.machine.date,
            self.mode,
            self.rounds,
            self.duration_s,
            self.machine.commit,
            self.machine.nproc,
            self.machine.cpu
        ));
        for row in &self.rows {
            let (lo, hi) = min_max(&row.ratios);
            let med = |runs: &[Measurement], f: fn(&Measurement) -> f64| {
                median(&runs.iter().map(f).collect::<Vec<_>>())
            };
            let lat = |runs: &[Measurement]| {
                format!(
                    "{:.2} / {:.2} / {:.2}",
                    med(runs, |m| m.wrk.p50_us as f64) / 1e3,
                    med(runs, |m| m.wrk.p99_us as f64) / 1e3,
                    med(runs, |m| m.wrk.p999_us as f64) / 1e3
                )
            };
            md.push_str(&format!(
                "| {} | {} | {} vs {} | {:.2} ({:.2}–{:.2}) | {:.0} | {:.0} | {} | {} | {:.1} | {:.1} | {:.1} | {} |\n",
                row.scenario,
                row.connections,
                row.subject,
                row.baseline,
                median(&row.ratios),
                lo,
                hi,
                med(&row.subject_runs, |m| m.rps),
                med(&row.baseline_runs, |m| m.rps),
                lat(&row.subject_runs),
                lat(&row.baseline_runs),
                med(&row.subject_runs, |m| m.cpu_us_per_request),
                med(&row.baseline_runs, |m| m.cpu_us_per_request),
                med(&row.subject_runs, |m| m.peak_rss_mib),
                row.note,
            ));
        }
        if !self.fleet_deploys_ms.is_empty() {
            let (lo, hi) = min_max(&self.fleet_deploys_ms);
            md.push_str(&format!(
                "\nfleet: deploy through host 1 until hosts 2 and 3 serve it: median {:.0} ms ({lo:.0}–{hi:.0}) over {} deploys\n",
                median(&self.fleet_deploys_ms),
                self.fleet_deploys_ms.len()
            ));
        }
        if !self.jobs.is_empty() {
            md.push_str(&jobs::markdown(&self.jobs));
        }
        if !self.streams.is_empty() {
            md.push_str(
                "\n| streamed through the wasi:http door | first byte (ms): median (min–max) | whole exchange (ms): median | first byte / whole | target: first byte ≤ ½ of the whole |\n\
                 | --- | --- | --- | --- | --- |\n",
            );
            for stream in &self.streams {
                let first: Vec<f64> = stream.timings.iter().map(|t| t.first_byte_ms).collect();
                let total: Vec<f64> = stream.timings.iter().map(|t| t.total_ms).collect();
                let (lo, hi) = min_max(&first);
                let ratio = median(&first) / median(&total).max(f64::MIN_POSITIVE);
                md.push_str(&format!(
                    "| {} | {:.2} ({lo:.2}–{hi:.2}) | {:.2} | {ratio:.3} | {} |\n",
                    stream.scenario,
                    median(&first),
                    median(&total),
                    if ratio <= 0.5 { "met" } else { "missed" }
                ));
            }
        }
        if !self.startups.is_empty() {
            md.push_str(
                "\n| droplets | cache | loading | start-up (ms) | idle RSS (MiB) | first request to a droplet, p50 / p99 (ms) | second request (ms) | dashboard overview (ms) |\n\
                 | --- | --- | --- | --- | --- | --- | --- | --- |\n",
            );
            for start in &self.startups {
                md.push_str(&format!(
                    "| {} | {} | {} | {:.0} | {:.1} | {:.2} / {:.2} | {:.2} | {:.2} |\n",
                    start.droplets,
                    start.cache,
                    start.loading,
                    start.startup_ms,
                    start.idle_rss_mib,
                    start.first_request_p50_ms,
                    start.first_request_p99_ms,
                    start.second_request_ms,
                    start.overview_ms
                ));
            }
        }
        md
    }
}

/// hello droplet (fresh instance per request) vs native hyper.
fn throughput(opts: &Opts, host: &Server, native: &Server, report: &mut Report) -> Result<()> {
    for connections in [1, 16, 64] {
        let mut row = Row::new(
            "hello, fresh instance per request",
            "droplet hello",
            "native hyper",
            connections,
            "",
        );
        let (droplet, baseline) = (
            Load::get(host.url("/hello/"), connections),
            Load::get(native.url("/hello/"), connections),
        );
        row.measure_pair(opts, (host, &droplet), (native, &baseline))?;
        report.push_clean(row);
    }
    Ok(())
}

/// A droplet making one kv call per request vs hello, at 16 connections:
/// one `get` of an existing key, and one durable `set` (group commit).
fn kv_calls(opts: &Opts, host: &Server, report: &mut Report) -> Result<()> {
    let connections = 16;
    let setup = Load {
        url: host.url("/kvstore/k/bench"),
        connections: 1,
        method: "PUT",
        body: "a value of moderate size for the benchmark",
        authorization: None,
        spread: 0,
    };
    let status = http_put_status(host.addr, "/kvstore/k/bench", setup.body)?;
    ensure!(
        status == 200,
        "seeding the kv benchmark key answered {status}"
    );
    let cases = [
        (
            "hello + one kv get",
            Load::get(host.url("/kvstore/k/bench"), connections),
        ),
        (
            "hello + one durable kv set",
            Load {
                connections,
                ..setup
            },
        ),
    ];
    for (scenario, load) in cases {
        let hello = Load::get(host.url("/hello/"), connections);
        let mut row = Row::new(scenario, "kvstore", "hello", connections, "");
        row.measure_pair(opts, (host, &load), (host, &hello))?;
        report.push_clean(row);
    }
    Ok(())
}

/// What the author's SDK costs a droplet, at 16 connections: hello built
/// with this SDK vs the same source built with the SDK's first edition
/// (`bench/fixtures/hello-sdk-first-edition.wasm`, built from `09c1fc7`),
/// and hello behind a 20-route `Router` (the `routes` example, its last
/// route) vs hello.
fn sdk_costs(opts: &Opts, host: &Server, report: &mut Report) -> Result<()> {
    let connections = 16;
    let cases = [
        (
            "SDK: hello, this SDK vs its first edition",
            "hello",
            "/hello/",
            "hello (first edition)",
            "/hello-sdk1/",
        ),
        (
            "SDK: the last of 20 routes vs hello",
            "routes",
            "/routes/hello/bench",
            "hello",
            "/hello/",
        ),
    ];
    cpu_pairs(opts, host, report, connections, &cases)
}

/// One row per case, `(scenario, subject, subject path, baseline, baseline
/// path)`: the subject's CPU/req against the baseline's, same host.
fn cpu_pairs(
    opts: &Opts,
    host: &Server,
    report: &mut Report,
    connections: u32,
    cases: &[(&str, &str, &str, &str, &str)],
) -> Result<()> {
    for &(scenario, subject, subject_path, baseline, baseline_path) in cases {
        let mut row = Row::new(scenario, subject, baseline, connections, "CPU µs/req");
        let (subject_load, baseline_load) = (
            Load::get(host.url(subject_path), connections),
            Load::get(host.url(baseline_path), connections),
        );
        row.measure_pair(opts, (host, &subject_load), (host, &baseline_load))?;
        report.push_clean(row);
    }
    Ok(())
}

/// What a rollout's split costs a request: `split`, a hello whose canary
/// (a second build: another greeting) takes 50 % of requests, vs hello
/// alone, CPU/req. The rollout never ends during the run (its
/// `min_requests` is out of reach).
fn rollout_split(opts: &Opts, host: &Server, report: &mut Report) -> Result<()> {
    use base64::Engine;
    let token = admin_token(opts)?;
    let module = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(opts.examples.join("hello.wasm"))?);
    let status = deploy(host.addr, &token, "split", &module, "")?;
    ensure!(status == 201, "deploying split answered {status}");
    let body = serde_json::json!({
        "module": module,
        "manifest": "[config]\ngreeting = \"Hi\"\n",
        "canary": {"steps": [50], "min_requests": 10_000_000},
    })
    .to_string();
    let status = http_status(
        host.addr,
        &format!(
            "PUT /_admin/droplets/split HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {token}\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ),
    )?;
    ensure!(
        status == 202,
        "the canary deploy of split answered {status}"
    );
    let connections = 16;
    let mut row = Row::new(
        "rollout: hello split 50/50 between two builds vs hello alone",
        "split hello",
        "hello",
        connections,
        "CPU µs/req; requests without a key, split at random",
    );
    let (subject, baseline) = (
        Load::get(host.url("/split/"), connections),
        Load::get(host.url("/hello/"), connections),
    );
    row.measure_pair(opts, (host, &subject), (host, &baseline))?;
    report.push_clean(row);
    Ok(())
}

/// What recording costs a call, CPU/req: the host's default mode
/// (`errors`: every call taped, only failures kept — none here) and `all`
/// (every call kept, written off the request path), each against the same
/// droplet with recording off; for hello and for a kv get.
fn recording_cost(opts: &Opts, host: &Server, report: &mut Report) -> Result<()> {
    for droplet in ["kvstore", "kvstore-off", "kvstore-all"] {
        let path = format!("/{droplet}/k/bench");
        let status = http_put_status(
            host.addr,
            &path,
            "a value of moderate size for the benchmark",
        )?;
        ensure!(status == 200, "seeding {path} answered {status}");
    }
    let cases = [
        (
            "recording: hello, errors mode vs off",
            "hello (errors)",
            "/hello/",
            "hello (off)",
            "/hello-off/",
        ),
        (
            "recording: hello, all vs off",
            "hello (all)",
            "/hello-all/",
            "hello (off)",
            "/hello-off/",
        ),
        (
            "recording: kv get, errors mode vs off",
            "kvstore GET (errors)",
            "/kvstore/k/bench",
            "kvstore GET (off)",
            "/kvstore-off/k/bench",
        ),
        (
            "recording: kv get, all vs off",
            "kvstore GET (all)",
            "/kvstore-all/k/bench",
            "kvstore GET (off)",
            "/kvstore-off/k/bench",
        ),
    ];
    cpu_pairs(opts, host, report, 16, &cases)
}

/// hello's throughput alone vs while `spin` (budget 50 ms) is hammered,
/// and the same for durable kv sets.
fn noisy_neighbour(opts: &Opts, host: &Server, report: &mut Report) -> Result<()> {
    let connections = 16;
    let mut row = Row::new(
        "noisy neighbour: hello while spin (budget 50 ms) is hammered at 16 conns",
        "hello with spin load",
        "hello alone",
        connections,
        "CPU µs/req counts both loads' CPU over hello's requests",
    );
    let hello = Load::get(host.url("/hello/"), connections);
    let spin = Load::get(host.url("/spin/"), 16);
    row.measure_rounds(
        opts,
        || measure(opts, host, &hello, Some(&spin)),
        || measure(opts, host, &hello, None),
    )?;
    report.push_clean(row);
    // The same for durable writes, which wait on the host (a flush) in the
    // middle of their call.
    let mut row = Row::new(
        "noisy neighbour (kv writes): durable kv sets while spin is hammered at 16 conns",
        "kv set with spin load",
        "kv set alone",
        8,
        "CPU µs/req counts both loads' CPU over the sets' requests",
    );
    let sets = Load {
        url: host.url("/kvstore/k/neighbour"),
        connections: 8,
        method: "PUT",
        body: "a value written beside a runaway droplet",
        authorization: None,
        spread: 0,
    };
    row.measure_rounds(
        opts,
        || measure(opts, host, &sets, Some(&spin)),
        || measure(opts, host, &sets, None),
    )?;
    report.push_clean(row);
    Ok(())
}

/// Time to the 504 for `spin` with a 50 ms budget; the baseline is the budget.
fn budget_precision(opts: &Opts, host: &Server, report: &mut Report) -> Result<()> {
    let connections = 4;
    let mut runs = Vec::new();
    for _ in 0..opts.rounds {
        let m = measure(
            opts,
            host,
            &Load::get(host.url("/spin/"), connections),
            None,
        )?;
        report.check(
            m.wrk.requests > 0 && m.wrk.non_2xx == m.wrk.requests && m.wrk.socket_errors == 0,
            format!(
                "budget: {} requests, {} were 504s, {} socket errors",
                m.wrk.requests, m.wrk.non_2xx, m.wrk.socket_errors
            ),
        );
        runs.push(m);
    }
    let ratios = runs
        .iter()
        .map(|m| m.wrk.p99_us as f64 / 50_000.0)
        .collect();
    report.rows.push(Row {
        scenario: "budget precision: spin, budget_ms = 50, every answer a 504".into(),
        subject: "time to 504".into(),
        baseline: "the 50 ms budget".into(),
        connections,
        subject_runs: runs,
        baseline_runs: Vec::new(),
        ratios,
        note: "ratio = p99 time to 504 / 50 ms".into(),
    });
    Ok(())
}

/// The HS256 secret the benchmark host uses for its admin API.
const BENCH_SECRET: &str = "droplet-bench-secret-for-the-admin-api";

/// An admin token, minted by the `droplet` CLI itself.
fn admin_token(opts: &Opts) -> Result<String> {
    let mut command = Command::new(opts.bin_dir.join("droplet"));
    let output = isolate(&mut command)
        .args(["token", "--scope", "droplets:admin", "--ttl", "1h"])
        .env("JWT_SECRET", BENCH_SECRET)
        .output()?;
    ensure!(
        output.status.success(),
        "droplet token failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// `PUT /_admin/droplets/{name}` with a module and manifest; the status.
fn deploy(
    addr: SocketAddr,
    token: &str,
    name: &str,
    module_base64: &str,
    manifest: &str,
) -> Result<u16> {
    let body = serde_json::json!({ "module": module_base64, "manifest": manifest }).to_string();
    http_status(
        addr,
        &format!(
            "PUT /_admin/droplets/{name} HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {token}\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// Calling out, at 16 connections: `gateway` fetching the native server's
/// hello once per request vs `gateway` answering alone; and `gateway`
/// calling `hello` in process vs `hello` called directly.
fn outbound_calls(opts: &Opts, host: &Server, native: &Server, report: &mut Report) -> Result<()> {
    let connections = 16;
    let encode = |url: &str| url.replace(':', "%3A").replace('/', "%2F");
    let cases = [
        (
            "gateway + one outbound request to a native server",
            "gateway fetching",
            format!("/gateway/fetch?url={}", encode(&native.url("/hello/"))),
            "gateway alone",
            "/gateway/ping".to_string(),
            "",
        ),
        (
            "droplet-to-droplet: gateway calling hello in process vs hello direct",
            "gateway → hello",
            format!(
                "/gateway/relay?url={}",
                encode("http://hello.droplet.internal/")
            ),
            "hello direct",
            "/hello/".to_string(),
            "target: the in-process call adds ≤ 1.3× hello's CPU/req",
        ),
        (
            "wasi:http component (wstd) hello vs our hello",
            "proxy-hello",
            "/proxy-hello/".to_string(),
            "hello",
            "/hello/".to_string(),
            "target: within 20 % of hello's CPU/req",
        ),
    ];
    for (scenario, subject, subject_path, baseline, baseline_path, note) in cases {
        let mut row = Row::new(scenario, subject, baseline, connections, note);
        let (with, without) = (
            Load::get(host.url(&subject_path), connections),
            Load::get(host.url(&baseline_path), connections),
        );
        row.measure_pair(opts, (host, &with), (host, &without))?;
        report.push_clean(row);
    }
    Ok(())
}

/// hello on a host exporting OpenTelemetry traces (OTLP/HTTP protobuf, to
/// the native server, which answers every export 200) vs hello on the host
/// with traces off (the default), at 16 connections.
fn tracing_cost(
    opts: &Opts,
    droplets: &Path,
    host: &Server,
    native: &Server,
    report: &mut Report,
) -> Result<()> {
    let connections = 16;
    let sink = native.url("");
    let traced = Server::start_host_env(
        opts,
        droplets,
        &opts.out.join("data-traced"),
        &[],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", sink.as_str())],
    )?;
    let mut row = Row::new(
        "OpenTelemetry traces: hello with OTLP export on vs off",
        "hello, traces on",
        "hello, traces off",
        connections,
        "a span per request + queue, instantiate, guest; off is the default",
    );
    let (on, off) = (
        Load::get(traced.url("/hello/"), connections),
        Load::get(host.url("/hello/"), connections),
    );
    row.measure_pair(opts, (&traced, &on), (host, &off))?;
    report.push_clean(row);
    Ok(())
}

/// hello at 16 connections on hosts started with `--access-log off`,
/// `errors` and `sampled` (1 in 100), each vs the default `all`.
fn access_log_modes(
    opts: &Opts,
    droplets: &Path,
    host: &Server,
    report: &mut Report,
) -> Result<()> {
    let connections = 16;
    let all = Load::get(host.url("/hello/"), connections);
    for mode in ["off", "errors", "sampled"] {
        let other = Server::start_host_with(
            opts,
            droplets,
            &opts.out.join(format!("data-log-{mode}")),
            &["--access-log", mode, "--no-watch"],
        )?;
        let mut row = Row::new(
            &format!("access log: --access-log {mode} vs all"),
            &format!("hello, access log {mode}"),
            "hello, access log all",
            connections,
            "CPU µs/req: the access line's share of hello's cost",
        );
        let load = Load::get(other.url("/hello/"), connections);
        row.measure_pair(opts, (&other, &load), (host, &all))?;
        report.push_clean(row);
    }
    Ok(())
}

/// Cost as the work grows: `dirty` writing one byte in every 4 KiB page of
/// 1, 4 and 16 MiB vs 64 KiB, at 16 connections. The host wipes every dirty
/// page before the slot is reused (in place within the 8 MiB keep-resident
/// window, found with PAGEMAP_SCAN; with madvise beyond it), so CPU per
/// request should grow at most in proportion to the pages dirtied.
fn dirty_pages(opts: &Opts, droplets: &Path, host: &Server, report: &mut Report) -> Result<()> {
    let connections = 16;
    let baseline = Load::get(host.url("/dirty/?kib=64"), connections);
    for (kib, label) in [(1024, "1 MiB"), (4096, "4 MiB"), (16384, "16 MiB")] {
        let pages = kib / 4;
        let mut row = Row::new(
            &format!("cost as work grows: dirty {label} ({pages} pages) vs 64 KiB (16 pages)"),
            &format!("dirty {label}"),
            "dirty 64 KiB",
            connections,
            &format!(
                "{}× the pages: CPU/req should grow less than that",
                pages / 16
            ),
        );
        let load = Load::get(host.url(&format!("/dirty/?kib={kib}")), connections);
        row.measure_pair(opts, (host, &load), (host, &baseline))?;
        report.push_clean(row);
    }
    // Past the keep-resident window (8 MiB) the dirty pages are returned with
    // madvise and faulted in again: the same 16 MiB with a 32 MiB window.
    let wide = Server::start_host_with(
        opts,
        droplets,
        &opts.out.join("data-wide"),
        &["--keep-resident-mb", "32", "--no-watch"],
    )?;
    let mut row = Row::new(
        "dirty 16 MiB: --keep-resident-mb 32 vs the default 8",
        "keep-resident 32 MiB",
        "keep-resident 8 MiB",
        connections,
        "the madvise + page-fault share of the 16 MiB cost",
    );
    let (wide_load, default_load) = (
        Load::get(wide.url("/dirty/?kib=16384"), connections),
        Load::get(host.url("/dirty/?kib=16384"), connections),
    );
    row.measure_pair(opts, (&wide, &wide_load), (host, &default_load))?;
    report.push_clean(row);
    Ok(())
}

/// PAGEMAP_SCAN reports dirty pages as runs, at most 32 runs per scan in
/// wasmtime 48; past them the rest of the memory is decommitted and its dirty
/// pages are faulted in again by the next call. The same pages as one run
/// and as separate runs (a clean page between each two), under the limit (24
/// runs, plus the stack's and data's) and over it (64), at 16 connections.
///
/// On a host of its own: slots that earlier calls grew to megabytes keep
/// their mappings and page tables, which makes faulting pages back in
/// cheaper and would flatter the many-runs side.
fn scattered_pages(opts: &Opts, droplets: &Path, report: &mut Report) -> Result<()> {
    let connections = 16;
    let host = Server::start_host_with(
        opts,
        droplets,
        &opts.out.join("data-scattered"),
        &["--no-watch"],
    )?;
    for pages in [24, 64] {
        let mut row = Row::new(
            &format!("scattered pages: {pages} dirty pages as {pages} runs vs as one run"),
            &format!("{pages} runs"),
            "one run",
            connections,
            "PAGEMAP_SCAN reports at most 32 runs per scan",
        );
        let runs = Load::get(
            host.url(&format!("/dirty/?pages={pages}&stride=2")),
            connections,
        );
        let one = Load::get(
            host.url(&format!("/dirty/?pages={pages}&stride=1")),
            connections,
        );
        row.measure_pair(opts, (&host, &runs), (&host, &one))?;
        report.push_clean(row);
    }
    Ok(())
}

/// hello at 16 connections while it is swapped 20 times through the admin
/// API, vs the same load without swaps.
fn swap_under_load(opts: &Opts, host: &Server, report: &mut Report) -> Result<()> {
    use base64::Engine;
    let connections = 16;
    let token = admin_token(opts)?;
    let module = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(opts.examples.join("hello.wasm"))?);
    let load = Load::get(host.url("/swapme/"), connections);
    let mut row = Row::new(
        "swap under load: 20 swaps during the run",
        "hello with swaps",
        "hello without swaps",
        connections,
        "failed requests must be 0",
    );
    let generation = std::cell::Cell::new(0);
    let swapped = || -> Result<Measurement> {
        let interval = opts.duration / 21;
        let addr = host.addr;
        let (token, module) = (token.clone(), module.clone());
        let start = generation.replace(generation.get() + 20);
        let swapper = std::thread::spawn(move || -> Result<()> {
            for i in 0..20 {
                std::thread::sleep(interval);
                let manifest = format!("[config]\ngreeting = \"v{}\"\n", start + i);
                let status = deploy(addr, &token, "swapme", &module, &manifest)?;
                ensure!(status == 200, "a swap answered {status}");
            }
            Ok(())
        });
        let measured = measure(opts, host, &load, None)?;
        swapper
            .join()
            .map_err(|_| anyhow::anyhow!("swapper panicked"))??;
        Ok(measured)
    };
    row.measure_rounds(opts, swapped, || measure(opts, host, &load, None))?;
    report.push_clean(row);
    Ok(())
}

/// The hello example with a custom section appended: a distinct module (and
/// cache entry) per `variant`.
fn hello_variant(hello: &[u8], variant: u32) -> Vec<u8> {
    use wasm_encoder::{ComponentSection, CustomSection, Encode};
    let section = CustomSection {
        name: "bench-variant".into(),
        data: variant.to_le_bytes().to_vec().into(),
    };
    let mut bytes = hello.to_vec();
    bytes.push(section.id());
    section.encode(&mut bytes);
    bytes
}

/// The droplet contract's endpoints (answered by the host) under load, vs a
/// request to the droplet itself, at 16 connections.
fn contract_endpoints(opts: &Opts, host: &Server, report: &mut Report) -> Result<()> {
    let connections = 16;
    let droplet = Load::get(host.url("/hello/"), connections);
    for endpoint in ["health", "capabilities", "state"] {
        let contract = Load::get(host.url(&format!("/hello/{endpoint}")), connections);
        let mut row = Row::new(
            &format!("contract: GET /hello/{endpoint}"),
            endpoint,
            "hello droplet request",
            connections,
            "compare the p99 columns",
        );
        row.measure_pair(opts, (host, &contract), (host, &droplet))?;
        report.push_clean(row);
    }
    Ok(())
}
