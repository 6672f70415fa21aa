//! Standard `wasi:http/proxy` components (`examples/proxy-hello`, built
//! with the published `wstd` crate) served unchanged, like droplets.

use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use serde_json::json;

use crate::support::{HostBuilder, TEST_SECRET, admin_request, example_variant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasi_http_component_is_served_like_a_droplet() {
    let host = HostBuilder::new()
        .droplet("web", "proxy-hello")
        .env("JWT_SECRET", TEST_SECRET)
        .start()
        .await;
    let reply = host.get("/web/").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "Hello from a wasi:http component\n");
    let first = reply.header("x-droplet-version").unwrap().to_string();
    assert!(reply.header("x-trace-id").is_some());
    let echoed = host
        .send(
            http::Request::post("/web/echo")
                .body(Bytes::from_static(b"round trip"))
                .unwrap(),
        )
        .await;
    assert_eq!((echoed.status, echoed.text().as_str()), (200, "round trip"));
    assert_eq!(host.get("/web/nowhere").await.status, 404);
    // The contract endpoints and metrics know it.
    let caps = host.get("/web/capabilities").await.json();
    assert_eq!(caps["world"], "wasi:http/proxy");
    assert_eq!(host.get("/web/health").await.json()["status"], "active");
    let metrics = host.get("/metrics").await.text();
    assert!(
        metrics.contains("droplet_requests_total{droplet=\"web\",class=\"2xx\"}"),
        "{metrics}"
    );
    // Hot swap through the admin API.
    let module =
        base64::engine::general_purpose::STANDARD.encode(example_variant("proxy-hello", 1));
    let reply = admin_request(
        &host,
        "PUT",
        "/_admin/droplets/web",
        Some(&json!({ "module": module })),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let swapped = host.get("/web/").await;
    assert_eq!(swapped.status, 200);
    assert_ne!(swapped.header("x-droplet-version"), Some(first.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_and_limits_hold_for_wasi_http_components() {
    let host = HostBuilder::new()
        .droplet_with("web", "proxy-hello", "budget_ms = 300\nmax_body_kb = 1\n")
        // The size limit, without a short budget racing it on a loaded machine.
        .droplet_with(
            "smallweb",
            "proxy-hello",
            "budget_ms = 20000\nmax_body_kb = 1\n",
        )
        .droplet("hello", "hello")
        .start()
        .await;
    // (A body still streaming at the deadline: `conformance`.)
    let started = Instant::now();
    host.get("/web/spin")
        .await
        .assert_error(504, "budget_exceeded");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    // A body over the limit: its head is out before the body is known to
    // be too large, so the body is cut off at the limit, not ended.
    let response = host.open_get("/smallweb/big").await;
    assert_eq!(response.status(), 200);
    let (received, ending) = crate::support::drain(&mut response.into_body()).await;
    assert_eq!(ending, crate::support::Ending::Cut);
    assert!(received.len() <= 16 << 20, "{} bytes", received.len());
    let too_big = host
        .send(
            http::Request::post("/web/echo")
                .body(Bytes::from(vec![b'x'; 4096]))
                .unwrap(),
        )
        .await;
    too_big.assert_error(413, "body_too_large");
    assert_eq!(host.get("/hello/").await.status, 200);
    assert_eq!(host.get("/web/").await.status, 200);
}
