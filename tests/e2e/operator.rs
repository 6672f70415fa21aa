//! What an operator and a droplet's caller see at the edges: clear start-up
//! refusals, a start-up line that says what is on, metrics and health that
//! agree with the droplet table, and droplet errors in the host's shape.

use bytes::Bytes;
use http::Request;
use serde_json::json;

use crate::support::{HostBuilder, TEST_SECRET, cli};

/// `droplet serve` arguments for a host on `listen` with its own empty
/// droplets directory and data directory `data`.
fn serve_args(listen: &str, droplets: &std::path::Path, data: &std::path::Path) -> Vec<String> {
    vec![
        "serve".into(),
        "--listen".into(),
        listen.into(),
        "--no-watch".into(),
        "--droplets".into(),
        droplets.display().to_string(),
        "--data".into(),
        data.display().to_string(),
    ]
}

fn run_serve(args: &[String]) -> (bool, String, String) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cli(&args, &[])
}

#[tokio::test]
async fn a_second_host_on_a_taken_port_names_the_address_before_loading_anything() {
    let host = HostBuilder::new().droplet("hello", "hello").start().await;
    let (droplets, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(
        droplets.path().join("hello.wasm"),
        crate::support::example("hello"),
    )
    .unwrap();
    let addr = host.addr().to_string();
    let (ok, out, err) = run_serve(&serve_args(&addr, droplets.path(), data.path()));
    assert!(!ok, "the second host started: {out}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(
        !out.contains("droplets loaded"),
        "it loaded droplets first: {out}"
    );
}

#[tokio::test]
async fn a_second_host_on_the_same_data_directory_is_refused_with_the_reason() {
    let data = tempfile::tempdir().unwrap();
    let _first = HostBuilder::new()
        .droplet("hello", "hello")
        .data(data.path())
        .start()
        .await;
    let droplets = tempfile::tempdir().unwrap();
    let (ok, out, err) = run_serve(&serve_args("127.0.0.1:0", droplets.path(), data.path()));
    assert!(!ok, "the second host started: {out}");
    assert!(
        err.contains("another droplet host is using the data directory"),
        "{err}"
    );
}

#[tokio::test]
async fn the_start_up_line_says_what_is_enabled() {
    let host = HostBuilder::new()
        .droplet("hello", "hello")
        .env("JWT_SECRET", TEST_SECRET)
        .start()
        .await;
    let line = host
        .log_lines()
        .into_iter()
        .find(|line| {
            line["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("listening on"))
        })
        .expect("the listening line");
    assert_eq!(line["droplets"], 1);
    assert_eq!(line["kv_backend"], "sled");
    assert_eq!(line["jwt_keys"], true);
    assert_eq!(line["admin_api"], true);
    assert!(line["dotenv"].is_null(), "the tests read no .env: {line}");
}

#[tokio::test]
async fn metrics_leave_out_a_removed_droplet() {
    let host = HostBuilder::new()
        .droplet("hello", "hello")
        .droplet("gone", "hello")
        .env("JWT_SECRET", TEST_SECRET)
        .start()
        .await;
    assert_eq!(host.get("/hello/").await.status, 200);
    assert_eq!(host.get("/gone/").await.status, 200);
    let metrics = host.get("/metrics").await.text();
    assert!(metrics.contains("droplet=\"gone\""), "{metrics}");
    let removed =
        crate::support::admin_request(&host, "DELETE", "/_admin/droplets/gone", None).await;
    assert_eq!(removed.status, 200, "{}", removed.text());
    let metrics = host.get("/metrics").await.text();
    assert!(!metrics.contains("droplet=\"gone\""), "{metrics}");
    assert!(metrics.contains("droplet=\"hello\""), "{metrics}");
}

#[tokio::test]
async fn health_and_state_give_one_verdict() {
    let host = HostBuilder::new()
        .droplet_with("spin", "spin", "budget_ms = 20\n")
        .start()
        .await;
    assert_eq!(host.get("/spin/health").await.json()["status"], "active");
    assert_eq!(host.get("/spin/state").await.json()["status"], "active");
    for _ in 0..4 {
        assert_eq!(host.get("/spin/").await.status, 504);
    }
    let health = host.get("/spin/health").await.json();
    let state = host.get("/spin/state").await.json();
    assert_eq!(health["status"], "error", "{health}");
    assert_eq!(state["status"], health["status"], "{state}");
    // Milliseconds to the microsecond, without float noise.
    let p50 = state["latency"]["p50_ms"].as_f64().unwrap();
    assert_eq!((p50 * 1e3).round() / 1e3, p50, "{state}");
}

#[tokio::test]
async fn droplet_errors_have_the_hosts_shape_and_say_why_a_token_failed() {
    let host = HostBuilder::new()
        .droplet("todo", "todo")
        .env("JWT_SECRET", TEST_SECRET)
        .start()
        .await;
    let post = |token: Option<&str>| {
        let mut request = Request::post("/todo/todos");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request
            .body(Bytes::from(json!({"title": "x"}).to_string()))
            .unwrap()
    };
    let missing = host.send(post(None)).await;
    let message = missing.assert_error(401, "unauthorized");
    assert!(message.contains("needs a bearer token"), "{message}");
    assert_eq!(
        missing.json()["error"]["trace_id"].as_str(),
        missing.header("x-trace-id"),
        "the droplet's error carries the request's trace id"
    );
    let forged = host.send(post(Some("not.a.token"))).await;
    let message = forged.assert_error(401, "unauthorized");
    assert!(message.contains("invalid"), "{message}");
}

/// The access lines a host wrote so far, by trace id.
fn access_lines(host: &crate::support::Host) -> Vec<serde_json::Value> {
    host.log_lines()
        .into_iter()
        .filter(|line| line["target"] == "droplet::access")
        .collect()
}

#[tokio::test]
async fn the_access_log_keeps_what_the_operator_chose() {
    for (mode, sample) in [("errors", None), ("sampled", Some("5")), ("off", None)] {
        let mut builder = HostBuilder::new()
            .droplet("echo", "echo")
            .arg("--access-log")
            .arg(mode);
        if let Some(sample) = sample {
            builder = builder.env("DROPLET_ACCESS_LOG_SAMPLE", sample);
        }
        let host = builder.start().await;
        for _ in 0..20 {
            assert_eq!(host.get("/echo/").await.status, 200);
        }
        let failed = host.get("/echo/?status=503").await;
        assert_eq!(failed.status, 503);
        let trace = failed.header("x-trace-id").unwrap_or_default().to_string();
        // A marker request, then wait for its line (or, with the log off,
        // for the guest line of the same request) so every earlier line is in.
        let marker = host.get("/echo/?status=404").await;
        let marker_trace = marker.header("x-trace-id").unwrap_or_default().to_string();
        host.wait_for_log(
            |line| line["trace_id"] == marker_trace.as_str(),
            std::time::Duration::from_secs(5),
        )
        .await
        .expect("the marker request's lines");
        let lines = access_lines(&host);
        let ok = lines
            .iter()
            .filter(|line| line["status_code"] == 200)
            .count();
        let errors_logged = lines
            .iter()
            .any(|line| line["trace_id"] == trace.as_str() && line["status_code"] == 503);
        match mode {
            "errors" => {
                assert_eq!(ok, 0, "{mode}: {lines:?}");
                assert!(errors_logged, "{mode}: {lines:?}");
            }
            "sampled" => {
                assert_eq!(ok, 4, "{mode}: one in 5 of 20: {lines:?}");
                assert!(errors_logged, "{mode}: errors always: {lines:?}");
            }
            _ => assert!(lines.is_empty(), "{mode}: {lines:?}"),
        }
    }
}

#[tokio::test]
async fn an_unsupported_otlp_protocol_is_refused_at_start_with_the_reason() {
    let (droplets, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let args = serve_args("127.0.0.1:0", droplets.path(), data.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = cli(
        &args,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ],
    );
    assert!(!ok, "the host started: {out}");
    assert!(
        err.contains("OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported")
            && err.contains("http/protobuf"),
        "{err}"
    );
}

#[tokio::test]
async fn a_warm_slot_count_that_is_not_a_number_is_refused_at_start() {
    let (droplets, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut args = serve_args("127.0.0.1:0", droplets.path(), data.path());
    args.extend(["--warm-slots".to_string(), "lots".to_string()]);
    let (ok, out, err) = run_serve(&args);
    assert!(!ok, "the host started: {out}");
    assert!(
        err.contains("--warm-slots") && err.contains("lots"),
        "{err}"
    );

    let args = serve_args("127.0.0.1:0", droplets.path(), data.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = cli(&args, &[("DROPLET_WARM_SLOTS", "-1")]);
    assert!(!ok, "the host started: {out}");
    assert!(err.contains("--warm-slots") && err.contains("-1"), "{err}");
}
