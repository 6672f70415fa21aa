//! The targets the host is held to, judged from one run's rows: every row
//! of the targets table comes from the same `results.json`, with that run's
//! date and commit, and says met or missed (or that the run did not measure
//! it). A full run also writes the table, and the run's full results, into
//! `bench/README.md` between its `results` markers: the README's figures are
//! always one run's.

use std::path::Path;

use anyhow::{Context, Result};

use crate::{Measurement, Report, Row, median};

/// One target and what the run measured.
pub struct Target {
    what: &'static str,
    goal: String,
    measured: String,
    /// `None`: the run has no row for it.
    met: Option<bool>,
}

fn find<'a>(report: &'a Report, scenario: &str, connections: Option<u32>) -> Option<&'a Row> {
    report.rows.iter().find(|row| {
        row.scenario.starts_with(scenario) && connections.is_none_or(|c| row.connections == c)
    })
}

fn med(runs: &[Measurement], f: fn(&Measurement) -> f64) -> f64 {
    median(&runs.iter().map(f).collect::<Vec<_>>())
}

fn cpu(runs: &[Measurement]) -> f64 {
    med(runs, |m| m.cpu_us_per_request)
}

fn p99_ms(runs: &[Measurement]) -> f64 {
    med(runs, |m| m.wrk.p99_us as f64) / 1e3
}

fn absent(what: &'static str, goal: String) -> Target {
    Target {
        what,
        goal,
        measured: "not measured in this run".into(),
        met: None,
    }
}

/// hello's CPU per request may be at most this many times native hyper's
/// (issue 28's target).
const HELLO_VS_NATIVE: f64 = 3.0;

/// Past this many times native hyper's CPU per request, hello fails the
/// run, short mode included: CI's guard against a large regression of the
/// fresh instance's cost. Full runs have measured 4.3–8.2× on these 2-core
/// machines (the same code 4.3× one day and 8.2× the next, on another
/// machine; a short run 8.5×); the guard leaves room for a slow machine and
/// a noisy one-second round.
pub const HELLO_VS_NATIVE_GUARD: f64 = 16.0;

/// Fails `report` when hello's CPU per request, at 16 connections, is past
/// [`HELLO_VS_NATIVE_GUARD`] times native hyper's in the same run.
pub fn guard_fresh_instance_cost(report: &mut Report) {
    let Some(row) = find(report, "hello, fresh instance", Some(16)) else {
        return;
    };
    let (host, native) = (cpu(&row.subject_runs), cpu(&row.baseline_runs));
    let ratio = host / native.max(1e-9);
    report.check(
        ratio <= HELLO_VS_NATIVE_GUARD,
        format!(
            "hello costs {host:.1} µs CPU/req against native hyper's {native:.1} µs: \
             {ratio:.1}×, past the guard's {HELLO_VS_NATIVE_GUARD}×"
        ),
    );
}

/// Every target, judged from `report`.
pub fn judge(report: &Report) -> Vec<Target> {
    let mut targets = Vec::new();
    for connections in [16, 64] {
        let what = if connections == 16 {
            "hello: server CPU per request vs native, 16 conns"
        } else {
            "hello: server CPU per request vs native, 64 conns"
        };
        let goal = format!(
            "≤ {HELLO_VS_NATIVE}× native hyper's (host CPU time ÷ requests served, same run)"
        );
        targets.push(
            match find(report, "hello, fresh instance", Some(connections)) {
                Some(row) => {
                    let (host, native) = (cpu(&row.subject_runs), cpu(&row.baseline_runs));
                    let ratio = host / native.max(1e-9);
                    Target {
                        what,
                        goal,
                        measured: format!("{host:.1} vs {native:.1} µs = {ratio:.2}×"),
                        met: Some(ratio <= HELLO_VS_NATIVE),
                    }
                }
                None => absent(what, goal),
            },
        );
    }
    let ratio_target = |scenario: &str, what: &'static str, goal: &str, at_least: f64| match find(
        report, scenario, None,
    ) {
        Some(row) => {
            let ratio = median(&row.ratios);
            Target {
                what,
                goal: goal.to_string(),
                measured: format!(
                    "{ratio:.2}× ({:.0} vs {:.0} req/s)",
                    med(&row.subject_runs, |m| m.rps),
                    med(&row.baseline_runs, |m| m.rps)
                ),
                met: Some(ratio >= at_least),
            }
        }
        None => absent(what, goal.to_string()),
    };
    targets.push(ratio_target(
        "hello + one kv get",
        "one kv get costs ≤ 10 % of hello's throughput",
        "kvstore GET ≥ 0.90× hello req/s",
        0.90,
    ));
    targets.push(ratio_target(
        "noisy neighbour:",
        "noisy neighbour keeps ≥ 75 % of a healthy droplet's throughput",
        "hello with spin hammered ≥ 0.75× hello alone",
        0.75,
    ));
    targets.push(ratio_target(
        "noisy neighbour (kv writes)",
        "noisy neighbour keeps ≥ 75 % of durable kv writes' throughput",
        "durable kv sets with spin hammered ≥ 0.75× sets alone",
        0.75,
    ));
    let what = "504 for a 50 ms budget";
    let goal = "p99 time to the 504 ≤ 53 ms".to_string();
    targets.push(match find(report, "budget precision", None) {
        Some(row) => {
            let p99 = p99_ms(&row.subject_runs);
            Target {
                what,
                goal,
                measured: format!("p99 {p99:.2} ms"),
                met: Some(p99 <= 53.0),
            }
        }
        None => absent(what, goal),
    });
    let what = "p99 at 64 conns vs native";
    let goal = "hello's p99 ≤ 1.5× native hyper's".to_string();
    targets.push(match find(report, "hello, fresh instance", Some(64)) {
        Some(row) => {
            let (ours, native) = (p99_ms(&row.subject_runs), p99_ms(&row.baseline_runs));
            Target {
                what,
                goal,
                measured: format!(
                    "{ours:.2} vs {native:.2} ms = {:.2}×",
                    ours / native.max(1e-9)
                ),
                met: Some(ours <= 1.5 * native),
            }
        }
        None => absent(what, goal),
    });
    // Cost as the work grows: CPU/req may grow at most like the pages.
    let mut previous: Option<(f64, u32)> = None;
    for (label, pages) in [("1 MiB", 256u32), ("4 MiB", 1024), ("16 MiB", 4096)] {
        let what = match label {
            "1 MiB" => "dirty 1 MiB vs 64 KiB: CPU/req grows ≤ pages",
            "4 MiB" => "dirty 4 MiB vs 64 KiB: CPU/req grows ≤ pages, no cliff",
            _ => "dirty 16 MiB vs 64 KiB: CPU/req grows ≤ pages, no cliff",
        };
        let factor = pages / 16;
        let goal = match previous {
            Some((_, before)) => format!(
                "≤ {factor}× the 64 KiB CPU/req, and ≤ {}× the previous size's",
                pages / before
            ),
            None => format!("≤ {factor}× the 64 KiB CPU/req"),
        };
        let scenario = format!("cost as work grows: dirty {label} ");
        match find(report, &scenario, None) {
            Some(row) => {
                let (big, small) = (cpu(&row.subject_runs), cpu(&row.baseline_runs));
                let growth = big / small.max(1e-9);
                let step_ok = previous.is_none_or(|(before_cpu, before)| {
                    big / before_cpu <= f64::from(pages / before)
                });
                targets.push(Target {
                    what,
                    goal,
                    measured: format!("{big:.1} vs {small:.1} µs = {growth:.1}×"),
                    met: Some(growth <= f64::from(factor) && step_ok),
                });
                previous = Some((big, pages));
            }
            None => targets.push(absent(what, goal)),
        }
    }
    // The same dirty pages as separate runs: PAGEMAP_SCAN reports at most
    // 32 runs per scan, past which the rest of the memory is decommitted.
    let what = "64 dirty pages as 64 runs vs one run: no cliff past the scan's 32 runs";
    let goal = "≤ 1.25× the CPU/req of the same pages as one run".to_string();
    targets.push(match find(report, "scattered pages: 64 ", None) {
        Some(row) => {
            let (runs, one) = (cpu(&row.subject_runs), cpu(&row.baseline_runs));
            let growth = runs / one.max(1e-9);
            Target {
                what,
                goal,
                measured: format!("{runs:.1} vs {one:.1} µs = {growth:.2}×"),
                met: Some(growth <= 1.25),
            }
        }
        None => absent(what, goal),
    });
    let what = "in-process droplet-to-droplet call";
    let goal = "adds ≤ 1.3× hello's CPU/req".to_string();
    targets.push(match find(report, "droplet-to-droplet", None) {
        Some(row) => {
            let (call, hello) = (cpu(&row.subject_runs), cpu(&row.baseline_runs));
            let added = (call - hello) / hello.max(1e-9);
            // The target counts the caller's own fresh instance as added;
            // what the call itself adds to the caller's request, over
            // `gateway` answering alone (the outbound row's baseline), is
            // shown beside it.
            let over_alone = find(report, "gateway + one outbound request", None)
                .map(|alone| {
                    let alone = cpu(&alone.baseline_runs);
                    format!(
                        "; over gateway alone ({alone:.1} µs): {:.2}×",
                        (call - alone) / hello.max(1e-9)
                    )
                })
                .unwrap_or_default();
            Target {
                what,
                goal,
                measured: format!("{call:.1} vs {hello:.1} µs: adds {added:.2}×{over_alone}"),
                met: Some(added <= 1.3),
            }
        }
        None => absent(what, goal),
    });
    let what = "one kv get on PostgreSQL costs ≤ 10 % beyond its round trip";
    let goal =
        "kvstore GET on PostgreSQL ≤ 1.10× (hello + native round trip − native hello) CPU/req"
            .to_string();
    targets.push(
        match (
            find(report, "kv get on PostgreSQL: droplet vs native", None),
            find(report, "hello, fresh instance per request", Some(16)),
        ) {
            (Some(kv), Some(hello)) => {
                let (get, round_trip) = (cpu(&kv.subject_runs), cpu(&kv.baseline_runs));
                let (droplet, native) = (cpu(&hello.subject_runs), cpu(&hello.baseline_runs));
                let expected = droplet + round_trip - native;
                let ratio = get / expected.max(1e-9);
                Target {
                    what,
                    goal,
                    measured: format!(
                        "{get:.1} vs {droplet:.1} + {round_trip:.1} − {native:.1} = {expected:.1} µs: {ratio:.2}×"
                    ),
                    met: Some(ratio <= 1.10),
                }
            }
            _ => absent(what, goal),
        },
    );
    many_droplets(report, &mut targets);
    // What the author's SDK and a rollout's split cost: CPU/req of the
    // subject over its baseline.
    for (scenario, what, goal, at_most) in [
        (
            "100 droplets receiving traffic at once",
            "100 droplets receiving traffic at once",
            "≤ 1.20× one droplet's CPU/req",
            1.20,
        ),
        (
            "wasi:http component",
            "a wasi:http (wstd) hello within 20 % of our hello's CPU",
            "proxy-hello ≤ 1.20× hello CPU/req",
            1.20,
        ),
        (
            "SDK: hello, this SDK vs its first edition",
            "the SDK's second edition costs hello ≤ 10 % more CPU",
            "hello (this SDK) ≤ 1.10× hello (first edition) CPU/req",
            1.10,
        ),
        (
            "SDK: the last of 20 routes vs hello",
            "a 20-route Router adds no measurable cost",
            "routes ≤ 1.05× hello CPU/req",
            1.05,
        ),
        (
            "rollout: hello split 50/50 between two builds vs hello alone",
            "a rollout's split at routing time costs next to nothing",
            "split hello ≤ 1.05× hello CPU/req",
            1.05,
        ),
        (
            "recording: hello, errors mode vs off",
            "recording failures (the default) costs a call ≤ 10 % more CPU",
            "hello (errors) ≤ 1.10× hello (off) CPU/req",
            1.10,
        ),
        (
            "recording: kv get, errors mode vs off",
            "recording failures costs a kv get ≤ 10 % more CPU",
            "kvstore GET (errors) ≤ 1.10× kvstore GET (off) CPU/req",
            1.10,
        ),
    ] {
        targets.push(match find(report, scenario, None) {
            Some(row) => {
                let (subject, baseline) = (cpu(&row.subject_runs), cpu(&row.baseline_runs));
                let ratio = subject / baseline.max(1e-9);
                Target {
                    what,
                    goal: goal.to_string(),
                    measured: format!("{subject:.1} vs {baseline:.1} µs = {ratio:.2}×"),
                    met: Some(ratio <= at_most),
                }
            }
            None => absent(what, goal.to_string()),
        });
    }
    targets
}

/// One figure of a many-droplets run: what, goal, the figure, its bound, unit.
type ManyCheck = (
    &'static str,
    &'static str,
    fn(&crate::Startup) -> f64,
    f64,
    &'static str,
);

/// 10 000 droplets on one host (lazy, from a warm code cache).
fn many_droplets(report: &Report, targets: &mut Vec<Target>) {
    let warm_lazy = report
        .startups
        .iter()
        .find(|start| start.droplets == 10_000 && start.cache == "warm" && start.loading == "lazy");
    let checks: [ManyCheck; 4] = [
        (
            "10 000 droplets: start-up",
            "≤ 1 s (lazy, warm code cache)",
            |start| start.startup_ms,
            1000.0,
            "ms",
        ),
        (
            "10 000 droplets: idle RSS",
            "≤ 150 MiB (lazy, before any request)",
            |start| start.idle_rss_mib,
            150.0,
            "MiB",
        ),
        (
            "10 000 droplets: first request to a droplet never called",
            "p99 ≤ 5 ms (lazy, warm code cache; 100 droplets in turn)",
            |start| start.first_request_p99_ms,
            5.0,
            "ms",
        ),
        (
            "10 000 droplets: the dashboard's overview",
            "≤ 50 ms (one page, sorted by rate over every droplet)",
            |start| start.overview_ms,
            50.0,
            "ms",
        ),
    ];
    for (what, goal, measure, at_most, unit) in checks {
        targets.push(match warm_lazy {
            Some(start) => {
                let value = measure(start);
                Target {
                    what,
                    goal: goal.to_string(),
                    measured: format!("{value:.2} {unit}"),
                    met: Some(value <= at_most),
                }
            }
            None => absent(what, goal.to_string()),
        });
    }
}

/// Figures the run measured without a target: what each option costs.
fn figures(report: &Report) -> Vec<(String, String)> {
    let mut figures = Vec::new();
    for row in &report.rows {
        let costs = row.scenario.starts_with("access log:")
            || row.scenario.starts_with("OpenTelemetry")
            || row.scenario.starts_with("dirty 16 MiB:")
            || row.scenario.starts_with("scattered pages: 24 ")
            || row.scenario.starts_with("warm slots:");
        if costs {
            figures.push((
                row.scenario.clone(),
                format!(
                    "{:.1} vs {:.1} µs CPU/req, {:.2}× req/s",
                    cpu(&row.subject_runs),
                    cpu(&row.baseline_runs),
                    median(&row.ratios)
                ),
            ));
        }
    }
    figures
}

/// The targets table of `report`, headed with its run.
pub fn markdown(report: &Report) -> String {
    let machine = &report.machine;
    let mut md = format!(
        "Targets, judged from this one run ({}, {} mode, commit `{}`):\n\n\
         | target | goal | measured | status |\n| --- | --- | --- | --- |\n",
        machine.date, report.mode, machine.commit
    );
    for target in judge(report) {
        let status = match target.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "not measured",
        };
        md.push_str(&format!(
            "| {} | {} | {} | {status} |\n",
            target.what, target.goal, target.measured
        ));
    }
    let figures = figures(report);
    if !figures.is_empty() {
        md.push_str("\nWhat options cost (same run, no target):\n\n| option | subject vs baseline |\n| --- | --- |\n");
        for (what, measured) in figures {
            md.push_str(&format!("| {what} | {measured} |\n"));
        }
    }
    md
}

const BEGIN: &str = "<!-- results:begin (written by a full `cargo xtask bench`; do not edit) -->";
const END: &str = "<!-- results:end -->";

/// Replaces the run section of `readme` with `section`.
pub fn write_into_readme(readme: &Path, section: &str) -> Result<()> {
    let text =
        std::fs::read_to_string(readme).with_context(|| format!("read {}", readme.display()))?;
    let (Some(start), Some(end)) = (text.find(BEGIN), text.find(END)) else {
        anyhow::bail!("{} has no results markers", readme.display());
    };
    let updated = format!("{}{BEGIN}\n\n{section}\n{}", &text[..start], &text[end..]);
    std::fs::write(readme, updated).with_context(|| format!("write {}", readme.display()))?;
    eprintln!("droplet-bench: wrote this run into {}", readme.display());
    Ok(())
}
