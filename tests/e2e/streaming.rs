//! Streaming in our own world (`fp:droplet/streaming`, WIT 0.2.1):
//! `examples/sse` sends server-sent events as it writes them, echoes a
//! request body piece by piece, and counts an upload it never holds whole;
//! and a component built with the 0.2.0 SDK still loads and serves.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;

use crate::support::{HostBuilder, fixture};

const PATIENCE: Duration = Duration::from_secs(30);

/// The next piece of `body`'s data, within [`PATIENCE`]; `None` at its end.
async fn next_data(body: &mut hyper::body::Incoming) -> Option<Bytes> {
    loop {
        let frame = tokio::time::timeout(PATIENCE, body.frame())
            .await
            .expect("the next piece of the body within the patience")?
            .expect("the body continues");
        if let Ok(data) = frame.into_data() {
            return Some(data);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_droplets_events_reach_the_client_as_it_writes_them() {
    let host = HostBuilder::new().droplet("sse", "sse").start().await;
    let response = host
        .open(
            Request::get("/sse/events")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert!(response.headers().contains_key("x-droplet-version"));
    let mut body = response.into_body();
    // The droplet sleeps 300 ms between events: had the host waited for the
    // handler, all three would come as one piece.
    assert_eq!(next_data(&mut body).await.unwrap(), "data: event 0\n\n");
    let mut rest = Vec::new();
    while let Some(piece) = next_data(&mut body).await {
        rest.extend_from_slice(&piece);
    }
    assert_eq!(rest, b"data: event 1\n\ndata: event 2\n\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_droplet_echoes_a_body_while_it_is_still_arriving() {
    let host = HostBuilder::new().droplet("sse", "sse").start().await;
    let (pieces, mut receiver) = tokio::sync::mpsc::channel::<Bytes>(4);
    let body = StreamBody::new(futures::stream::poll_fn(move |cx| {
        receiver
            .poll_recv(cx)
            .map(|piece| piece.map(|data| Ok::<_, Infallible>(Frame::data(data))))
    }));
    pieces.send(Bytes::from_static(b"first ")).await.unwrap();
    let response = tokio::time::timeout(
        PATIENCE,
        host.open(Request::post("/sse/echo").body(body).unwrap()),
    )
    .await
    .expect("the head before the request body ends");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    assert_eq!(next_data(&mut body).await.unwrap(), "first ");
    pieces.send(Bytes::from_static(b"second")).await.unwrap();
    assert_eq!(next_data(&mut body).await.unwrap(), "second");
    drop(pieces);
    assert_eq!(next_data(&mut body).await, None);
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
    let response = host
        .open(
            Request::get("/sse/events")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = Vec::new();
    let ended = loop {
        match tokio::time::timeout(PATIENCE, body.frame()).await {
            Ok(Some(Ok(frame))) => received.extend(frame.into_data().unwrap_or_default()),
            Ok(Some(Err(_))) => break "cut",
            Ok(None) => break "ended",
            Err(_) => break "still open",
        }
    };
    // Event 2 comes 600 ms in: past the budget, so the body is cut, not
    // ended as if whole.
    assert_eq!(ended, "cut", "{}", String::from_utf8_lossy(&received));
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
