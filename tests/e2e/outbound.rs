//! Outbound HTTP: the `gateway` droplet calls a real HTTP server on
//! loopback, under its manifest's allowlist and caps and its budget.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::support::{GENEROUS, Host, HostBuilder};

/// A server the droplet may call: `/hello` (records the `traceparent` it
/// got), `/echo` (answers with the method and the body it got), `/slow`
/// (answers after 10 s), `/big` (20 MiB), `/trickle` (a byte every 200 ms,
/// forever), `/redirect` (302 elsewhere).
struct Upstream {
    addr: SocketAddr,
    traceparents: Arc<Mutex<Vec<String>>>,
}

impl Upstream {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let traceparents = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&traceparents);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let seen = Arc::clone(&seen);
                        async move {
                            if let Some(tp) = req.headers().get("traceparent") {
                                seen.lock()
                                    .unwrap()
                                    .push(tp.to_str().unwrap_or("").to_string());
                            }
                            Ok::<_, Infallible>(respond(req).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, traceparents }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn respond(req: hyper::Request<hyper::body::Incoming>) -> hyper::Response<Body> {
    let full = |bytes: Vec<u8>| Full::new(Bytes::from(bytes)).boxed();
    match req.uri().path() {
        "/hello" => hyper::Response::new(full(b"hi from upstream".to_vec())),
        "/echo" => {
            let method = req.method().to_string();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            hyper::Response::new(full(
                format!("{method} {}", String::from_utf8_lossy(&body)).into_bytes(),
            ))
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            hyper::Response::new(full(b"late".to_vec()))
        }
        "/big" => hyper::Response::new(full(vec![b'b'; 20 << 20])),
        "/trickle" => {
            let stream = futures::stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Some((
                    Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"."))),
                    (),
                ))
            });
            hyper::Response::new(StreamBody::new(stream).boxed())
        }
        "/redirect" => hyper::Response::builder()
            .status(302)
            .header("location", "http://elsewhere.example/")
            .body(full(Vec::new()))
            .unwrap(),
        _ => hyper::Response::builder()
            .status(404)
            .body(full(Vec::new()))
            .unwrap(),
    }
}

async fn gateway(manifest: &str) -> Host {
    HostBuilder::new()
        .droplet_with("gateway", "gateway", manifest)
        .droplet("hello", "hello")
        .start()
        .await
}

/// `/gateway/fetch?url=…` and the JSON it answers.
async fn fetch(host: &Host, url: &str, extra: &str) -> (u16, Value) {
    let reply = host
        .get(&format!(
            "/gateway/fetch?url={}{extra}",
            form_urlencoded::byte_serialize(url.as_bytes()).collect::<String>()
        ))
        .await;
    (
        reply.status,
        serde_json::from_slice(&reply.body).unwrap_or(Value::Null),
    )
}

fn error_kind(body: &Value) -> &str {
    body["error"]["kind"].as_str().unwrap_or("none")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_request_goes_out_with_the_trace_id_and_is_counted() {
    let upstream = Upstream::start().await;
    let host = gateway(&format!(
        "allowed_outbound_hosts = [\"http://{}\"]\n",
        upstream.addr
    ))
    .await;
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let reply = host
        .send(
            http::Request::get(format!(
                "/gateway/fetch?url={}",
                form_urlencoded::byte_serialize(upstream.url("/hello").as_bytes())
                    .collect::<String>()
            ))
            .header("traceparent", format!("00-{trace}-b7ad6b7169203331-01"))
            .body(Bytes::new())
            .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["status"], 200);
    assert_eq!(body["body"], "hi from upstream");
    let seen = upstream.traceparents.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|tp| tp.starts_with(&format!("00-{trace}-"))),
        "upstream saw {seen:?}"
    );
    let timing = reply.header("server-timing").unwrap_or_default();
    assert!(timing.contains("outbound;dur="), "{timing}");
    let access = host
        .wait_for_log(
            |line| {
                line["target"] == "droplet::access"
                    && line["endpoint"]
                        .as_str()
                        .is_some_and(|e| e.starts_with("/gateway/fetch"))
            },
            Duration::from_secs(5),
        )
        .await
        .expect("the access line");
    assert_eq!(access["outbound_requests"], 1, "{access}");
    // A body goes out whole; a HEAD's announced length comes with no body.
    let (status, body) = fetch(&host, &upstream.url("/echo"), "&method=POST&body=a%20body").await;
    assert_eq!(
        (status, body["body"].as_str()),
        (200, Some("POST a body")),
        "{body}"
    );
    let (status, body) = fetch(&host, &upstream.url("/echo"), "&method=PUT").await;
    assert_eq!(
        (status, body["body"].as_str()),
        (200, Some("PUT ")),
        "{body}"
    );
    let (status, body) = fetch(&host, &upstream.url("/hello"), "&method=HEAD").await;
    assert_eq!(
        (status, body["status"].as_u64(), body["body"].as_str()),
        (200, Some(200), Some("")),
        "{body}"
    );
    let metrics = host.get("/metrics").await.text();
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("droplet_outbound_requests_total")
                && line.contains("droplet=\"gateway\"")
                && line.contains(&format!("allowed=\"http://{}\"", upstream.addr))
                && line.contains("class=\"2xx\"")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anything_not_listed_is_denied_inside_the_guest() {
    let upstream = Upstream::start().await;
    let other = Upstream::start().await;
    let host = gateway(&format!(
        "allowed_outbound_hosts = [\"http://{}\"]\n",
        upstream.addr
    ))
    .await;
    // Another port on the same address, another scheme: both denied.
    for url in [
        other.url("/hello"),
        format!("https://{}/hello", upstream.addr),
    ] {
        let (status, body) = fetch(&host, &url, "").await;
        assert_eq!(
            (status, error_kind(&body)),
            (502, "denied"),
            "{url}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("allowed_outbound_hosts"), "{message}");
    }
    assert!(
        other.traceparents.lock().unwrap().is_empty(),
        "nothing reached it"
    );
    // No allowlist at all: nowhere.
    let metrics = host.get("/metrics").await.text();
    assert!(metrics.contains("class=\"denied\""), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_are_enforced_when_the_component_loads() {
    let host = HostBuilder::new()
        // Imports wasi:http and fp:droplet/calls with no allowlist: outbound
        // HTTP is not granted.
        .droplet("gateway", "gateway")
        // Imports kv, but its list grants only log.
        .droplet_with("counter", "counter", "capabilities = [\"log\"]\n")
        // Its list grants what it imports.
        .droplet_with(
            "todo",
            "todo",
            "capabilities = [\"kv\", \"auth\", \"todo-list\"]\n",
        )
        .start()
        .await;
    let message = host
        .get("/gateway/ping")
        .await
        .assert_error(503, "droplet_unavailable");
    assert!(
        (message.contains("wasi:http/") || message.contains("fp:droplet/calls"))
            && message.contains("allowed_outbound_hosts"),
        "{message}"
    );
    let message = host
        .get("/counter/")
        .await
        .assert_error(503, "droplet_unavailable");
    assert!(
        message.contains("fp:droplet/kv") && message.contains("add \"kv\" to `capabilities"),
        "{message}"
    );
    assert_eq!(host.get("/todo/todos").await.status, 200);
    let caps = host.get("/todo/capabilities").await.json();
    assert_eq!(caps["granted"], json!(["kv", "auth"]));
    assert_eq!(caps["capabilities"], json!(["kv", "auth", "todo-list"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_resolves_to_a_private_address_is_refused() {
    let upstream = Upstream::start().await;
    let port = upstream.addr.port();
    let host = gateway(&format!(
        "allowed_outbound_hosts = [\"http://localhost:{port}\"]\n"
    ))
    .await;
    let (status, body) = fetch(&host, &format!("http://localhost:{port}/hello"), "").await;
    assert_eq!((status, error_kind(&body)), (502, "denied"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not public")
    );
    assert!(upstream.traceparents.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_bad_input_and_misbehaving_servers_are_typed_errors_and_the_host_stays_healthy() {
    let upstream = Upstream::start().await;
    let allowed = format!(
        "allowed_outbound_hosts = [\"http://{}\", \"http://no-such-host.invalid\"]\nmax_outbound_requests = 2\n",
        upstream.addr
    );
    // `gateway` has a budget no load can overrun: only the checks can fail
    // it. `tight` is for the slow servers, which its budget must end.
    let host = HostBuilder::new()
        .droplet_with("gateway", "gateway", &format!("{allowed}{GENEROUS}"))
        .droplet_with("tight", "gateway", &format!("{allowed}budget_ms = 1500\n"))
        .droplet("hello", "hello")
        .start()
        .await;
    // The per-call cap.
    let reply = host
        .get(&format!(
            "/gateway/many?n=3&url={}",
            form_urlencoded::byte_serialize(upstream.url("/hello").as_bytes()).collect::<String>()
        ))
        .await;
    let body = reply.json();
    assert_eq!(body["ok"], 2, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("max_outbound_requests"),
        "{body}"
    );
    // Too large a response body.
    let (_, body) = fetch(&host, &upstream.url("/big"), "").await;
    assert_eq!(error_kind(&body), "too_large", "{body}");
    // A redirect is handed back, not followed.
    let (status, body) = fetch(&host, &upstream.url("/redirect"), "").await;
    assert_eq!(
        (status, body["status"].as_u64()),
        (200, Some(302)),
        "{body}"
    );
    // Header injection.
    let (_, body) = fetch(
        &host,
        &upstream.url("/hello"),
        "&header=x-a:b%0D%0Ax-evil:1",
    )
    .await;
    assert_eq!(error_kind(&body), "invalid_header", "{body}");
    // An unknown scheme and a malformed URL.
    for url in ["ftp://x.example/", "http://", "not a url"] {
        let (_, body) = fetch(&host, url, "").await;
        assert_eq!(error_kind(&body), "invalid_url", "{url}: {body}");
    }
    // A name that does not resolve.
    let (_, body) = fetch(&host, "http://no-such-host.invalid/", "").await;
    assert_eq!(error_kind(&body), "failed", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("resolve"),
        "{body}"
    );
    // Slow and trickling servers end at the budget: 504, on time.
    for path in ["/slow", "/trickle"] {
        let started = Instant::now();
        let reply = host
            .get(&format!(
                "/tight/fetch?url={}",
                form_urlencoded::byte_serialize(upstream.url(path).as_bytes()).collect::<String>()
            ))
            .await;
        reply.assert_error(504, "budget_exceeded");
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "{path}: {:?}",
            started.elapsed()
        );
    }
    assert_eq!(host.get("/hello/").await.status, 200);
    assert_eq!(host.get("/health").await.status, 200);
}

fn encoded(url: &str) -> String {
    form_urlencoded::byte_serialize(url.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn droplets_call_droplets_in_process_with_one_trace_and_a_trusted_caller() {
    let internal = "allowed_outbound_hosts = [\"http://*.droplet.internal\"]\n";
    let host = HostBuilder::new()
        .droplet_with("a", "gateway", internal)
        .droplet_with("b", "gateway", internal)
        .droplet("c", "echo")
        .start()
        .await;
    // a → b → c: c echoes what it was sent.
    let to_c = "http://c.droplet.internal/echoed?x=1";
    let to_b = format!("http://b.droplet.internal/relay?url={}", encoded(to_c));
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let reply = host
        .send(
            http::Request::get(format!("/a/relay?url={}", encoded(&to_b)))
                .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
                .header("x-droplet-caller", "forged")
                .body(Bytes::new())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echoed = reply.json();
    assert_eq!(echoed["path"], "/echoed");
    let headers = echoed["headers"].as_array().unwrap();
    let header = |name: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|pair| pair[0] == name)
            .filter_map(|pair| pair[1].as_str())
            .collect()
    };
    assert_eq!(
        header("x-droplet-caller"),
        ["b"],
        "the host names the caller"
    );
    assert_eq!(header("x-trace-id"), [trace], "one trace id down the chain");
    // The SDK calls `name.droplet.internal` through `fp:droplet/calls`; with
    // a port the same call goes through `wasi:http`, as a standard
    // component's does: the callee cannot tell them apart.
    let by_wasi_http = host
        .get(&format!(
            "/a/relay?url={}",
            encoded("http://c.droplet.internal:80/echoed?x=1")
        ))
        .await;
    assert_eq!(by_wasi_http.status, 200, "{}", by_wasi_http.text());
    let echoed = by_wasi_http.json();
    assert_eq!(
        (&echoed["path"], &echoed["query"]),
        (&json!("/echoed"), &json!("x=1"))
    );
    assert!(
        echoed["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|pair| pair[0] == "x-droplet-caller" && pair[1] == "a"),
        "{echoed}"
    );
    // Straight from outside, the caller header is not believed.
    let outside = host
        .send(
            http::Request::get("/c/")
                .header("x-droplet-caller", "forged")
                .body(Bytes::new())
                .unwrap(),
        )
        .await
        .json();
    assert!(
        !outside.to_string().contains("forged"),
        "a forged caller reached the droplet: {outside}"
    );
    // Both hops are in the access log, under the same trace id.
    let internal_lines = host
        .wait_for_log_count(
            |line| line["message"] == "internal request" && line["trace_id"] == trace,
            2,
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(internal_lines, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_droplet_with_a_header_the_host_sets_is_refused_and_others_still_answer() {
    let host = HostBuilder::new()
        .droplet_with(
            "gateway",
            "gateway",
            "allowed_outbound_hosts = [\"http://*.droplet.internal\"]\n",
        )
        .droplet("hello", "hello")
        .start()
        .await;
    // `connection` and `host` are the host's to set, in `fp:droplet/calls`
    // as in `wasi:http`: refused before anything is sent.
    for header in ["connection:close", "host:elsewhere"] {
        let (status, body) = fetch(
            &host,
            "http://hello.droplet.internal/",
            &format!("&header={}", encoded(header)),
        )
        .await;
        assert_eq!(status, 502, "{body}");
        assert_eq!(error_kind(&body), "invalid_header", "{body}");
    }
    // The same call without it, and hello straight from outside, answer.
    let (status, body) = fetch(&host, "http://hello.droplet.internal/", "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], 200, "{body}");
    assert_eq!(host.get("/hello/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cycle_is_a_508_and_the_callee_never_outlives_the_callers_budget() {
    let host = HostBuilder::new()
        .droplet_with(
            "a",
            "gateway",
            "allowed_outbound_hosts = [\"http://*.droplet.internal\"]\nbudget_ms = 400\nmax_concurrency = 20\n",
        )
        // The cycle runs 9 instances deep: a budget that a loaded machine
        // cannot overrun before the hop limit is reached.
        .droplet_with(
            "looper",
            "gateway",
            "allowed_outbound_hosts = [\"http://*.droplet.internal\"]\nbudget_ms = 20000\nmax_concurrency = 20\n",
        )
        .droplet_with("slow", "spin", "budget_ms = 10000\n")
        .start()
        .await;
    let reply = host.get("/looper/loop?to=looper").await;
    let message = reply.assert_error(508, "loop_detected");
    assert!(message.contains("in-process calls"), "{message}");
    // A callee with a long budget still stops at its caller's deadline.
    let started = Instant::now();
    let reply = host
        .get(&format!(
            "/a/relay?url={}",
            encoded("http://slow.droplet.internal/")
        ))
        .await;
    reply.assert_error(504, "budget_exceeded");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
    // Not listed: denied, even for another droplet.
    let closed = HostBuilder::new()
        .droplet_with(
            "a",
            "gateway",
            "allowed_outbound_hosts = [\"http://b.droplet.internal\"]\n",
        )
        .droplet("c", "echo")
        .start()
        .await;
    let reply = closed
        .get(&format!(
            "/a/fetch?url={}",
            encoded("http://c.droplet.internal/")
        ))
        .await;
    let body = reply.json();
    assert_eq!(error_kind(&body), "denied", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_requests_in_flight_are_capped_per_host() {
    let upstream = Upstream::start().await;
    let host = HostBuilder::new()
        .droplet_with(
            "gateway",
            "gateway",
            &format!(
                "allowed_outbound_hosts = [\"http://{}\"]\nbudget_ms = 1500\n",
                upstream.addr
            ),
        )
        .arg("--max-outbound-connections")
        .arg("1")
        .start()
        .await;
    let slow_path = format!("/gateway/fetch?url={}", encoded(&upstream.url("/slow")));
    let slow = host.get(&slow_path);
    let second = async {
        // The slow one holds the only slot once the upstream has its
        // request (every outbound request carries a traceparent).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while upstream.traceparents.lock().unwrap().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the slow request never arrived"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        fetch(&host, &upstream.url("/hello"), "").await
    };
    let (slow, (_, second)) = tokio::join!(slow, second);
    slow.assert_error(504, "budget_exceeded");
    assert_eq!(error_kind(&second), "failed", "{second}");
    assert!(
        second["error"]["message"]
            .as_str()
            .unwrap()
            .contains("in flight"),
        "{second}"
    );
    // The slot is free again once the slow request is gone.
    let (status, body) = fetch(&host, &upstream.url("/hello"), "").await;
    assert_eq!(
        (status, body["body"].as_str()),
        (200, Some("hi from upstream")),
        "{body}"
    );
}

/// One request from outside cannot fill the host through in-process
/// fan-out: its whole tree of calls has a budget, and each call also takes
/// a slot of the droplet it reached first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_requests_fan_out_is_bounded_and_counts_against_its_droplet() {
    let host = HostBuilder::new()
        .droplet_with(
            "fan",
            "gateway",
            "allowed_outbound_hosts = [\"http://*.droplet.internal\"]\nmax_outbound_requests = 1000\nbudget_ms = 60000\n",
        )
        .droplet_with(
            "narrow",
            "gateway",
            "allowed_outbound_hosts = [\"http://*.droplet.internal\"]\nmax_outbound_requests = 1000\nbudget_ms = 60000\nmax_concurrency = 1\n",
        )
        .droplet_with("leaf", "hello", GENEROUS)
        .arg("--max-internal-calls")
        .arg("30")
        .start()
        .await;
    let many = |from: &str, url: &str, n: u32| format!("/{from}/many?url={}&n={n}", encoded(url));
    let reply = host
        .get(&many("fan", "http://leaf.droplet.internal/", 50))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let statuses = reply.json()["statuses"].clone();
    assert_eq!(statuses, json!({"200": 30, "429": 20}), "{statuses}");
    // Each request from outside has its own budget.
    let again = host
        .get(&many("fan", "http://leaf.droplet.internal/", 30))
        .await;
    assert_eq!(again.json()["statuses"], json!({"200": 30}));
    // A tree shares its budget: the relay's call to `fan` is one of the
    // 30, so the 40 calls it makes get 29.
    let inner = format!(
        "http://fan.droplet.internal/many?url={}&n=40",
        encoded("http://leaf.droplet.internal/")
    );
    let tree = host
        .get(&format!("/fan/relay?url={}", encoded(&inner)))
        .await;
    assert_eq!(tree.status, 200, "{}", tree.text());
    assert_eq!(tree.json()["statuses"], json!({"200": 29, "429": 11}));
    let refused = host
        .get(&format!(
            "/fan/relay?url={}",
            encoded("http://leaf.droplet.internal/")
        ))
        .await;
    assert_eq!(refused.status, 200, "a fresh request, a fresh budget");
    // The refusal says why.
    let second = format!(
        "http://fan.droplet.internal/relay?url={}",
        encoded("http://leaf.droplet.internal/")
    );
    let deep = host
        .get(&format!("/fan/relay?url={}", encoded(&second)))
        .await;
    assert_eq!(deep.status, 200, "2 calls of 30: {}", deep.text());
    // The calls count against the first droplet's concurrency: with one
    // slot, which its own call holds, it cannot fan out at all, and the
    // 503 says so.
    let reply = host
        .get(&many("narrow", "http://leaf.droplet.internal/", 1))
        .await;
    assert_eq!(reply.json()["statuses"], json!({"503": 1}));
    let refused = host
        .get(&format!(
            "/narrow/relay?url={}",
            encoded("http://leaf.droplet.internal/")
        ))
        .await;
    let message = refused.assert_error(503, "droplet_overloaded");
    assert!(
        message.contains(
            "`narrow` is over its concurrency limit, which the in-process calls it causes share"
        ),
        "{message}"
    );
    let one = HostBuilder::new()
        .droplet_with(
            "fan",
            "gateway",
            "allowed_outbound_hosts = [\"http://*.droplet.internal\"]\nbudget_ms = 60000\n",
        )
        .droplet_with("leaf", "hello", GENEROUS)
        .arg("--max-internal-calls")
        .arg("1")
        .start()
        .await;
    let reply = one
        .get(&format!("/fan/relay?url={}", encoded(&second)))
        .await;
    let message = reply.assert_error(429, "too_many_calls");
    assert!(
        message.contains("caused its limit of 1 in-process calls (it reached `fan` first)"),
        "{message}"
    );
}

/// The SSRF guard judges a destination as the client connects to it:
/// numeric host forms are addresses (listed as names, a manifest is
/// refused), the environment's proxy is never used, user information is
/// refused, and a client's `Proxy-Authorization` never reaches a droplet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssrf_by_numeric_hosts_proxies_and_user_info_is_refused() {
    let upstream = Upstream::start().await;
    let port = upstream.addr.port();
    let forms = [
        "2130706433",
        "0x7f000001",
        "127.1",
        "0177.0.0.1",
        "0",
        "*.0.1",
    ];
    let proxy = format!("http://127.0.0.1:{port}");
    let mut builder = HostBuilder::new()
        .droplet_with(
            "named",
            "gateway",
            "allowed_outbound_hosts = [\"http://upstream.invalid\"]\n",
        )
        .droplet_with(
            "gateway",
            "gateway",
            &format!("allowed_outbound_hosts = [\"http://127.0.0.1:{port}\"]\n"),
        )
        .droplet("echo", "echo")
        // The host's environment names a proxy: guest traffic must not use it.
        .env("HTTP_PROXY", &proxy)
        .env("http_proxy", &proxy);
    for (i, form) in forms.iter().enumerate() {
        builder = builder.droplet_with(
            &format!("numeric{i}"),
            "gateway",
            &format!("allowed_outbound_hosts = [\"http://{form}:{port}\"]\n"),
        );
    }
    let host = builder.start().await;
    for (i, form) in forms.iter().enumerate() {
        let reply = host.get(&format!("/numeric{i}/ping")).await;
        let message = reply.assert_error(503, "droplet_unavailable");
        assert!(
            message.contains("usual form") || message.contains("domain name"),
            "{form}: {message}"
        );
    }
    // A name through the environment's proxy would have reached the
    // upstream; without it, the name does not resolve.
    let reply = host
        .get(&format!(
            "/named/fetch?url={}",
            encoded("http://upstream.invalid/hello")
        ))
        .await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert!(
        upstream.traceparents.lock().unwrap().is_empty(),
        "the proxy was used"
    );
    // User information is refused before anything is sent.
    let (status, body) = fetch(&host, &format!("http://user:pw@127.0.0.1:{port}/hello"), "").await;
    assert_eq!(status, 502, "{body}");
    assert!(
        upstream.traceparents.lock().unwrap().is_empty(),
        "user info was sent"
    );
    // The same upstream, named plainly, is reached: the checks above are
    // not a broken client.
    let (status, body) = fetch(&host, &upstream.url("/hello"), "").await;
    assert_eq!(
        (status, body["body"].as_str()),
        (200, Some("hi from upstream")),
        "{body}"
    );
    // A client's proxy credentials are filtered like its Authorization.
    let echoed = host
        .send(
            http::Request::get("/echo/")
                .header("proxy-authorization", "Basic c2VjcmV0OnNlY3JldA==")
                .body(Bytes::new())
                .unwrap(),
        )
        .await;
    assert!(
        !echoed
            .text()
            .to_ascii_lowercase()
            .contains("proxy-authorization"),
        "{}",
        echoed.text()
    );
}

/// Outbound metrics are labelled by the allowlist entry that matched, not
/// by the destination: many names under a wildcard make one series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_metrics_do_not_grow_with_destination_names() {
    let host = gateway("allowed_outbound_hosts = [\"http://*.droplet.internal\"]\n").await;
    for i in 0..30 {
        let (status, body) = fetch(&host, &format!("http://nobody{i}.droplet.internal/"), "").await;
        assert_eq!(
            (status, body["status"].as_u64()),
            (200, Some(404)),
            "{body}"
        );
    }
    let metrics = host.get("/metrics").await.text();
    let series: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("droplet_outbound_requests_total"))
        .collect();
    assert_eq!(series.len(), 1, "{series:?}");
    assert!(
        series[0].contains("allowed=\"http://*.droplet.internal\"") && series[0].contains("} 30"),
        "{series:?}"
    );
    assert!(
        !metrics.contains("nobody"),
        "a destination name is in /metrics"
    );
}
