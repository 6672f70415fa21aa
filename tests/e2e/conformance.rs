//! The `wasi:http` door against the specification and `wasmtime serve`:
//! third-party components (`examples/proxy-hello`, built with the published
//! `wstd` crate; a componentize-py app from PyPI, [`python`]) answer here
//! as they do there. Each test shows one behaviour with the values the
//! specification and `wasmtime serve` give, asserted directly (no wasmtime
//! binary is needed).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::support::{
    Ending, HostBuilder, PATIENCE, assert_duplex_echo, assert_events_as_written, drain,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_reach_the_client_as_they_are_written() {
    let host = HostBuilder::new()
        .droplet("web", "proxy-hello")
        .start()
        .await;
    assert_events_as_written(&host, "/web/sse").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_streams_in_while_the_response_streams_out() {
    let host = HostBuilder::new()
        .droplet("web", "proxy-hello")
        .start()
        .await;
    assert_duplex_echo(&host, "/web/duplex").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_bytes_and_the_components_own_headers_pass_unchanged() {
    let host = HostBuilder::new()
        .droplet("web", "proxy-hello")
        .start()
        .await;
    let raw = http::HeaderValue::from_bytes(b"caf\xe9").unwrap();
    let reply = host
        .send(
            Request::get("/web/headers")
                .header("x-raw", raw.clone())
                .body(Bytes::new())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.headers.get("x-raw-echo").map(|v| v.as_bytes()),
        Some(&b"caf\xe9"[..]),
        "header values are bytes, both ways"
    );
    // Its own timing first, the host's after it.
    let timing: Vec<_> = reply
        .headers
        .get_all("server-timing")
        .iter()
        .map(|value| value.to_str().unwrap().to_string())
        .collect();
    assert_eq!(timing[0], "app;dur=1.5", "{timing:?}");
    assert!(timing[1].starts_with("droplet;dur="), "{timing:?}");
    // Its own trace header stays; the host's is beside it.
    let traces: Vec<_> = reply
        .headers
        .get_all("x-trace-id")
        .iter()
        .map(|value| value.to_str().unwrap().to_string())
        .collect();
    assert_eq!(traces.len(), 2, "{traces:?}");
    assert_eq!(traces[0], "from-the-component");
    assert_eq!(traces[1].len(), 32, "the host's trace id: {traces:?}");

    // Our own world carries header values as strings: refused, not rewritten.
    let host = HostBuilder::new().droplet("hello", "hello").start().await;
    let reply = host
        .send(
            Request::get("/hello/")
                .header("x-raw", raw)
                .body(Bytes::new())
                .unwrap(),
        )
        .await;
    let message = reply.assert_error(400, "bad_request");
    assert!(
        message.contains("x-raw") && message.contains("UTF-8"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stderr_written_in_pieces_is_one_log_line() {
    let host = HostBuilder::new()
        .droplet("web", "proxy-hello")
        .start()
        .await;
    assert_eq!(host.get("/web/print").await.status, 200);
    let from_stderr = |line: &serde_json::Value, message: &str| {
        line["source"] == "stderr" && line["message"] == message
    };
    for message in ["start a print 1234", "", "unfinished at the end"] {
        host.wait_for_log(|line| from_stderr(line, message), PATIENCE)
            .await
            .unwrap_or_else(|| panic!("a stderr line {message:?}"));
    }
    let pieces = host
        .log_lines()
        .into_iter()
        .filter(|line| line["source"] == "stderr")
        .count();
    assert_eq!(pieces, 3, "one line per line, not per piece");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbound_request_is_sent_before_its_body_is_finished() {
    let upstream = echo_server().await;
    let manifest = format!("budget_ms = 60000\nallowed_outbound_hosts = [\"http://{upstream}\"]\n");
    let host = HostBuilder::new()
        .droplet_with("web", "proxy-hello", &manifest)
        .start()
        .await;
    let reply = tokio::time::timeout(
        PATIENCE,
        host.get(&format!("/web/double-echo?to=http://{upstream}")),
    )
    .await
    .expect("answered while the budget is far from spent");
    // The upstream saw only what the component set (nothing), what HTTP
    // framing needs, and the host's documented `traceparent`: no `accept`
    // or `user-agent` of the host's own.
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (200, "host,traceparent,transfer-encoding\nping pong")
    );
}

/// A loopback server that says which headers it got (a first line of
/// their names), then streams the request body back as it arrives.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service =
                hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let mut names: Vec<_> =
                        req.headers().keys().map(|name| name.to_string()).collect();
                    names.sort();
                    let seen = Frame::data(Bytes::from(format!("{}\n", names.join(","))));
                    let body = futures::stream::once(async move { Ok(seen) }).chain(
                        req.into_body()
                            .into_data_stream()
                            .map(|data| data.map(Frame::data)),
                    );
                    Ok::<_, Infallible>(hyper::Response::new(StreamBody::new(body)))
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_still_streaming_at_the_deadline_is_cut_off_not_ended() {
    let host = HostBuilder::new()
        .droplet_with("web", "proxy-hello", "budget_ms = 1000\n")
        .start()
        .await;
    // A piece every 10 ms, forever: the head and the first pieces at once,
    // then the budget ends the call, and the body is cut (the client must
    // not take a truncated body for a whole one).
    let response = host.open_get("/web/stream").await;
    assert_eq!(response.status(), 200);
    let (received, ending) = drain(&mut response.into_body()).await;
    assert_eq!(ending, Ending::Cut);
    assert!(
        received.len() >= 5,
        "pieces arrived before the cut: {received:?}"
    );
    // The overrun is counted as one (once the call's task has finished).
    let counted = std::time::Instant::now() + PATIENCE;
    loop {
        let state = host.get("/web/state").await.json();
        if state["budget_overruns"] == 1 {
            break;
        }
        assert!(std::time::Instant::now() < counted, "{state}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
