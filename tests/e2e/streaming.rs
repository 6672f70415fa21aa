//! Streaming in our own world (`fp:droplet/streaming`, WIT 0.2.1):
//! `examples/sse` sends server-sent events as it writes them, echoes a
//! request body piece by piece, and counts an upload it never holds whole;
//! and a component built with the 0.2.0 SDK still loads and serves.

use bytes::Bytes;
use http::Request;

use crate::support::{
    Ending, HostBuilder, assert_duplex_echo, assert_events_as_written, drain, fixture,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_droplets_events_reach_the_client_as_it_writes_them() {
    let host = HostBuilder::new().droplet("sse", "sse").start().await;
    assert_events_as_written(&host, "/sse/events").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_droplet_echoes_a_body_while_it_is_still_arriving() {
    let host = HostBuilder::new().droplet("sse", "sse").start().await;
    assert_duplex_echo(&host, "/sse/echo").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_read_in_pieces_under_the_body_limit() {
    let host = HostBuilder::new()
        .droplet_with("sse", "sse", "max_body_kb = 4096\n")
        .start()
        .await;
    let upload = Bytes::from(vec![b'u'; 3 << 20]);
    let reply = host
        .send(Request::post("/sse/count").body(upload).unwrap())
        .await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (200, "3145728 bytes\n")
    );
    // Declared over the limit: refused before the droplet runs (and
    // before a byte of it is read, so none is sent).
    let raw = host
        .raw(b"POST /sse/count HTTP/1.1\r\nhost: test\r\ncontent-length: 5242880\r\nconnection: close\r\n\r\n")
        .await;
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(raw.contains("body_too_large"), "{raw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_response_is_cut_off_when_its_budget_ends() {
    let host = HostBuilder::new()
        .droplet_with("sse", "sse", "budget_ms = 450\n")
        .start()
        .await;
    let response = host.open_get("/sse/events").await;
    assert_eq!(response.status(), 200);
    let (received, ending) = drain(&mut response.into_body()).await;
    // Event 2 comes 600 ms in: past the budget, so the body is cut, not
    // ended as if whole.
    assert_eq!(
        ending,
        Ending::Cut,
        "{}",
        String::from_utf8_lossy(&received)
    );
    assert!(received.starts_with(b"data: event 0\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_built_with_the_previous_sdk_still_serves() {
    let old = std::fs::read(fixture("echo-sdk-0.2.0.wasm")).unwrap();
    let host = HostBuilder::new()
        .file("old.wasm", old)
        .droplet("hello", "hello")
        .start()
        .await;
    let reply = host
        .send(
            Request::post("/old/x?y=1")
                .body(Bytes::from_static(b"kept"))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echoed = reply.json();
    assert_eq!(echoed["path"], "/x");
    let body: Vec<u8> = echoed["body"]
        .as_array()
        .unwrap()
        .iter()
        .map(|byte| byte.as_u64().unwrap() as u8)
        .collect();
    assert_eq!(body, b"kept");
    let imports = host.get("/old/capabilities").await.json()["imports"].clone();
    assert!(
        imports.to_string().contains("@0.2.0"),
        "built against 0.2.0: {imports}"
    );
    // A droplet that does not stream imports nothing of it, and gets its
    // body whole as before.
    let imports = host.get("/hello/capabilities").await.json()["imports"].to_string();
    assert!(!imports.contains("streaming"), "{imports}");
}
