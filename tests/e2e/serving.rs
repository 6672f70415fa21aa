//! Requests that succeed: routing, the request a droplet sees, the headers
//! and logs a request leaves behind.

use std::time::Duration;

use bytes::Bytes;
use http::Request;

use crate::support::HostBuilder;

#[tokio::test]
async fn hello_answers() {
    let host = HostBuilder::new().droplet("hello", "hello").start().await;
    let reply = host.get("/hello/").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "Hello from droplet hello! You asked for /\n");
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert!(reply.header("x-trace-id").is_some_and(|id| id.len() == 32));
    assert!(reply.header("x-droplet-version").is_some());
    let timing = reply.header("server-timing").expect("server-timing header");
    assert!(timing.starts_with("droplet;dur="), "{timing}");
}

#[tokio::test]
async fn echo_round_trips_method_path_query_headers_and_binary_body() {
    let host = HostBuilder::new().droplet("echo", "echo").start().await;
    let body: Vec<u8> = (0..=255u8).collect();
    let reply = host
        .send(
            Request::put("/echo/items/42?color=blue&size=%20xl")
                .header("x-custom", "forty two")
                .header("content-type", "application/octet-stream")
                .body(Bytes::from(body.clone()))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echoed = reply.json();
    assert_eq!(echoed["method"], "PUT");
    assert_eq!(echoed["path"], "/items/42");
    assert_eq!(echoed["query"], "color=blue&size=%20xl");
    let headers = echoed["headers"].as_array().unwrap();
    assert!(
        headers.contains(&serde_json::json!(["x-custom", "forty two"])),
        "{headers:?}"
    );
    let echoed_body: Vec<u8> = echoed["body"]
        .as_array()
        .unwrap()
        .iter()
        .map(|byte| byte.as_u64().unwrap() as u8)
        .collect();
    assert_eq!(echoed_body, body);
}

#[tokio::test]
async fn unknown_droplet_is_404_json() {
    let host = HostBuilder::new().droplet("hello", "hello").start().await;
    let message = host
        .get("/nope/anything")
        .await
        .assert_error(404, "droplet_not_found");
    assert!(message.contains("nope"), "{message}");
    host.get("/").await.assert_error(404, "droplet_not_found");
    host.get("/Not_A_Name/")
        .await
        .assert_error(404, "droplet_not_found");
    host.get("/_nope/droplets")
        .await
        .assert_error(404, "droplet_not_found");
}

#[tokio::test]
async fn host_health_reports_the_host() {
    let host = HostBuilder::new().droplet("hello", "hello").start().await;
    let reply = host.get("/health").await;
    assert_eq!(reply.status, 200);
    let health = reply.json();
    assert_eq!(health["status"], "active");
    assert_eq!(health["droplets"], 1);
}

#[tokio::test]
async fn host_header_routes_to_the_named_droplet() {
    let host = HostBuilder::new()
        .droplet("hello", "hello")
        .droplet("echo", "echo")
        .arg("--domain")
        .arg("droplets.test")
        .start()
        .await;
    let reply = host
        .send(
            Request::get("/some/path?x=1")
                .header("host", "echo.droplets.test:8080")
                .body(Bytes::new())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["path"], "/some/path");
    let reply = host
        .send(
            Request::get("/deep/x")
                .header("host", "hello.droplets.test")
                .body(Bytes::new())
                .unwrap(),
        )
        .await;
    assert_eq!(
        reply.text(),
        "Hello from droplet hello! You asked for /deep/x\n"
    );
    // Other hosts still route by path.
    assert_eq!(host.get("/echo/p").await.json()["path"], "/p");
}

#[tokio::test]
async fn trace_id_is_taken_from_traceparent_or_request_id() {
    let host = HostBuilder::new().droplet("hello", "hello").start().await;
    let reply = host
        .send(
            Request::get("/hello/")
                .header(
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                )
                .body(Bytes::new())
                .unwrap(),
        )
        .await;
    assert_eq!(
        reply.header("x-trace-id"),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    let reply = host
        .send(
            Request::get("/hello/")
                .header("x-request-id", "req-7")
                .body(Bytes::new())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.header("x-trace-id"), Some("req-7"));
}

#[tokio::test]
async fn every_request_writes_one_access_log_line() {
    let host = HostBuilder::new().droplet("hello", "hello").start().await;
    let reply = host
        .send(
            Request::post("/hello/x")
                .header("x-request-id", "access-1")
                .body(Bytes::new())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 200);
    host.get("/missing/").await;
    let line = host
        .wait_for_log(
            |line| line["target"] == "droplet::access" && line["trace_id"] == "access-1",
            Duration::from_secs(5),
        )
        .await
        .expect("access log line");
    assert_eq!(line["droplet"], "hello");
    assert_eq!(line["method"], "POST");
    assert_eq!(line["endpoint"], "/hello/x");
    assert_eq!(line["status_code"], 200);
    assert!(
        line["duration_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{line}"
    );
    let missing = host
        .wait_for_log(
            |line| line["target"] == "droplet::access" && line["endpoint"] == "/missing/",
            Duration::from_secs(5),
        )
        .await
        .expect("access log line for the 404");
    assert_eq!(missing["status_code"], 404);
    assert_eq!(missing["error"], "droplet_not_found");
    let lines = host
        .wait_for_log_count(
            |line| line["target"] == "droplet::access" && line["trace_id"] == "access-1",
            1,
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(lines, 1);
}

#[tokio::test]
async fn guest_logs_and_stdio_land_in_the_host_log_tagged_with_the_request() {
    let host = HostBuilder::new().droplet("echo", "echo").start().await;
    let reply = host
        .send(
            Request::get("/echo/x?print=1")
                .header("x-request-id", "logs-1")
                .body(Bytes::new())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 200);
    let find = |source: &'static str| {
        let host = &host;
        async move {
            host.wait_for_log(
                |line| {
                    line["target"] == "droplet::guest"
                        && line["trace_id"] == "logs-1"
                        && line["source"] == source
                },
                Duration::from_secs(5),
            )
            .await
            .unwrap_or_else(|| panic!("no {source} line"))
        }
    };
    let logged = find("log").await;
    assert_eq!(logged["message"], "echoing");
    assert_eq!(logged["droplet"], "echo");
    assert_eq!(logged["level"], "INFO");
    // An object inside the line, not a string of JSON.
    let fields = &logged["fields"];
    assert!(fields.is_object(), "{logged}");
    assert_eq!(fields["path"], "/x");
    let stdout = find("stdout").await;
    assert_eq!(stdout["message"], "echo printed to stdout");
    assert_eq!(stdout["level"], "INFO");
    let stderr = find("stderr").await;
    assert_eq!(stderr["message"], "echo printed to stderr");
    assert_eq!(stderr["level"], "WARN");
}

#[tokio::test]
async fn http11_requests_need_exactly_one_host_and_an_absolute_uri_wins() {
    let host = HostBuilder::new()
        .droplet("hello", "hello")
        .arg("--domain")
        .arg("Droplets.Test")
        .start()
        .await;
    let answer = |request: &'static str| host.raw(request.as_bytes());
    let none = answer("GET /hello/ HTTP/1.1\r\nconnection: close\r\n\r\n").await;
    assert!(none.starts_with("HTTP/1.1 400"), "{none}");
    assert!(none.contains("needs a Host header"), "{none}");
    let two =
        answer("GET /hello/ HTTP/1.1\r\nhost: a\r\nhost: b\r\nconnection: close\r\n\r\n").await;
    assert!(two.starts_with("HTTP/1.1 400"), "{two}");
    assert!(two.contains("more than one Host"), "{two}");
    // Domain routing ignores case and a trailing dot.
    let routed =
        answer("GET /x HTTP/1.1\r\nhost: HELLO.droplets.test.\r\nconnection: close\r\n\r\n").await;
    assert!(routed.starts_with("HTTP/1.1 200"), "{routed}");
    // The absolute-form URI's authority wins over the Host header.
    let absolute = answer(
        "GET http://hello.droplets.test/x HTTP/1.1\r\nhost: other.droplets.test\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(absolute.starts_with("HTTP/1.1 200"), "{absolute}");
    assert!(absolute.contains("You asked for /x"), "{absolute}");
}
