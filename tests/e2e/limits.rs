//! Misbehaving droplets and oversized requests get their documented answer,
//! and the host keeps serving everyone else.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::join_all;
use http::Request;

use crate::support::HostBuilder;

#[tokio::test]
async fn runaway_loop_is_stopped_at_its_budget_while_others_keep_answering() {
    let host = HostBuilder::new()
        .droplet_with("spin", "spin", "budget_ms = 50\n")
        .droplet("hello", "hello")
        .start()
        .await;
    let host = &host;
    // Four runaway requests at once on a two-core machine, and hello beside them.
    let spins: Vec<_> = (0..4)
        .map(|_| async move {
            let started = Instant::now();
            let reply = host.get("/spin/").await;
            (reply, started.elapsed())
        })
        .collect();
    let hellos = async move {
        let mut statuses = Vec::new();
        for _ in 0..10 {
            statuses.push(host.get("/hello/").await.status);
        }
        statuses
    };
    let (spins, hellos) = tokio::join!(join_all(spins), hellos);
    for (reply, elapsed) in spins {
        let message = reply.assert_error(504, "budget_exceeded");
        assert!(message.contains("50 ms"), "{message}");
        assert!(
            elapsed < Duration::from_millis(1000),
            "504 took {elapsed:?}"
        );
    }
    assert!(hellos.iter().all(|status| *status == 200), "{hellos:?}");
}

#[tokio::test]
async fn memory_hog_is_refused_more_memory_and_gets_500() {
    let host = HostBuilder::new()
        .droplet_with("hog", "hog", "memory_mb = 16\n")
        .droplet("hello", "hello")
        .start()
        .await;
    let message = host.get("/hog/").await.assert_error(500, "droplet_trap");
    assert!(message.contains("memory allocation"), "{message}");
    assert_eq!(host.get("/hello/").await.status, 200);
    // The cap holds on every call, not just the first.
    host.get("/hog/").await.assert_error(500, "droplet_trap");
}

#[tokio::test]
async fn panic_is_500_naming_the_panic() {
    let host = HostBuilder::new()
        .droplet("panic", "panic")
        .droplet("hello", "hello")
        .start()
        .await;
    let message = host
        .get("/panic/boom")
        .await
        .assert_error(500, "droplet_trap");
    assert!(message.contains("panicked at"), "{message}");
    assert!(
        message.contains("droplet panicked on purpose at /boom"),
        "{message}"
    );
    assert_eq!(host.get("/hello/").await.status, 200);
}

#[tokio::test]
async fn body_over_the_limit_is_413_whether_declared_or_streamed() {
    let host = HostBuilder::new()
        .droplet_with("echo", "echo", "max_body_kb = 1\n")
        .start()
        .await;
    let at_limit = host
        .send(
            Request::post("/echo/")
                .body(Bytes::from(vec![b'a'; 1024]))
                .unwrap(),
        )
        .await;
    assert_eq!(at_limit.status, 200);
    let message = host
        .send(
            Request::post("/echo/")
                .body(Bytes::from(vec![b'a'; 1025]))
                .unwrap(),
        )
        .await
        .assert_error(413, "body_too_large");
    assert!(message.contains("1 KiB"), "{message}");
    // Chunked, with no content-length: refused while reading.
    let chunk = "a".repeat(700);
    let raw = format!(
        "POST /echo/ HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
         2bc\r\n{chunk}\r\n2bc\r\n{chunk}\r\n0\r\n\r\n"
    );
    let response = host.raw(raw.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("body_too_large"), "{response}");
}

#[tokio::test]
async fn invalid_guest_response_is_502() {
    let host = HostBuilder::new().droplet("echo", "echo").start().await;
    let message = host
        .get("/echo/?status=700")
        .await
        .assert_error(502, "invalid_response");
    assert!(message.contains("700"), "{message}");
    assert_eq!(host.get("/echo/?status=201").await.status, 201);
}

/// Sends a 1.5 s request to `/echo/` and, once it holds its slot (it
/// logged "echoing"), a GET of `path`; both answers.
async fn while_echo_holds_a_slot(
    host: &crate::support::Host,
    path: &str,
) -> (crate::support::Reply, crate::support::Reply) {
    let slow = host.send(
        Request::get("/echo/?sleep_ms=1500")
            .header("x-request-id", "slow-1")
            .body(Bytes::new())
            .unwrap(),
    );
    let second = async {
        host.wait_for_log(
            |line| line["trace_id"] == "slow-1" && line["message"] == "echoing",
            Duration::from_secs(30),
        )
        .await
        .expect("the slow request started");
        host.get(path).await
    };
    tokio::join!(slow, second)
}

#[tokio::test]
async fn concurrency_limit_answers_503_with_retry_after() {
    let host = HostBuilder::new()
        .droplet_with("echo", "echo", "max_concurrency = 1\nbudget_ms = 5000\n")
        .start()
        .await;
    let (slow, second) = while_echo_holds_a_slot(&host, "/echo/").await;
    assert_eq!(slow.status, 200);
    let message = second.assert_error(503, "droplet_overloaded");
    assert!(message.contains("echo"), "{message}");
    assert_eq!(second.header("retry-after"), Some("1"));
    // With the slot free again, requests are served.
    assert_eq!(host.get("/echo/").await.status, 200);
}

#[tokio::test]
async fn too_many_response_headers_are_a_502_and_the_host_keeps_serving() {
    let host = HostBuilder::new()
        .droplet("echo", "echo")
        .droplet("hello", "hello")
        .start()
        .await;
    let reply = host.get("/echo/?headers=100000").await;
    let message = reply.assert_error(502, "invalid_response");
    assert!(message.contains("headers"), "{message}");
    let fine = host.get("/echo/?headers=10").await;
    assert_eq!(fine.status, 200);
    assert_eq!(fine.header("x-echo-9"), Some("1"));
    assert_eq!(host.get("/hello/").await.status, 200);
}

#[tokio::test]
async fn log_fields_count_toward_the_per_request_log_limit() {
    // A budget no load can overrun: this test is not about budgets.
    let host = HostBuilder::new()
        .droplet_with("echo", "echo", crate::support::GENEROUS)
        .droplet_with("hello", "hello", crate::support::GENEROUS)
        .start()
        .await;
    let flood = host.send(
        Request::get("/echo/?log_flood=1024")
            .header("x-request-id", "flood-1")
            .body(Bytes::new())
            .unwrap(),
    );
    let (reply, healthy) = tokio::join!(flood, host.get("/hello/"));
    assert_eq!(reply.status, 200);
    assert_eq!(healthy.status, 200);
    let summary = host
        .wait_for_log(
            |line| line["trace_id"] == "flood-1" && line["truncated_fields"].is_u64(),
            Duration::from_secs(10),
        )
        .await
        .expect("the over-the-limit summary line");
    assert!(summary["dropped"].as_u64().unwrap() > 0, "{summary}");
    // Everything the guest logged for this request, fields included, stays
    // within the per-request budget (64 KiB) plus the lines' own framing.
    let logged: usize = host
        .log_lines()
        .iter()
        .filter(|line| line["trace_id"] == "flood-1" && line["target"] == "droplet::guest")
        .map(|line| line.to_string().len())
        .sum();
    assert!(logged < 128 * 1024, "the guest wrote {logged} bytes of log");
}

/// Reads from `stream` until the host closes it; whether it did within
/// `within`.
async fn closed_by_host(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let read_to_end = async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_to_end).await.is_ok()
}

#[tokio::test]
async fn idle_connections_are_closed_from_accept_on_and_the_host_keeps_serving() {
    use tokio::io::AsyncWriteExt;
    let host = HostBuilder::new()
        .droplet("hello", "hello")
        .arg("--idle-timeout-s")
        .arg("1")
        .start()
        .await;
    let connect = || tokio::net::TcpStream::connect(host.addr());
    // Never sends a byte.
    let mut silent = connect().await.unwrap();
    // HTTP/2 preface and an empty SETTINGS frame, then nothing.
    let mut h2 = connect().await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    // One request on a keep-alive connection, then nothing.
    let mut kept = connect().await.unwrap();
    kept.write_all(b"GET /hello/ HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(host.get("/hello/").await.status, 200);
    for (name, stream) in [
        ("silent", &mut silent),
        ("h2", &mut h2),
        ("keep-alive", &mut kept),
    ] {
        assert!(
            closed_by_host(stream, Duration::from_secs(10)).await,
            "the {name} connection was not closed"
        );
    }
    assert_eq!(host.get("/hello/").await.status, 200);
}

#[tokio::test]
async fn open_connections_are_capped_and_a_closed_one_frees_its_place() {
    let host = HostBuilder::new()
        .droplet("hello", "hello")
        .arg("--max-connections")
        .arg("2")
        .start()
        .await;
    let first = tokio::net::TcpStream::connect(host.addr()).await.unwrap();
    let _second = tokio::net::TcpStream::connect(host.addr()).await.unwrap();
    // Both places taken: a third client waits in the backlog.
    let waiting = tokio::time::timeout(Duration::from_millis(800), host.get("/hello/")).await;
    assert!(
        waiting.is_err(),
        "a third connection was served past the cap"
    );
    drop(first);
    let served = tokio::time::timeout(Duration::from_secs(10), host.get("/hello/"))
        .await
        .expect("served once a place is free");
    assert_eq!(served.status, 200);
}

/// Sends the head of a POST to `/echo/` declaring `length` body bytes and
/// `sent` of them, and keeps the connection open.
async fn held_body(
    host: &crate::support::Host,
    length: usize,
    sent: usize,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(host.addr()).await.unwrap();
    let head = format!("POST /echo/ HTTP/1.1\r\nhost: x\r\ncontent-length: {length}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&vec![b'a'; sent]).await.unwrap();
    stream
}

/// Request bodies held at once are bounded host-wide, declared or
/// streamed, over HTTP/1.1 and HTTP/2: past the budget a request answers
/// 503 host_busy at once, and what a request held is given back when it
/// ends.
#[tokio::test]
async fn request_bodies_past_the_hosts_budget_are_a_503() {
    let host = HostBuilder::new()
        .droplet_with("echo", "echo", "max_body_kb = 4096\nbudget_ms = 60000\n")
        .arg("--max-request-buffer-mb")
        .arg("1")
        .start()
        .await;
    let post = |kib: usize| {
        Request::post("/echo/")
            .body(Bytes::from(vec![b'a'; kib << 10]))
            .unwrap()
    };
    assert_eq!(host.send(post(700)).await.status, 200);
    // A client declares 700 KiB and sends one byte: the host holds the
    // declared length from the start, so a second such body cannot fit.
    let mut first = held_body(&host, 700 << 10, 1).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let refused = loop {
        let reply = host.send(post(700)).await;
        if reply.status == 503 || Instant::now() > deadline {
            break reply;
        }
        // The held body may have arrived while a probe held the budget,
        // and been refused itself (answered and closed): hold another.
        let mut byte = [0u8; 1];
        let answered = tokio::time::timeout(Duration::from_millis(1), first.peek(&mut byte)).await;
        if answered.is_ok() {
            first = held_body(&host, 700 << 10, 1).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    refused.assert_error(503, "host_busy");
    assert_eq!(refused.header("retry-after"), Some("1"));
    // Small bodies still fit beside it.
    assert_eq!(host.send(post(100)).await.status, 200);
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = host.send(post(700)).await.status;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {status} after the first closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // HTTP/2: many streams of one connection, each 300 KiB sent but not
    // finished, share the same budget.
    let stream = tokio::net::TcpStream::connect(host.addr()).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let mut bodies = Vec::new();
    let mut responses = Vec::new();
    for _ in 0..8 {
        let (mut tx, body) =
            http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(4);
        tx.send_data(Bytes::from(vec![b'a'; 300 << 10]))
            .await
            .unwrap();
        bodies.push(tx);
        sender.ready().await.unwrap();
        let request = Request::post(format!("{}/echo/", host.url()))
            .body(body)
            .unwrap();
        responses.push(tokio::spawn(sender.send_request(request)));
    }
    // At most three fit in 1 MiB; the others were refused without waiting
    // for their bodies to end.
    let mut refused = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while refused < 5 {
        assert!(Instant::now() < deadline, "only {refused} refused");
        refused = 0;
        for response in &responses {
            if response.is_finished() {
                refused += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for response in responses {
        if response.is_finished() {
            let response = response.await.unwrap().unwrap();
            assert_eq!(response.status(), 503);
        }
    }
    drop(bodies);
    assert_eq!(host.get("/echo/").await.status, 200);
}

/// A full instance pool is the host's, not a droplet's: the 503 says so.
#[tokio::test]
async fn a_full_instance_pool_is_named_in_the_503() {
    let host = HostBuilder::new()
        .droplet_with("echo", "echo", "budget_ms = 60000\n")
        .droplet_with("hello", "hello", "budget_ms = 60000\n")
        .arg("--max-instances")
        .arg("1")
        .start()
        .await;
    let (slow, other) = while_echo_holds_a_slot(&host, "/hello/").await;
    assert_eq!(slow.status, 200);
    let message = other.assert_error(503, "host_busy");
    assert!(
        message.contains("instance pool is full (1 instances"),
        "{message}"
    );
    assert_eq!(other.header("retry-after"), Some("1"));
    assert_eq!(host.get("/hello/").await.status, 200);
}
