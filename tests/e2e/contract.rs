//! The droplet contract, metrics, registration, security headers,
//! production refusals, and the author's new → build → serve loop.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::support::{HostBuilder, TEST_SECRET, claims_with_scope, cli, hs256_token};

#[tokio::test]
async fn contract_endpoints_describe_each_droplet_without_calling_it() {
    let host = HostBuilder::new()
        .droplet_with(
            "hello",
            "hello",
            "capabilities = [\"greet\", \"config\"]\nbudget_ms = 700\n",
        )
        .droplet("kv", "kvstore")
        .start()
        .await;
    assert_eq!(host.get("/hello/").await.status, 200);
    let health = host.get("/hello/health").await;
    assert_eq!(health.status, 200);
    let body = health.json();
    assert_eq!(body["status"], "active");
    assert_eq!(body["droplet"], "hello");
    assert_eq!(
        body["version"].as_str(),
        host.get("/hello/").await.header("x-droplet-version")
    );
    assert!(body["uptime_s"].is_u64());

    let caps = host.get("/hello/capabilities").await.json();
    assert_eq!(caps["capabilities"], json!(["greet", "config"]));
    assert_eq!(caps["granted"], json!(["config"]));
    assert_eq!(caps["budget_ms"], 700);
    assert_eq!(caps["memory_mb"], 64);
    assert_eq!(caps["auth"], "public");
    let imports: Vec<String> = serde_json::from_value(caps["imports"].clone()).unwrap();
    assert!(
        imports
            .iter()
            .any(|import| import.starts_with("fp:droplet/config")),
        "{imports:?}"
    );
    assert!(
        imports.iter().any(|import| import.starts_with("wasi:")),
        "{imports:?}"
    );

    host.send(Request::put("/kv/k/a").body(Bytes::from("12345")).unwrap())
        .await;
    host.get("/kv/k/missing").await;
    let state = host.get("/kv/state").await.json();
    assert_eq!(state["requests"]["2xx"], 1);
    assert_eq!(state["requests"]["4xx"], 1);
    assert_eq!(state["traps"], 0);
    assert_eq!(state["in_flight"], 0);
    assert_eq!(state["kv"]["keys"], 1);
    assert!(state["kv"]["bytes"].as_u64().unwrap() >= 6);
    assert!(state["latency"]["p99_ms"].as_f64().unwrap() > 0.0);
    assert!(state["loaded_at"].is_u64());
}

#[tokio::test]
async fn health_reports_error_after_traps_and_inactive_before_a_lazy_compile() {
    let host = HostBuilder::new()
        .droplet("panic", "panic")
        .file("broken.wasm", b"junk".to_vec())
        .start()
        .await;
    assert_eq!(host.get("/panic/health").await.json()["status"], "active");
    for _ in 0..3 {
        assert_eq!(host.get("/panic/").await.status, 500);
    }
    let health = host.get("/panic/health").await.json();
    assert_eq!(health["status"], "error");
    assert!(health["reason"].as_str().unwrap().contains("trapped"));
    assert_eq!(host.get("/panic/state").await.json()["traps"], 3);
    assert_eq!(host.get("/broken/health").await.json()["status"], "error");

    let lazy = HostBuilder::new()
        .droplet("hello", "hello")
        .arg("--lazy")
        .start()
        .await;
    assert_eq!(lazy.get("/hello/health").await.json()["status"], "inactive");
    assert_eq!(
        lazy.get("/hello/capabilities").await.json()["imports"],
        Value::Null
    );
    lazy.get("/hello/").await;
    assert_eq!(lazy.get("/hello/health").await.json()["status"], "active");
}

#[tokio::test]
async fn state_follows_the_auth_policy_but_health_is_public() {
    let host = HostBuilder::new()
        .droplet_with("secret", "hello", "auth = \"jwt\"\n")
        .env("JWT_SECRET", TEST_SECRET)
        .start()
        .await;
    assert_eq!(host.get("/secret/health").await.status, 200);
    assert_eq!(host.get("/secret/capabilities").await.status, 200);
    host.get("/secret/state")
        .await
        .assert_error(401, "unauthorized");
    let token = hs256_token(&claims_with_scope(""));
    let state = host
        .send(
            Request::get("/secret/state")
                .header("authorization", format!("Bearer {token}"))
                .body(Bytes::new())
                .unwrap(),
        )
        .await;
    assert_eq!(state.status, 200);
}

#[tokio::test]
async fn metrics_are_prometheus_text_and_move_with_traffic() {
    let host = HostBuilder::new()
        .droplet("hello", "hello")
        .droplet_with("spin", "spin", "budget_ms = 20\n")
        .start()
        .await;
    let value = |text: &str, prefix: &str| -> f64 {
        text.lines()
            .find(|line| line.starts_with(prefix))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0.0)
    };
    for _ in 0..3 {
        host.get("/hello/").await;
    }
    host.get("/spin/").await;
    let text = host.get("/metrics").await.text();
    // Every line is a comment or `name{labels} value`.
    for line in text
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
    {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "not Prometheus text: {line}");
    }
    let hello_2xx = "droplet_requests_total{droplet=\"hello\",class=\"2xx\"}";
    assert_eq!(value(&text, hello_2xx), 3.0, "{text}");
    assert_eq!(
        value(&text, "droplet_budget_overruns_total{droplet=\"spin\"}"),
        1.0
    );
    assert_eq!(value(&text, "droplet_droplets_loaded"), 2.0);
    assert!(text.contains("droplet_request_duration_seconds_bucket{droplet=\"hello\""));
    assert!(text.contains("droplet_instantiation_seconds"));
    host.get("/hello/").await;
    assert_eq!(value(&host.get("/metrics").await.text(), hello_2xx), 4.0);
}

#[tokio::test]
async fn every_response_carries_security_headers() {
    let host = HostBuilder::new()
        .droplet("hello", "hello")
        .droplet("echo", "echo")
        .start()
        .await;
    for path in [
        "/hello/",
        "/nope/",
        "/health",
        "/hello/health",
        "/echo/?status=700",
    ] {
        let reply = host.get(path).await;
        assert_eq!(
            reply.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            reply.header("referrer-policy"),
            Some("no-referrer"),
            "{path}"
        );
    }
    assert!(
        host.get("/health")
            .await
            .header("content-security-policy")
            .is_some()
    );
    assert!(
        host.get("/nope/")
            .await
            .header("content-security-policy")
            .is_some()
    );
    assert!(
        host.get("/hello/")
            .await
            .header("content-security-policy")
            .is_none()
    );
}

#[tokio::test]
async fn production_refuses_insecure_setups_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("secret.wasm"),
        crate::support::example("hello"),
    )
    .unwrap();
    std::fs::write(dir.path().join("secret.toml"), "auth = \"jwt\"\n").unwrap();
    let serve = |env: &[(&str, &str)]| {
        let data = tempfile::tempdir().unwrap();
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--no-watch"];
        let (droplets, data_path) = (
            dir.path().to_str().unwrap().to_string(),
            data.path().to_str().unwrap().to_string(),
        );
        args.extend(["--droplets", &droplets, "--data", &data_path]);
        let mut env = env.to_vec();
        env.push(("ENVIRONMENT", "production"));
        let (ok, _, err) = cli(&args, &env);
        (ok, err)
    };
    let (ok, err) = serve(&[]);
    assert!(!ok);
    assert!(
        err.contains("ENVIRONMENT=production") && err.contains("secret") && err.contains("no keys"),
        "{err}"
    );
    let (ok, err) = serve(&[("JWT_SECRET", "short")]);
    assert!(!ok);
    assert!(err.contains("JWT_SECRET is 5 bytes"), "{err}");
}

/// A registry that fails its first `failures` calls, then records each.
async fn registry(failures: usize) -> (String, Arc<Mutex<Vec<Value>>>, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let registered = Arc::new(Mutex::new(Vec::new()));
    let auth = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(Mutex::new(0usize));
    let (registered_, auth_) = (Arc::clone(&registered), Arc::clone(&auth));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (registered, auth, calls) = (
                Arc::clone(&registered_),
                Arc::clone(&auth_),
                Arc::clone(&calls),
            );
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (registered, auth, calls) = (
                        Arc::clone(&registered),
                        Arc::clone(&auth),
                        Arc::clone(&calls),
                    );
                    async move {
                        let header = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let path = req.uri().path().to_string();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let call = {
                            let mut calls = calls.lock().unwrap();
                            *calls += 1;
                            *calls
                        };
                        let status = if call <= failures || path != "/register" {
                            503
                        } else {
                            registered
                                .lock()
                                .unwrap()
                                .push(serde_json::from_slice(&body).unwrap());
                            auth.lock().unwrap().push(header);
                            200
                        };
                        let mut response = hyper::Response::new(Full::new(Bytes::from("{}")));
                        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, registered, auth)
}

#[tokio::test]
async fn droplets_are_registered_once_per_version_after_retries() {
    let (url, registered, auth) = registry(2).await;
    let host = HostBuilder::new()
        .droplet_with("hello", "hello", "id = \"hello-id-7\"\n")
        .env("REGISTRY_URL", &url)
        .env("REGISTRY_TOKEN", "registry-token")
        .env("PUBLIC_URL", "https://droplets.example.com")
        .start()
        .await;
    // Serving never waits for the registry.
    assert_eq!(host.get("/hello/").await.status, 200);
    let wait_for = |count: usize| {
        let registered = Arc::clone(&registered);
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while registered.lock().unwrap().len() < count {
                assert!(
                    std::time::Instant::now() < deadline,
                    "not registered in time"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for(1).await;
    let first = registered.lock().unwrap()[0].clone();
    assert_eq!(first["id"], "hello-id-7");
    assert_eq!(first["name"], "hello");
    assert_eq!(first["endpoint"], "https://droplets.example.com/hello");
    assert_eq!(auth.lock().unwrap()[0], "Bearer registry-token");
    let retries = host
        .wait_for_log_count(
            |line| line["message"] == "registration failed; retrying",
            2,
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(retries, 2);

    // A new version is registered too, once.
    std::fs::write(
        host.droplets_dir().join("hello.toml"),
        "id = \"hello-id-7\"\nbudget_ms = 900\n",
    )
    .unwrap();
    wait_for(2).await;
    // Nothing more may arrive: the registrar is told once per version, and
    // a retry would come 250 ms after a failure (the registry answered
    // this one at once). 300 ms covers the first retry period; a longer
    // wait could only find more registrations, never fewer.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let registered = registered.lock().unwrap().clone();
    assert_eq!(registered.len(), 2, "{registered:?}");
    assert_ne!(registered[0]["version"], registered[1]["version"]);
}

#[tokio::test]
async fn new_then_build_then_the_running_host_serves_it() {
    let host = HostBuilder::new().start().await;
    let work = tempfile::tempdir().unwrap();
    let crate_dir = work.path().join("greeter");
    let (ok, out, err) = cli(
        &["new", "greeter", "--path", crate_dir.to_str().unwrap()],
        &[],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("next: droplet build"), "{out}");
    assert!(crate_dir.join("src/lib.rs").exists() && crate_dir.join("greeter.toml").exists());
    // The crate carries everything it needs: moved elsewhere, it still builds.
    let moved = work.path().join("elsewhere");
    std::fs::create_dir(&moved).unwrap();
    let crate_dir = moved.join("greeter");
    std::fs::rename(work.path().join("greeter"), &crate_dir).unwrap();
    let lock_before = std::fs::read_to_string(crate_dir.join("Cargo.lock")).unwrap();
    // Built where every droplet crate of the user is (one shared cache,
    // here under a cache home kept across runs), never the workspace's
    // target (which `cargo test` holds locked).
    let cache_home =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("droplet-cache-home");
    let build = || {
        cli(
            &[
                "build",
                crate_dir.to_str().unwrap(),
                "--droplets",
                host.droplets_dir().to_str().unwrap(),
            ],
            &[("XDG_CACHE_HOME", cache_home.to_str().unwrap())],
        )
    };
    // The scaffold's own test runs natively with `cargo test` and passes.
    let said = cargo_test(&crate_dir, &cache_home);
    assert!(said.contains("greets_and_counts_visits ... ok"), "{said}");
    let (ok, out, err) = build();
    assert!(ok, "droplet build failed:\n{out}\n{err}");
    assert!(
        cache_home
            .join("droplet/target/wasm32-wasip2/release/greeter.wasm")
            .exists(),
        "not built in the shared directory"
    );
    // The first build kept the SDK's tested dependency versions.
    let locked = |lock: &str| -> Vec<(String, String)> {
        let lock: toml::Table = lock.parse().unwrap();
        let mut packages: Vec<_> = lock["package"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].to_string(), p["version"].to_string()))
            .collect();
        packages.sort();
        packages
    };
    let lock_after = std::fs::read_to_string(crate_dir.join("Cargo.lock")).unwrap();
    assert_eq!(locked(&lock_before), locked(&lock_after));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let reply = loop {
        let reply = host.get("/greeter/hi").await;
        if reply.status == 200 || std::time::Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["path"], "/hi");
    assert_eq!(reply.json()["visits"], 1);
    assert_eq!(host.get("/greeter/").await.json()["visits"], 2);

    // A manifest that does not grant what the code imports: refused by
    // `droplet build` with the host's own words, and nothing is copied.
    std::fs::write(crate_dir.join("greeter.toml"), "capabilities = []\n").unwrap();
    let (ok, out, err) = build();
    assert!(!ok, "{out}");
    assert!(
        err.contains("the host would refuse greeter")
            && err.contains("which its manifest does not grant: add \"kv\" to"),
        "{err}"
    );
    assert_eq!(
        host.get("/greeter/").await.json()["visits"],
        3,
        "the built version serves on"
    );

    // A droplet whose first version the host refuses answers 503 with the
    // reason, not 404.
    std::fs::write(
        host.droplets_dir().join("fresh.toml"),
        "capabilities = []\n",
    )
    .unwrap();
    std::fs::write(
        host.droplets_dir().join("fresh.wasm"),
        crate::support::example("kvstore"),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let reply = loop {
        let reply = host.get("/fresh/").await;
        if reply.status != 404 || std::time::Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let message = reply.assert_error(503, "droplet_unavailable");
    assert!(message.contains("does not grant"), "{message}");

    // Not a droplet crate: a clear error.
    let (ok, _, err) = cli(&["build", work.path().to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(err.contains("no Cargo.toml"), "{err}");
}

/// Runs `cargo test` in the droplet crate at `crate_dir` (natively, built
/// in the shared droplet cache under `cache_home`), fails unless it passes,
/// and returns what it printed.
fn cargo_test(crate_dir: &std::path::Path, cache_home: &std::path::Path) -> String {
    let tested = std::process::Command::new(env!("CARGO"))
        .args(["test", "--manifest-path"])
        .arg(crate_dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", cache_home.join("droplet/target"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&tested.stdout).into_owned();
    assert!(
        tested.status.success(),
        "cargo test of {} failed:\n{said}\n{}",
        crate_dir.display(),
        String::from_utf8_lossy(&tested.stderr)
    );
    said
}

/// Every template `droplet new` offers passes its own `cargo test` as
/// scaffolded, and builds into a droplet the host serves: a static site,
/// a proxy to that site, and a scheduled task the host runs.
#[tokio::test]
async fn every_template_tests_builds_and_serves() {
    let host = HostBuilder::new().start().await;
    let work = tempfile::tempdir().unwrap();
    let cache_home =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("droplet-cache-home");
    for (name, template) in [
        ("site", "static"),
        ("front", "proxy"),
        ("ticker", "scheduled"),
    ] {
        let crate_dir = work.path().join(name);
        let (ok, out, err) = cli(
            &[
                "new",
                name,
                "--template",
                template,
                "--path",
                crate_dir.to_str().unwrap(),
            ],
            &[],
        );
        assert!(ok, "{out}{err}");
        if name == "front" {
            // The proxy's upstream: the site, through the host itself.
            let origin = format!("http://{}", host.addr());
            std::fs::write(
                crate_dir.join("front.toml"),
                format!(
                    "capabilities = [\"config\"]\nallowed_outbound_hosts = [\"{origin}\"]\n\
                     [config]\nupstream = \"{origin}/site\"\n"
                ),
            )
            .unwrap();
        }
        if name == "ticker" {
            // Every second rather than every minute, as scaffolded.
            let manifest = crate_dir.join("ticker.toml");
            let scaffolded = std::fs::read_to_string(&manifest).unwrap();
            let every_second = scaffolded.replace("cron = \"* * * * *\"", "cron = \"* * * * * *\"");
            assert_ne!(scaffolded, every_second, "the template's cron moved");
            std::fs::write(&manifest, every_second).unwrap();
        }
        cargo_test(&crate_dir, &cache_home);
        let (ok, out, err) = cli(
            &[
                "build",
                crate_dir.to_str().unwrap(),
                "--droplets",
                host.droplets_dir().to_str().unwrap(),
            ],
            &[("XDG_CACHE_HOME", cache_home.to_str().unwrap())],
        );
        assert!(
            ok,
            "droplet build of the {template} template failed:\n{out}\n{err}"
        );
    }
    for path in ["/site/", "/front/"] {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let reply = loop {
            let reply = host.get(path).await;
            if reply.status == 200 || std::time::Instant::now() > deadline {
                break reply;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert!(
            reply.text().contains("Served by a droplet"),
            "{path}: {}",
            reply.text()
        );
        assert_eq!(
            reply.header("content-type"),
            Some("text/html; charset=utf-8")
        );
    }
    assert_eq!(
        host.get("/front/").await.header("x-proxied-by"),
        Some("droplet")
    );
    // The schedule runs without a request; from outside, its task is refused.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = host.get("/ticker/").await.json();
        if status["runs_last_hour"].as_u64().unwrap_or(0) >= 2 {
            assert!(status["last"].is_string(), "{status}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "ticker: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let outside = host
        .send(
            Request::post("/ticker/tasks/tick")
                .body(Bytes::new())
                .unwrap(),
        )
        .await;
    assert_eq!(outside.status, 403, "{}", outside.text());
}

/// While the registry is down, a newer version replaces an older one still
/// being retried: the registry ends up with the newest version only, never
/// an older one after it.
#[tokio::test]
async fn the_latest_version_wins_the_registration() {
    let (url, registered, _) = registry(3).await;
    let host = HostBuilder::new()
        .droplet("hello", "hello")
        .env("REGISTRY_URL", &url)
        .start()
        .await;
    host.wait_for_log(
        |line| line["message"] == "registration failed; retrying",
        Duration::from_secs(10),
    )
    .await
    .expect("the first attempt failed");
    std::fs::write(host.droplets_dir().join("hello.toml"), "budget_ms = 900\n").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let newest = loop {
        let reply = host.get("/hello/").await;
        let version = reply.header("x-droplet-version").unwrap_or("").to_string();
        if version.starts_with('2') || std::time::Instant::now() > deadline {
            break version;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    while registered.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "never registered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The first version's retries (250 ms, 500 ms, 1 s apart) would have
    // landed by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let registered = registered.lock().unwrap().clone();
    assert_eq!(registered.len(), 1, "{registered:?}");
    assert_eq!(registered[0]["version"], newest.as_str(), "{registered:?}");
}
