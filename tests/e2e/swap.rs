//! Hot swap: from the droplets directory and the admin API, under load,
//! without a failed request; many droplets on one host.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use futures::future::join_all;
use http::Request;
use serde_json::json;

use crate::support::{
    GENEROUS, Host, HostBuilder, TEST_SECRET, claims_with_scope, example, example_variant,
    hs256_token,
};

/// Polls `path` until `done` holds for a response, asserting every response
/// on the way is a 200; fails after `within`.
async fn poll_until(
    host: &Host,
    path: &str,
    within: Duration,
    done: impl Fn(&crate::support::Reply) -> bool,
) {
    let deadline = Instant::now() + within;
    loop {
        let reply = host.get(path).await;
        assert_eq!(
            reply.status,
            200,
            "a request failed during the swap: {}",
            reply.text()
        );
        if done(&reply) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no swap within {within:?}; still {}",
            reply.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_echo(reply: &crate::support::Reply) -> bool {
    reply.text().starts_with('{')
}

fn is_hello(reply: &crate::support::Reply) -> bool {
    reply.text().starts_with("Hello from droplet hello")
}

#[tokio::test]
async fn directory_changes_swap_versions_and_a_corrupt_one_is_refused() {
    let host = HostBuilder::new().droplet("app", "hello").start().await;
    assert!(is_hello(&host.get("/app/").await));
    let module = host.droplets_dir().join("app.wasm");

    // v2 written in place over v1.
    std::fs::write(&module, example("echo")).unwrap();
    poll_until(&host, "/app/", Duration::from_secs(2), is_echo).await;

    // v3 by write-then-rename.
    let tmp = host.droplets_dir().join(".app.wasm.partial");
    std::fs::write(&tmp, example("hello")).unwrap();
    std::fs::rename(&tmp, &module).unwrap();
    poll_until(&host, "/app/", Duration::from_secs(2), is_hello).await;
    let swaps = host
        .wait_for_log_count(
            |line| line["message"] == "droplet version published" && line["droplet"] == "app",
            2,
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(swaps, 2, "one swap per change");

    // A corrupt v4 is refused and v3 keeps serving.
    std::fs::write(&module, b"not webassembly at all").unwrap();
    let refused = host
        .wait_for_log(
            |line| {
                line["droplet"] == "app"
                    && line["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("refused"))
            },
            Duration::from_secs(5),
        )
        .await
        .expect("the corrupt version is refused in the log");
    assert!(
        refused["reason"].as_str().unwrap().contains("app.wasm"),
        "{refused}"
    );
    assert!(is_hello(&host.get("/app/").await));

    // Removing the module removes the droplet.
    std::fs::remove_file(&module).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while host.get("/app/").await.status != 404 {
        assert!(
            Instant::now() < deadline,
            "droplet still served after its module was removed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_in_flight_request_finishes_on_the_version_it_started_on() {
    let host = HostBuilder::new()
        .droplet_with("app", "echo", "budget_ms = 5000\n")
        .start()
        .await;
    let v1 = host
        .get("/app/")
        .await
        .header("x-droplet-version")
        .unwrap()
        .to_string();
    let slow = host.send(
        Request::get("/app/?sleep_ms=800")
            .header("x-request-id", "slow-v1")
            .body(Bytes::new())
            .unwrap(),
    );
    let swap = async {
        host.wait_for_log(
            |line| line["trace_id"] == "slow-v1" && line["message"] == "echoing",
            Duration::from_secs(10),
        )
        .await
        .expect("slow request started");
        std::fs::write(host.droplets_dir().join("app.toml"), "budget_ms = 4000\n").unwrap();
        host.wait_for_log(
            |line| line["message"] == "droplet version published",
            Duration::from_secs(5),
        )
        .await
        .expect("swapped")
    };
    let (slow, published) = tokio::join!(slow, swap);
    assert_eq!(slow.status, 200);
    assert_eq!(
        slow.header("x-droplet-version"),
        Some(v1.as_str()),
        "finished on v1"
    );
    let v2 = published["version"].as_str().unwrap();
    assert_ne!(v1, v2);
    assert_eq!(
        host.get("/app/").await.header("x-droplet-version"),
        Some(v2)
    );
}

#[tokio::test]
async fn twenty_swaps_under_load_fail_no_request() {
    let host = HostBuilder::new()
        .droplet_with("app", "hello", "[config]\ngreeting = \"v0\"\n")
        .env("JWT_SECRET", TEST_SECRET)
        .start()
        .await;
    let token = hs256_token(&claims_with_scope("droplets:admin"));
    let module = base64::engine::general_purpose::STANDARD.encode(example("hello"));
    let v0 = host
        .get("/app/")
        .await
        .header("x-droplet-version")
        .unwrap()
        .to_string();
    let stop = Arc::new(AtomicBool::new(false));

    // (version, greeting, sent, answered) of every publish.
    let swapper = {
        let (stop, host, token) = (Arc::clone(&stop), &host, &token);
        async move {
            let mut published =
                vec![(v0.clone(), "v0".to_string(), Instant::now(), Instant::now())];
            for i in 1..=20 {
                let greeting = format!("v{i}");
                // Every version keeps a budget no load can overrun: the test
                // is about swaps, not budgets.
                let body = json!({ "module": module, "manifest": format!("{GENEROUS}[config]\ngreeting = \"{greeting}\"\n") });
                let sent = Instant::now();
                let reply = host
                    .send(
                        Request::put("/_admin/droplets/app")
                            .header("authorization", format!("Bearer {token}"))
                            .body(Bytes::from(body.to_string()))
                            .unwrap(),
                    )
                    .await;
                assert_eq!(reply.status, 200, "{}", reply.text());
                published.push((
                    reply.json()["version"].as_str().unwrap().to_string(),
                    greeting,
                    sent,
                    Instant::now(),
                ));
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            stop.store(true, Ordering::Relaxed);
            published
        }
    };
    // 16 clients, each request recorded as (start, end, status, version, body).
    let clients = join_all((0..16).map(|_| {
        let (stop, host) = (Arc::clone(&stop), &host);
        async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let reply = host.get("/app/").await;
                let version = reply
                    .header("x-droplet-version")
                    .unwrap_or_default()
                    .to_string();
                seen.push((start, Instant::now(), reply.status, version, reply.text()));
            }
            seen
        }
    }));
    let (published, seen) = tokio::join!(swapper, clients);
    let seen: Vec<_> = seen.into_iter().flatten().collect();
    assert!(seen.len() > 100, "only {} requests under load", seen.len());
    let failed: Vec<(u16, &str)> = seen
        .iter()
        .filter(|(_, _, status, _, _)| *status != 200)
        .map(|(_, _, status, _, body)| (*status, body.as_str()))
        .collect();
    assert!(
        failed.is_empty(),
        "requests failed during the swaps: {failed:?}"
    );
    for (start, end, _, version, body) in &seen {
        let index = published
            .iter()
            .position(|(id, ..)| id == version)
            .unwrap_or_else(|| panic!("response from unknown version {version}"));
        let (_, greeting, sent, _) = &published[index];
        assert!(
            body.starts_with(&format!("{greeting} from")),
            "version {version} answered {body}"
        );
        // The version was current at some point while the request ran.
        assert!(
            index == 0 || *sent <= *end,
            "{version} answered before it was deployed"
        );
        if let Some((_, _, _, next_answered)) = published.get(index + 1) {
            assert!(
                *start <= *next_answered,
                "{version} answered after it was replaced"
            );
        }
    }
    println!(
        "swap under load: {} requests, 0 failed, 20 swaps",
        seen.len()
    );
}

#[tokio::test]
async fn two_hundred_droplets_load_and_each_answers() {
    let mut builder = HostBuilder::new();
    for i in 0..200 {
        // A budget no load can overrun: this test is not about budgets.
        builder = builder
            .file(&format!("d{i}.wasm"), example("hello"))
            .file(&format!("d{i}.toml"), crate::support::GENEROUS.into());
    }
    let host = builder.start().await;
    assert_eq!(host.get("/health").await.json()["droplets"], 200);
    let replies = join_all((0..200).map(|i| {
        let (host, path) = (&host, format!("/d{i}/"));
        async move { host.get(&path).await }
    }))
    .await;
    for reply in replies {
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
}

#[tokio::test]
async fn lazy_droplets_compile_on_their_first_request() {
    let cache = tempfile::tempdir().unwrap();
    let host = HostBuilder::new()
        .file("lazy.wasm", example_variant("hello", 7))
        .cache(cache.path())
        .arg("--lazy")
        .start()
        .await;
    assert!(
        !host
            .log_lines()
            .iter()
            .any(|line| line["message"] == "droplet ready"),
        "nothing compiled at start"
    );
    assert!(is_hello(&host.get("/lazy/").await));
    let ready = host
        .wait_for_log(
            |line| line["message"] == "droplet ready",
            Duration::from_secs(5),
        )
        .await
        .expect("compiled on first request");
    assert_eq!(ready["cached"], false);
}

#[tokio::test]
async fn a_restart_with_a_warm_cache_is_faster_than_the_first_start() {
    let cache = tempfile::tempdir().unwrap();
    let start = || {
        let mut builder = HostBuilder::new().cache(cache.path()).arg("--no-watch");
        for i in 0..6 {
            builder = builder.file(&format!("d{i}.wasm"), example_variant("hello", i));
        }
        builder.start()
    };
    let load_ms = |host: &Host| {
        let lines = host.log_lines();
        let loaded = lines
            .iter()
            .find(|line| line["message"] == "droplets loaded")
            .expect("load summary");
        let cached = lines
            .iter()
            .filter(|line| line["message"] == "droplet ready" && line["cached"] == true)
            .count();
        (loaded["duration_ms"].as_u64().unwrap(), cached)
    };
    let cold = start().await;
    let (cold_ms, cold_cached) = load_ms(&cold);
    drop(cold);
    let warm = start().await;
    let (warm_ms, warm_cached) = load_ms(&warm);
    assert_eq!((cold_cached, warm_cached), (0, 6));
    assert!(
        warm_ms < cold_ms,
        "warm start took {warm_ms} ms, cold {cold_ms} ms"
    );
    println!("start-up with 6 droplets: cold cache {cold_ms} ms, warm cache {warm_ms} ms");
}

#[tokio::test]
async fn reading_the_directory_files_does_not_undo_a_deploy_but_new_content_wins() {
    let host = HostBuilder::new()
        .droplet("app", "hello")
        .file("app.toml", b"budget_ms = 1000\n".to_vec())
        .env("JWT_SECRET", TEST_SECRET)
        .start()
        .await;
    assert!(is_hello(&host.get("/app/").await));
    let body = json!({
        "module": base64::engine::general_purpose::STANDARD.encode(example("echo")),
    });
    let deployed =
        crate::support::admin_request(&host, "PUT", "/_admin/droplets/app", Some(&body)).await;
    assert_eq!(deployed.status, 200, "{}", deployed.text());
    assert!(is_echo(&host.get("/app/").await));

    // Reading (and touching) the droplet's files is not a change of content.
    let (module, manifest) = (
        host.droplets_dir().join("app.wasm"),
        host.droplets_dir().join("app.toml"),
    );
    for _ in 0..3 {
        std::fs::read(&module).unwrap();
        std::fs::read_to_string(&manifest).unwrap();
    }
    let same = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, same).unwrap();
    // Several debounce periods: any reaction of the watcher would show.
    let until = Instant::now() + Duration::from_millis(1200);
    while Instant::now() < until {
        assert!(
            is_echo(&host.get("/app/").await),
            "the deploy was undone by a read"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let from_directory = host.log_lines().into_iter().any(|line| {
        line["droplet"] == "app"
            && line["source"] == "directory"
            && line["message"] == "droplet version published"
    });
    assert!(!from_directory, "the watcher republished unchanged files");

    // New content in the directory is the most recent change: it wins.
    std::fs::write(&module, example_variant("hello", 1)).unwrap();
    poll_until(&host, "/app/", Duration::from_secs(10), is_hello).await;
}
