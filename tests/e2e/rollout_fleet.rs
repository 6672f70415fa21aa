//! A canary rollout on a fleet: two hosts on one PostgreSQL schema split
//! the traffic, one host judges, and when it is killed mid-rollout the
//! other finishes it (skipped, saying why, without PostgreSQL).

use std::collections::HashSet;

use base64::Engine;
use bytes::Bytes;
use http::Request;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::fleet::fleet_host;
use crate::pg::TestDatabase;
use crate::rollout::{start_canary, status};
use crate::support::{GENEROUS, Host, PATIENCE, admin_request, example};

/// The version that answered one request to `/hello/` on `host`.
async fn version(host: &Host) -> String {
    let reply = host
        .send(
            Request::builder()
                .uri("/hello/")
                .body(Bytes::new())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply
        .header("x-droplet-version")
        .unwrap_or_default()
        .to_string()
}

/// Sends requests to `hosts` until the rollout (read from `hosts[0]`)
/// satisfies `done`; the versions each host answered with.
async fn drive(hosts: &[&Host], done: impl Fn(&Value) -> bool) -> (Value, Vec<HashSet<String>>) {
    let deadline = Instant::now() + PATIENCE * 3;
    let mut seen = vec![HashSet::new(); hosts.len()];
    loop {
        for _ in 0..10 {
            for (index, host) in hosts.iter().enumerate() {
                seen[index].insert(version(host).await);
            }
        }
        let rollout = status(hosts[0], "hello").await;
        if done(&rollout) {
            return (rollout, seen);
        }
        if Instant::now() >= deadline {
            for host in hosts {
                for line in host.log_lines() {
                    let text = line.to_string();
                    if text.contains("rollout") || text.contains("unreachable") {
                        eprintln!("{text}");
                    }
                }
            }
            panic!("not done in time: {rollout:#}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_splits_on_every_host_judges_each_step_once_and_outlives_its_judge() {
    let Some(db) = TestDatabase::create("rollout_fleet").await else {
        return;
    };
    let (a, b) = tokio::join!(fleet_host(&db, "a").start(), fleet_host(&db, "b").start());
    let (mut a, mut b) = (Some(a), Some(b));
    let body = json!({
        "module": base64::engine::general_purpose::STANDARD.encode(example("hello")),
        "manifest": GENEROUS,
    });
    let host_a = a.as_ref().unwrap();
    let deployed = admin_request(host_a, "PUT", "/_admin/droplets/hello", Some(&body)).await;
    assert_eq!(deployed.status, 201, "{}", deployed.text());
    let stable = deployed.json()["version"].as_str().unwrap().to_string();
    let host_b = b.as_ref().unwrap();
    let deadline = Instant::now() + PATIENCE;
    while host_b
        .try_send(
            Request::builder()
                .uri("/hello/")
                .body(Bytes::new())
                .unwrap(),
        )
        .await
        .map(|r| r.status)
        != Ok(200)
    {
        assert!(Instant::now() < deadline, "b never served hello");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let thresholds =
        json!({"steps": [30, 60], "min_requests": 15, "step_seconds": 2, "p95_floor_ms": 60000});
    let manifest = "[config]\ngreeting = \"Howdy\"\n";
    let started = start_canary(host_a, "hello", "hello", manifest, thresholds).await;
    let canary = started["canary"].as_str().unwrap().to_string();

    // Split on both hosts, judged by one: drive until the first step is
    // decided.
    let (rollout, seen) = drive(&[host_a, host_b], |rollout| rollout["step"] == 1).await;
    for (host, versions) in ["a", "b"].iter().zip(&seen) {
        assert!(
            versions.contains(&stable) && versions.contains(&canary),
            "host {host} saw {versions:?}"
        );
    }
    let advance = rollout["decisions"][1].clone();
    assert_eq!(advance["action"], "advance", "{rollout:#}");
    let judge = advance["by"].as_str().unwrap().to_string();
    let canary_requests = advance["canary"]["requests"].as_u64().unwrap();
    assert!(canary_requests >= 15, "{advance}");

    // Kill the judge mid-rollout; the other host takes over.
    let (killed, survivor) = if judge == "a" {
        (&mut a, b.take().unwrap())
    } else {
        (&mut b, a.take().unwrap())
    };
    let mut killed_host = killed.take().unwrap();
    killed_host.signal("KILL");
    killed_host.wait_exit(PATIENCE).await;
    let (rollout, _) = drive(&[&survivor], |rollout| rollout["state"] != "running").await;
    assert_eq!(rollout["state"], "promoted", "{rollout:#}");
    let decisions: Vec<(String, String, u64)> = rollout["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["action"].as_str().unwrap().to_string(),
                d["by"].as_str().unwrap().to_string(),
                d["to_share"].as_u64().unwrap(),
            )
        })
        .collect();
    let other = if judge == "a" { "b" } else { "a" };
    assert_eq!(
        decisions,
        [
            ("start".to_string(), "operator".to_string(), 30),
            ("advance".to_string(), judge.clone(), 60),
            ("promote".to_string(), other.to_string(), 100),
        ],
        "each step decided once"
    );
    assert_eq!(version(&survivor).await, canary);
    let detail = admin_request(&survivor, "GET", "/_admin/droplets/hello", None)
        .await
        .json();
    assert_eq!(detail["version"], canary.as_str());
}
