//! The admin API and the CLI that drives it.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::Request;
use serde_json::{Value, json};

use crate::support::{
    GENEROUS, Host, HostBuilder, TEST_SECRET, claims_with_scope, cli, example, hs256_token,
};

fn admin_token() -> String {
    hs256_token(&claims_with_scope("droplets:admin"))
}

/// A deploy of `module` with `manifest`, given a budget no load can
/// overrun unless it sets its own.
fn deploy_body(module: &[u8], manifest: Option<&str>) -> Value {
    json!({
        "module": base64::engine::general_purpose::STANDARD.encode(module),
        "manifest": manifest.map(generous),
    })
}

fn generous(manifest: &str) -> String {
    if manifest.contains("budget_ms") {
        manifest.to_string()
    } else {
        format!("{GENEROUS}{manifest}")
    }
}

async fn admin(
    host: &Host,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> crate::support::Reply {
    crate::support::admin_request(host, method, path, body.as_ref()).await
}

async fn admin_host() -> Host {
    HostBuilder::new()
        .droplet("hello", "hello")
        .env("JWT_SECRET", TEST_SECRET)
        .start()
        .await
}

#[tokio::test]
async fn admin_api_is_disabled_without_keys_and_says_how_to_enable_it() {
    let host = HostBuilder::new().droplet("hello", "hello").start().await;
    let message = host
        .get("/_admin/droplets")
        .await
        .assert_error(403, "forbidden");
    assert!(
        message.contains("JWT_SECRET") && message.contains("droplets:admin"),
        "{message}"
    );
}

#[tokio::test]
async fn an_unknown_admin_route_is_404_not_found_and_droplets_keep_answering() {
    let host = admin_host().await;
    let message = admin(&host, "GET", "/_admin/nope", None)
        .await
        .assert_error(404, "not_found");
    assert!(message.contains("no admin endpoint"), "{message}");
    admin(&host, "GET", "/_admin/droplets/hello/nope", None)
        .await
        .assert_error(404, "not_found");
    // A known route with the wrong method is still a bad request.
    admin(&host, "POST", "/_admin/droplets", None)
        .await
        .assert_error(400, "bad_request");
    assert_eq!(host.get("/hello/").await.status, 200);
}

#[tokio::test]
async fn admin_api_needs_a_token_with_the_admin_scope() {
    let host = admin_host().await;
    host.get("/_admin/droplets")
        .await
        .assert_error(401, "unauthorized");
    let reader = hs256_token(&claims_with_scope("todo:read"));
    let reply = host
        .send(
            Request::get("/_admin/droplets")
                .header("authorization", format!("Bearer {reader}"))
                .body(Bytes::new())
                .unwrap(),
        )
        .await;
    reply.assert_error(403, "forbidden");
    let listed = admin(&host, "GET", "/_admin/droplets", None).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json()["droplets"][0]["name"], "hello");
    assert_eq!(listed.json()["droplets"][0]["state"], "active");
}

#[tokio::test]
async fn deploy_update_rollback_and_remove_through_the_admin_api() {
    let host = admin_host().await;
    // A new droplet.
    let created = admin(
        &host,
        "PUT",
        "/_admin/droplets/app",
        Some(deploy_body(
            &example("hello"),
            Some("[config]\ngreeting = \"One\"\n"),
        )),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let v1 = created.json()["version"].as_str().unwrap().to_string();
    let reply = host.get("/app/").await;
    assert!(
        reply.text().starts_with("One from droplet hello"),
        "{}",
        reply.text()
    );
    assert_eq!(reply.header("x-droplet-version"), Some(v1.as_str()));
    // The same module and manifest again: nothing changes.
    let same = admin(
        &host,
        "PUT",
        "/_admin/droplets/app",
        Some(deploy_body(
            &example("hello"),
            Some("[config]\ngreeting = \"One\"\n"),
        )),
    )
    .await;
    assert_eq!(same.json()["changed"], false);
    assert_eq!(same.json()["version"], v1.as_str());
    // A manifest change alone is a new version.
    let updated = admin(
        &host,
        "PUT",
        "/_admin/droplets/app",
        Some(json!({"manifest": generous("[config]\ngreeting = \"Two\"\n")})),
    )
    .await;
    assert_eq!(updated.status, 200, "{}", updated.text());
    let v2 = updated.json()["version"].as_str().unwrap().to_string();
    assert_ne!(v1, v2);
    assert!(host.get("/app/").await.text().starts_with("Two from"));
    // A module that does not load is refused; v2 keeps serving.
    let refused = admin(
        &host,
        "PUT",
        "/_admin/droplets/app",
        Some(deploy_body(b"garbage", None)),
    )
    .await;
    let message = refused.assert_error(400, "bad_request");
    assert!(message.contains("app.wasm"), "{message}");
    let refused = admin(
        &host,
        "PUT",
        "/_admin/droplets/app",
        Some(json!({"manifest": "budget_ms = \"fast\"\n"})),
    )
    .await;
    refused.assert_error(400, "bad_request");
    // A version that compiles but whose instance cannot be made (its
    // initial memory is over memory_mb) is refused with the reason, not
    // published to answer 500 on every request.
    let refused = admin(
        &host,
        "PUT",
        "/_admin/droplets/app",
        Some(json!({"manifest": "memory_mb = 1\n"})),
    )
    .await;
    let message = refused.assert_error(400, "bad_request");
    assert!(message.contains("instance cannot be made"), "{message}");
    assert!(host.get("/app/").await.text().starts_with("Two from"));
    // Detail lists the versions, newest first.
    let detail = admin(&host, "GET", "/_admin/droplets/app", None)
        .await
        .json();
    assert_eq!(detail["version"], v2.as_str());
    assert_eq!(detail["versions"], json!([v2.clone(), v1.clone()]));
    // Roll back to v1, then there is nothing older.
    let rolled = admin(&host, "POST", "/_admin/droplets/app/rollback", None).await;
    assert_eq!(rolled.json()["version"], v1.as_str());
    let reply = host.get("/app/").await;
    assert!(reply.text().starts_with("One from"));
    assert_eq!(reply.header("x-droplet-version"), Some(v1.as_str()));
    admin(&host, "POST", "/_admin/droplets/app/rollback", None)
        .await
        .assert_error(400, "bad_request");
    // Remove it.
    let removed = admin(&host, "DELETE", "/_admin/droplets/app", None).await;
    assert_eq!(removed.status, 200);
    host.get("/app/")
        .await
        .assert_error(404, "droplet_not_found");
    admin(&host, "DELETE", "/_admin/droplets/app", None)
        .await
        .assert_error(404, "droplet_not_found");
    assert_eq!(host.get("/hello/").await.status, 200);
}

#[tokio::test]
async fn deploy_body_over_the_limit_is_413() {
    let host = HostBuilder::new()
        .env("JWT_SECRET", TEST_SECRET)
        .arg("--admin-max-body-mb")
        .arg("1")
        .start()
        .await;
    // The host refuses on the declared length, before reading a byte: the
    // request head alone gets the answer. (Sending the whole body as well
    // races the host's close against the client's writes: on a busy
    // machine the client can see its write fail before it reads the 413.)
    let big = deploy_body(&vec![0u8; 1 << 20], None).to_string();
    let token = crate::support::hs256_token(&crate::support::claims_with_scope("droplets:admin"));
    let head = format!(
        "PUT /_admin/droplets/big HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        host.addr(),
        big.len()
    );
    let response = host.raw(head.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(
        response.contains(r#""code":"body_too_large""#),
        "{response}"
    );
}

#[tokio::test]
async fn deploys_survive_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let start = || {
        HostBuilder::new()
            .env("JWT_SECRET", TEST_SECRET)
            .data(data.path())
            .start()
    };
    let mut host = start().await;
    let created = admin(
        &host,
        "PUT",
        "/_admin/droplets/app",
        Some(deploy_body(
            &example("hello"),
            Some("[config]\ngreeting = \"Kept\"\n"),
        )),
    )
    .await;
    let version = created.json()["version"].as_str().unwrap().to_string();
    host.signal("TERM");
    host.wait_exit(Duration::from_secs(10))
        .await
        .expect("host exits");
    let host = start().await;
    let reply = host.get("/app/").await;
    assert!(reply.text().starts_with("Kept from"), "{}", reply.text());
    assert_eq!(reply.header("x-droplet-version"), Some(version.as_str()));
}

#[tokio::test]
async fn cli_mints_tokens_and_deploys_lists_rolls_back_and_removes() {
    let host = admin_host().await;
    let (ok, token, err) = cli(
        &["token", "--scope", "droplets:admin", "--ttl", "10m"],
        &[("JWT_SECRET", TEST_SECRET)],
    );
    assert!(ok, "{err}");
    let token = token.trim().to_string();
    let url = host.url();
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("hello.wasm");
    std::fs::write(&module, example("hello")).unwrap();
    let manifest = dir.path().join("hello.toml");
    std::fs::write(
        &manifest,
        format!("{GENEROUS}[config]\ngreeting = \"Cli\"\n"),
    )
    .unwrap();
    let env = [("DROPLET_TOKEN", token.as_str())];

    let (ok, out, err) = cli(
        &["deploy", "app", module.to_str().unwrap(), "--host", &url],
        &env,
    );
    assert!(ok, "{err}");
    assert!(out.contains("app deployed"), "{out}");
    let (ok, out, err) = cli(
        &[
            "deploy",
            "app",
            module.to_str().unwrap(),
            "--manifest",
            manifest.to_str().unwrap(),
            "--host",
            &url,
        ],
        &env,
    );
    assert!(ok, "{err}");
    assert!(
        host.get("/app/").await.text().starts_with("Cli from"),
        "{out}"
    );
    // A redeploy without --manifest keeps the current manifest (it never
    // silently resets `auth` or `[config]` to the defaults), and says so.
    let (ok, out, err) = cli(
        &["deploy", "app", module.to_str().unwrap(), "--host", &url],
        &env,
    );
    assert!(ok, "{err}");
    assert!(out.contains("manifest, kept"), "{out}");
    assert!(host.get("/app/").await.text().starts_with("Cli from"));
    let (ok, out, err) = cli(&["list", "--host", &url], &env);
    assert!(ok, "{err}");
    assert!(
        out.contains("NAME") && out.contains("app") && out.contains("hello"),
        "{out}"
    );
    let (ok, out, err) = cli(&["rollback", "app", "--host", &url], &env);
    assert!(ok, "{err}");
    assert!(out.contains("rolled back"), "{out}");
    assert!(host.get("/app/").await.text().starts_with("Hello from"));
    // The defaults only when asked for.
    let (ok, out, err) = cli(
        &[
            "deploy",
            "app",
            module.to_str().unwrap(),
            "--manifest",
            manifest.to_str().unwrap(),
            "--host",
            &url,
        ],
        &env,
    );
    assert!(ok && out.contains("hello.toml"), "{out}{err}");
    assert!(host.get("/app/").await.text().starts_with("Cli from"));
    let (ok, out, err) = cli(
        &[
            "deploy",
            "app",
            module.to_str().unwrap(),
            "--default-manifest",
            "--host",
            &url,
        ],
        &env,
    );
    assert!(ok && out.contains("the default manifest"), "{out}{err}");
    assert!(host.get("/app/").await.text().starts_with("Hello from"));
    let (ok, out, err) = cli(&["rm", "app", "--host", &url], &env);
    assert!(ok, "{err}");
    assert!(out.contains("app removed"), "{out}");
    // Errors are the host's own words, and a non-zero exit.
    let (ok, _, err) = cli(&["rm", "app", "--host", &url], &env);
    assert!(!ok);
    assert!(
        err.contains("404") && err.contains("no droplet named `app`"),
        "{err}"
    );
    let (ok, _, err) = cli(&["list", "--host", &url], &[]);
    assert!(!ok);
    assert!(err.contains("401"), "{err}");
    // Every error is one line of what happened and one of what to do,
    // with a documented exit code, and no backtrace unless asked for.
    let run = |args: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_droplet"));
        crate::support::isolate(&mut command)
            .args(args)
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap()
    };
    let output = run(&["rollback", "app", "--host", &url]);
    let err = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(output.status.code(), Some(3), "{err}");
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with("error: the host answered 401"),
        "{err}"
    );
    assert!(lines[1].contains("--token or DROPLET_TOKEN"), "{err}");
    let output = run(&["list", "--host", "http://127.0.0.1:9"]);
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(7), "{err}");
    assert!(
        err.contains("hint: is `droplet serve` running there?"),
        "{err}"
    );
    let output = run(&["rollback", "app", "--host", &url, "--backtrace"]);
    assert!(String::from_utf8_lossy(&output.stderr).lines().count() > 2);
}

#[test]
fn dotenv_is_read_from_the_working_directory_only_and_can_be_turned_off() {
    use std::process::Command;

    let parent = tempfile::tempdir().unwrap();
    std::fs::write(
        parent.path().join(".env"),
        format!("JWT_SECRET={TEST_SECRET}\n"),
    )
    .unwrap();
    let child = parent.path().join("child");
    std::fs::create_dir(&child).unwrap();
    let token = |dir: &std::path::Path, dotenv: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_droplet"));
        crate::support::isolate(&mut command).current_dir(dir);
        if dotenv {
            command.env_remove("DROPLET_NO_DOTENV");
        }
        crate::support::run_cli(&mut command, &["token", "--scope", "x"])
    };
    let (ok, out, err) = token(parent.path(), true);
    assert!(ok && out.trim().split('.').count() == 3, "{out}{err}");
    // Not from a parent directory…
    let (ok, _, err) = token(&child, true);
    assert!(!ok && err.contains("JWT_SECRET"), "{err}");
    // …and not at all with DROPLET_NO_DOTENV set.
    let (ok, _, err) = token(parent.path(), false);
    assert!(!ok && err.contains("JWT_SECRET"), "{err}");
}

/// Sends `head` (and nothing more) on a new connection and returns the
/// status line of the answer, or `None` if none came within `within`.
async fn status_line_for(host: &Host, head: String, within: Duration) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(host.addr()).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = async {
        let mut buffer = [0u8; 1024];
        while !answer.windows(2).any(|w| w == b"\r\n") {
            let n = stream.read(&mut buffer).await.ok()?;
            if n == 0 {
                return None;
            }
            answer.extend_from_slice(&buffer[..n]);
        }
        Some(())
    };
    tokio::time::timeout(within, read).await.ok()??;
    let text = String::from_utf8_lossy(&answer).into_owned();
    text.lines().next().map(str::to_string)
}

#[tokio::test]
async fn deploy_bodies_declared_too_large_are_refused_at_once_and_trickled_ones_time_out() {
    let host = HostBuilder::new()
        .env("JWT_SECRET", TEST_SECRET)
        .arg("--admin-max-body-mb")
        .arg("1")
        .arg("--body-timeout-s")
        .arg("1")
        .start()
        .await;
    let head = |length: usize| {
        format!(
            "PUT /_admin/droplets/big HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\
             content-type: application/json\r\ncontent-length: {length}\r\n\r\n{{\"mod",
            admin_token()
        )
    };
    // Declared over the limit: 413 before a byte of the body is read.
    let line = status_line_for(&host, head(64 << 20), Duration::from_secs(5)).await;
    assert!(
        line.as_deref().is_some_and(|l| l.contains(" 413 ")),
        "{line:?}"
    );
    // Within the limit but never finished: refused once the timeout passes.
    let line = status_line_for(&host, head(1000), Duration::from_secs(10)).await;
    assert!(
        line.as_deref().is_some_and(|l| l.contains(" 400 ")),
        "{line:?}"
    );
    // The host serves on.
    let listed = admin(&host, "GET", "/_admin/droplets", None).await;
    assert_eq!(listed.status, 200);
}
