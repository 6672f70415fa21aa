//! Canary rollouts on one host: a failing canary rolled back by the host,
//! a good one promoted through every step, the split sticky by caller and
//! counted exactly, ending by hand or by a plain deploy, and thresholds
//! from the manifest, from the deploy, and refused when out of range.

use std::collections::HashMap;

use base64::Engine;
use bytes::Bytes;
use http::Request;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::support::{
    GENEROUS, Host, HostBuilder, PATIENCE, TEST_SECRET, admin_request, claims_with_scope, example,
    hs256_token,
};

/// A host serving `hello` (and the admin API).
pub async fn hello_host() -> Host {
    HostBuilder::new()
        .droplet("hello", "hello")
        .env("JWT_SECRET", TEST_SECRET)
        .arg("--no-watch")
        .start()
        .await
}

/// Starts a rollout of `example` (with `manifest`) as a canary of `name`,
/// with `canary` overriding its thresholds; the 202's rollout.
pub async fn start_canary(
    host: &Host,
    name: &str,
    example_name: &str,
    manifest: &str,
    canary: Value,
) -> Value {
    let reply = canary_deploy(host, name, example_name, manifest, canary).await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    reply.json()
}

/// Sends a canary deploy.
pub async fn canary_deploy(
    host: &Host,
    name: &str,
    example_name: &str,
    manifest: &str,
    canary: Value,
) -> crate::support::Reply {
    let body = json!({
        "module": base64::engine::general_purpose::STANDARD.encode(example(example_name)),
        "manifest": format!("{GENEROUS}{manifest}"),
        "canary": canary,
    });
    admin_request(
        host,
        "PUT",
        &format!("/_admin/droplets/{name}"),
        Some(&body),
    )
    .await
}

/// The newest rollout of `name`.
pub async fn status(host: &Host, name: &str) -> Value {
    let reply = admin_request(
        host,
        "GET",
        &format!("/_admin/droplets/{name}/rollout"),
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

/// One request to `/hello/` with `headers`: its status and version.
async fn hello(host: &Host, headers: &[(&str, String)]) -> (u16, String) {
    let mut request = Request::builder().uri("/hello/");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let reply = host.send(request.body(Bytes::new()).unwrap()).await;
    let version = reply.header("x-droplet-version").unwrap_or("").to_string();
    (reply.status, version)
}

/// Sends requests until the rollout of `hello` is in `state`, asserting
/// each answer with `check(status, version)`; how many each version got.
async fn drive_until(
    host: &Host,
    state: &str,
    check: impl Fn(u16, &str),
) -> (Value, HashMap<String, u64>) {
    let deadline = Instant::now() + PATIENCE * 2;
    let mut seen = HashMap::new();
    loop {
        for _ in 0..10 {
            let (status, version) = hello(host, &[]).await;
            check(status, &version);
            *seen.entry(version).or_default() += 1;
        }
        let rollout = status(host, "hello").await;
        if rollout["state"] == state {
            return (rollout, seen);
        }
        assert!(
            rollout["state"] == "running",
            "ended otherwise: {rollout:#}"
        );
        assert!(Instant::now() < deadline, "never {state}: {rollout:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_is_rolled_back_and_only_its_share_failed() {
    let host = hello_host().await;
    let (_, stable) = hello(&host, &[]).await;
    // A canary that fails about 40 % of its requests.
    let failing = "[config]\nfail_percent = \"40\"\n";
    let thresholds = json!({"steps": [50], "min_requests": 30});
    let started = start_canary(&host, "hello", "panic", failing, thresholds).await;
    assert_eq!(
        (started["state"].as_str(), started["share"].as_u64()),
        (Some("running"), Some(50))
    );
    let canary = started["canary"].as_str().unwrap().to_string();
    assert_eq!(started["stable"], stable.as_str());
    let (rollout, seen) = drive_until(&host, "rolled_back", |status, version| {
        // Only the canary's own share fails, and only before the decision.
        if version == stable {
            assert_eq!(status, 200);
        } else {
            assert_eq!(version, canary.as_str());
            assert!(status == 200 || status == 500, "{status}");
        }
    })
    .await;
    assert!(seen.get(&canary).copied().unwrap_or(0) >= 30, "{seen:?}");
    assert_eq!(rollout["share"], 0);
    let reason = rollout["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("error rate ") && reason.contains(" % vs 0.0 % over "),
        "{reason}"
    );
    let decision = rollout["decisions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(decision["action"], "roll_back");
    let rate = decision["canary"]["error_rate"].as_f64().unwrap();
    assert!(rate > 5.0 && rate < 100.0, "{decision}");
    assert!(
        reason.starts_with(&format!("error rate {rate:.1} %")),
        "{reason} vs {rate}"
    );
    for _ in 0..50 {
        assert_eq!(hello(&host, &[]).await, (200, stable.clone()));
    }
    let detail = admin_request(&host, "GET", "/_admin/droplets/hello", None)
        .await
        .json();
    let entry = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["version"] == canary.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (entry["how"].as_str(), entry["current"].as_bool()),
        (Some("rolled_back"), Some(false)),
        "{entry}"
    );
    let line = host
        .wait_for_log(
            |line| line["message"] == "rollout decision" && line["action"] == "roll_back",
            PATIENCE,
        )
        .await
        .expect("a log line for the decision");
    assert_eq!(line["canary"], canary.as_str());
    assert_eq!(line["stable"], stable.as_str());
    let metrics = host.get("/metrics").await.text();
    assert!(
        metrics
            .contains("droplet_rollout_decisions_total{droplet=\"hello\",action=\"roll_back\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_canary_is_promoted_through_every_step() {
    let host = hello_host().await;
    let (_, stable) = hello(&host, &[]).await;
    let manifest = "[config]\ngreeting = \"Howdy\"\n";
    let started = start_canary(
        &host,
        "hello",
        "hello",
        manifest,
        json!({"min_requests": 10, "step_seconds": 1, "p95_floor_ms": 60000}),
    )
    .await;
    assert_eq!(started["thresholds"]["steps"], json!([5, 25, 50]));
    let canary = started["canary"].as_str().unwrap().to_string();
    let (rollout, seen) = drive_until(&host, "promoted", |status, _| assert_eq!(status, 200)).await;
    assert!(
        seen.contains_key(&stable) && seen.contains_key(&canary),
        "{seen:?}"
    );
    let actions: Vec<(&str, u64)> = rollout["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|decision| {
            (
                decision["action"].as_str().unwrap(),
                decision["to_share"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("start", 5),
            ("advance", 25),
            ("advance", 50),
            ("promote", 100)
        ]
    );
    for decision in &rollout["decisions"].as_array().unwrap()[1..] {
        assert!(
            decision["canary"]["requests"].as_u64().unwrap() >= 10,
            "{decision}"
        );
    }
    let reply = host.get("/hello/").await;
    assert_eq!(reply.header("x-droplet-version"), Some(canary.as_str()));
    assert!(reply.text().starts_with("Howdy"), "{}", reply.text());
    let detail = admin_request(&host, "GET", "/_admin/droplets/hello", None)
        .await
        .json();
    assert_eq!(detail["version"], canary.as_str());
    let entry = &detail["history"][0];
    assert_eq!(
        (entry["how"].as_str(), entry["current"].as_bool()),
        (Some("promoted"), Some(true)),
        "{entry}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_sees_one_version_within_a_step_and_the_figures_count_every_request() {
    let host = hello_host().await;
    let (_, stable) = hello(&host, &[]).await;
    let hold = json!({"steps": [50], "min_requests": 1_000_000});
    let started = start_canary(
        &host,
        "hello",
        "hello",
        "[config]\ngreeting = \"Hi\"\n",
        hold,
    )
    .await;
    let canary = started["canary"].as_str().unwrap().to_string();
    let mut versions_by_caller = HashMap::new();
    let mut sent = HashMap::<String, u64>::new();
    for user in 0..8 {
        let mut claims = claims_with_scope("");
        claims["sub"] = json!(format!("user-{user}"));
        let token = format!("Bearer {}", hs256_token(&claims));
        for _ in 0..25 {
            let (status, version) = hello(&host, &[("authorization", token.clone())]).await;
            assert_eq!(status, 200);
            *sent.entry(version.clone()).or_default() += 1;
            let first = versions_by_caller
                .entry(user)
                .or_insert_with(|| version.clone());
            assert_eq!(
                *first, version,
                "user-{user} moved between versions within a step"
            );
        }
    }
    for key in ["a", "b", "c", "d"] {
        let first = hello(&host, &[("x-droplet-rollout-key", key.to_string())])
            .await
            .1;
        *sent.entry(first.clone()).or_default() += 1;
        for _ in 0..9 {
            let (_, version) = hello(&host, &[("x-droplet-rollout-key", key.to_string())]).await;
            assert_eq!(version, first, "key {key} moved between versions");
            *sent.entry(version).or_default() += 1;
        }
    }
    let rollout = status(&host, "hello").await;
    assert_eq!(
        rollout["figures"]["canary"]["requests"],
        sent.get(&canary).copied().unwrap_or(0),
        "{sent:?} {rollout:#}"
    );
    assert_eq!(
        rollout["figures"]["stable"]["requests"],
        sent.get(&stable).copied().unwrap_or(0),
        "{sent:?}"
    );
    assert_eq!(rollout["figures"]["canary"]["errors"], 0);
    // A second canary waits for this one to end.
    let second = canary_deploy(&host, "hello", "echo", "", json!({})).await;
    second.assert_error(409, "conflict");
    let aborted = admin_request(&host, "POST", "/_admin/droplets/hello/rollout/abort", None).await;
    assert_eq!(aborted.status, 200, "{}", aborted.text());
    assert_eq!(
        (
            aborted.json()["state"].as_str(),
            aborted.json()["share"].as_u64()
        ),
        (Some("aborted"), Some(0))
    );
    for user in 0..8 {
        let mut claims = claims_with_scope("");
        claims["sub"] = json!(format!("user-{user}"));
        let token = format!("Bearer {}", hs256_token(&claims));
        assert_eq!(
            hello(&host, &[("authorization", token)]).await,
            (200, stable.clone())
        );
    }
    let again = admin_request(&host, "POST", "/_admin/droplets/hello/rollout/abort", None).await;
    again.assert_error(404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_by_hand_a_plain_deploy_ends_a_rollout_and_thresholds_come_from_manifest_or_flags()
{
    let host = hello_host().await;
    // From the canary's manifest, one field overridden by the deploy.
    let manifest = "[rollout]\nsteps = [10, 20]\nmin_requests = 1000000\nmax_error_rate = 2.5\n";
    let started = start_canary(
        &host,
        "hello",
        "hello",
        manifest,
        json!({"step_seconds": 600}),
    )
    .await;
    let thresholds = &started["thresholds"];
    assert_eq!(thresholds["steps"], json!([10, 20]));
    assert_eq!(
        (
            thresholds["max_error_rate"].as_f64(),
            thresholds["step_seconds"].as_u64()
        ),
        (Some(2.5), Some(600))
    );
    assert_eq!(thresholds["max_p95_ratio"], 1.5);
    let promoted = admin_request(
        &host,
        "POST",
        "/_admin/droplets/hello/rollout/promote",
        None,
    )
    .await;
    assert_eq!(promoted.status, 200, "{}", promoted.text());
    assert_eq!(promoted.json()["state"], "promoted");
    let canary = started["canary"].as_str().unwrap();
    assert_eq!(hello(&host, &[]).await, (200, canary.to_string()));

    // A plain deploy during a rollout ends it.
    let running = start_canary(
        &host,
        "hello",
        "hello",
        "[config]\ngreeting = \"Yo\"\n",
        json!({"min_requests": 1000000}),
    )
    .await;
    assert_eq!(running["stable"], canary);
    let body = json!({"module": base64::engine::general_purpose::STANDARD.encode(example("hello")), "manifest": GENEROUS});
    let plain = admin_request(&host, "PUT", "/_admin/droplets/hello", Some(&body)).await;
    assert_eq!(plain.status, 200, "{}", plain.text());
    let ended = status(&host, "hello").await;
    assert_eq!(ended["state"], "aborted");
    let reason = ended["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("ended by a plain deploy of "),
        "{reason}"
    );
    let serving = plain.json()["version"].as_str().unwrap().to_string();
    for _ in 0..20 {
        assert_eq!(hello(&host, &[]).await, (200, serving.clone()));
    }

    // Out of range: refused, naming the field; nothing starts.
    for (canary, field) in [
        (json!({"steps": [50, 10]}), "rollout.steps"),
        (json!({"max_error_rate": 150.0}), "rollout.max_error_rate"),
        (json!({"min_requests": 0}), "rollout.min_requests"),
    ] {
        let refused = canary_deploy(&host, "hello", "echo", "", canary).await;
        let message = refused.assert_error(400, "bad_request");
        assert!(message.contains(field), "{message}");
    }
    let refused = canary_deploy(
        &host,
        "hello",
        "echo",
        "[rollout]\nstep_seconds = 0\n",
        json!({}),
    )
    .await;
    assert!(
        refused
            .assert_error(400, "bad_request")
            .contains("rollout.step_seconds")
    );
    let unknown = canary_deploy(&host, "hello", "echo", "", json!({"steps_seconds": 5})).await;
    unknown.assert_error(400, "bad_request");
    assert_eq!(status(&host, "hello").await["state"], "aborted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_starts_follows_and_promotes_a_canary() {
    let host = hello_host().await;
    let dir = tempfile::tempdir().unwrap();
    let (wasm, manifest) = (dir.path().join("hello.wasm"), dir.path().join("hello.toml"));
    std::fs::write(&wasm, example("hello")).unwrap();
    std::fs::write(
        &manifest,
        format!("{GENEROUS}[config]\ngreeting = \"Howdy\"\n"),
    )
    .unwrap();
    let token = hs256_token(&claims_with_scope("droplets:admin"));
    let url = host.url();
    let run = |args: Vec<String>| {
        let (url, token) = (url.clone(), token.clone());
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            crate::support::cli(&args, &[("DROPLET_HOST", &url), ("DROPLET_TOKEN", &token)])
        })
    };
    let (wasm, manifest) = (wasm.display().to_string(), manifest.display().to_string());
    let deploy = |extra: &[&str]| {
        let mut args = vec![
            "deploy",
            "hello",
            &wasm,
            "--manifest",
            &manifest,
            "--canary",
        ];
        args.extend(extra);
        args.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let (ok, _, stderr) = run(deploy(&["--max-error-rate", "200"])).await.unwrap();
    assert!(!ok && stderr.contains("rollout.max_error_rate"), "{stderr}");
    let (ok, stdout, stderr) = run(deploy(&["--steps", "20,40", "--min-requests", "1000000"]))
        .await
        .unwrap();
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("hello: running") && stdout.contains("at 20 %"),
        "{stdout}"
    );
    let status = ["rollout", "status", "hello", "--json"]
        .map(str::to_string)
        .to_vec();
    let (ok, stdout, stderr) = run(status.clone()).await.unwrap();
    assert!(ok, "{stderr}");
    let rollout: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (rollout["state"].as_str(), rollout["share"].as_u64()),
        (Some("running"), Some(20))
    );
    assert_eq!(rollout["thresholds"]["steps"], json!([20, 40]));
    let canary = rollout["canary"].as_str().unwrap().to_string();
    let (ok, stdout, stderr) = run(["rollout", "promote", "hello"].map(str::to_string).to_vec())
        .await
        .unwrap();
    assert!(ok && stdout.contains("hello: promoted"), "{stdout}{stderr}");
    assert_eq!(hello(&host, &[]).await, (200, canary));
    let (ok, stdout, _) = run(["rollout", "status", "hello"].map(str::to_string).to_vec())
        .await
        .unwrap();
    assert!(
        ok && stdout.contains("promote") && stdout.contains("by operator: promoted by hand"),
        "{stdout}"
    );
    let (ok, _, stderr) = run(["rollout", "abort", "hello"].map(str::to_string).to_vec())
        .await
        .unwrap();
    assert!(
        !ok && stderr.contains("no rollout of `hello` is running"),
        "{stderr}"
    );
}
