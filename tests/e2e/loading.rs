//! Loading droplets from the directory: bad modules and bad manifests are
//! reported by name and reason and never stop the others from serving.

use std::time::Duration;

use crate::support::{HostBuilder, example};

#[tokio::test]
async fn a_module_added_while_serving_that_fails_to_load_is_503_as_after_a_restart() {
    let host = HostBuilder::new().droplet("hello", "hello").start().await;
    // Written in place while the host watches the directory.
    std::fs::write(host.droplets_dir().join("late.wasm"), b"not a component").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let message = loop {
        let reply = host.get("/late/").await;
        if reply.status == 503 {
            break reply.assert_error(503, "droplet_unavailable");
        }
        assert_eq!(
            reply.status,
            404,
            "before the watcher sees it: {}",
            reply.text()
        );
        assert!(
            std::time::Instant::now() < deadline,
            "never refused: still 404"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(message.contains("late.wasm"), "{message}");
    assert_eq!(host.get("/late/health").await.json()["status"], "error");
    assert_eq!(host.get("/hello/").await.status, 200);
}

#[tokio::test]
async fn corrupt_module_is_503_and_the_others_serve() {
    let mut truncated = example("hello");
    truncated.truncate(truncated.len() / 2);
    let host = HostBuilder::new()
        .droplet("hello", "hello")
        .file("garbage.wasm", b"this is not webassembly".to_vec())
        .file("truncated.wasm", truncated)
        // A core module, not a component.
        .file("core.wasm", b"\0asm\x01\0\0\0".to_vec())
        .start()
        .await;
    for name in ["garbage", "truncated", "core"] {
        let message = host
            .get(&format!("/{name}/"))
            .await
            .assert_error(503, "droplet_unavailable");
        assert!(message.contains(&format!("{name}.wasm")), "{message}");
        assert!(
            !message.contains("/tmp"),
            "no host paths in messages: {message}"
        );
    }
    assert_eq!(host.get("/hello/").await.status, 200);
    let logged = host
        .wait_for_log(
            |line| line["level"] == "ERROR" && line["droplet"] == "garbage",
            Duration::from_secs(5),
        )
        .await
        .expect("load failure logged");
    assert!(
        logged["reason"].as_str().unwrap().contains("garbage.wasm"),
        "{logged}"
    );
}

#[tokio::test]
async fn manifest_with_an_unknown_field_is_a_clear_error() {
    let host = HostBuilder::new()
        .droplet_with("echo", "echo", "budget_ms = 50\nbudgett = 100\n")
        .droplet("hello", "hello")
        .start()
        .await;
    let message = host
        .get("/echo/")
        .await
        .assert_error(503, "droplet_unavailable");
    assert!(message.contains("echo.toml"), "{message}");
    assert!(message.contains("unknown field `budgett`"), "{message}");
    assert_eq!(host.get("/hello/").await.status, 200);
}

#[tokio::test]
async fn manifest_values_out_of_range_are_refused() {
    let host = HostBuilder::new()
        .droplet_with("echo", "echo", "budget_ms = 0\n")
        .start()
        .await;
    let message = host
        .get("/echo/")
        .await
        .assert_error(503, "droplet_unavailable");
    assert!(message.contains("budget_ms"), "{message}");
}

#[tokio::test]
async fn config_values_expand_only_the_host_variables_the_operator_exposes() {
    let with = |name: &str, var: &str| {
        (
            name.to_string(),
            format!("[config]\ngreeting = \"${{{var}}}\"\n"),
        )
    };
    let droplets = [
        with("hello", "DROPLET_CONFIG_GREETING"),
        with("listed", "E2E_GREETING"),
        with("unset", "DROPLET_CONFIG_NOT_SET_ANYWHERE"),
        with("unlisted", "E2E_UNLISTED"),
        with("secret", "JWT_SECRET"),
    ];
    let mut builder = HostBuilder::new();
    for (name, manifest) in &droplets {
        builder = builder.droplet_with(name, "hello", manifest);
    }
    let host = builder
        .env("DROPLET_CONFIG_GREETING", "Howdy")
        .env("E2E_GREETING", "Hiya")
        .env("E2E_UNLISTED", "nope")
        .env("JWT_SECRET", crate::support::TEST_SECRET)
        // Even listed, the host's own secret stays in the host.
        .env("DROPLET_CONFIG_ENV", "E2E_GREETING,JWT_SECRET")
        .start()
        .await;
    assert_eq!(
        host.get("/hello/").await.text(),
        "Howdy from droplet hello! You asked for /\n"
    );
    assert_eq!(
        host.get("/listed/").await.text(),
        "Hiya from droplet hello! You asked for /\n"
    );
    let refused = |path: &'static str| {
        let host = &host;
        async move {
            host.get(path)
                .await
                .assert_error(503, "droplet_unavailable")
        }
    };
    let message = refused("/unset/").await;
    assert!(
        message.contains("${DROPLET_CONFIG_NOT_SET_ANYWHERE}"),
        "{message}"
    );
    let message = refused("/unlisted/").await;
    assert!(
        message.contains("${E2E_UNLISTED}") && message.contains("--config-env"),
        "{message}"
    );
    let message = refused("/secret/").await;
    assert!(
        message.contains("${JWT_SECRET}") && message.contains("host's own secrets"),
        "{message}"
    );
    assert!(!message.contains(crate::support::TEST_SECRET));
}

#[tokio::test]
async fn files_that_are_not_droplet_names_are_skipped() {
    let host = HostBuilder::new()
        .droplet("hello", "hello")
        .droplet("Bad_Name", "hello")
        .droplet("health", "hello")
        .start()
        .await;
    let health = host.get("/health").await.json();
    assert_eq!(health["droplets"], 1);
}

#[tokio::test]
async fn a_broken_module_written_while_stopped_is_refused_at_start_and_the_last_good_one_serves() {
    let data = tempfile::tempdir().unwrap();
    let mut host = HostBuilder::new()
        .droplet("app", "hello")
        .data(data.path())
        .start()
        .await;
    assert_eq!(host.get("/app/").await.status, 200);
    host.signal("TERM");
    host.wait_exit(std::time::Duration::from_secs(10))
        .await
        .expect("host exits");
    drop(host);

    let broken = b"\0asm not really a module".to_vec();
    let host = HostBuilder::new()
        .file("app.wasm", broken)
        .data(data.path())
        .start()
        .await;
    let reply = host.get("/app/").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().starts_with("Hello from droplet hello"));
    let refused = host.log_lines().into_iter().any(|line| {
        line["droplet"] == "app"
            && line["message"]
                .as_str()
                .is_some_and(|m| m.contains("refused"))
    });
    assert!(refused, "the refusal is logged");
}
