//! The operator's view without a browser: the OpenAPI document against the
//! router, the dashboard's data routes (overview, series, log tail), and
//! OpenTelemetry traces received by an OTLP/HTTP receiver in this process.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::support::{Host, HostBuilder, TEST_SECRET, admin_request, example_variant};

async fn watched_host() -> Host {
    HostBuilder::new()
        .droplet("hello", "hello")
        .droplet("echo", "echo")
        .droplet("counter", "counter")
        .env("JWT_SECRET", TEST_SECRET)
        .start()
        .await
}

/// Polls `check` every 100 ms until it returns `Some`, or fails after
/// `timeout` with `what`.
async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn row<'a>(overview: &'a Value, name: &str) -> &'a Value {
    overview["droplets"]
        .as_array()
        .and_then(|rows| rows.iter().find(|row| row["name"] == name))
        .unwrap_or_else(|| panic!("no row for {name} in {overview}"))
}

#[tokio::test]
async fn openapi_document_parses_and_matches_the_router_both_ways() {
    let host = watched_host().await;
    // Served without a token: it describes the API, it grants nothing.
    let reply = host.get("/_admin/openapi.json").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let document: Value = reply.json();
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "{}",
        document["openapi"]
    );
    // It parses as an OpenAPI 3 document (utoipa's model of the spec).
    let parsed: utoipa::openapi::OpenApi =
        serde_json::from_value(document.clone()).expect("the document parses as OpenAPI 3");
    assert!(!parsed.paths.paths.is_empty());
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(document["components"]["schemas"]["ErrorBody"].is_object());

    let documented: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let concrete = |pattern: &str| {
        pattern
            .replace("{name}", "hello")
            .replace("{asset}", "app.js")
    };

    // Router ⊆ document: every method on every path the router knows of
    // (and a few it does not) that it routes is documented.
    let mut probes: BTreeSet<String> = documented
        .iter()
        .map(|(_, path)| concrete(path).trim_start_matches("/_admin").to_string())
        .collect();
    probes.extend(
        [
            "/",
            "/droplets/hello/nope",
            "/ui/nope.js",
            "/metrics",
            "/droplets/hello/logs/x",
        ]
        .map(String::from),
    );
    for probe in &probes {
        for method in [
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::POST,
            Method::DELETE,
            Method::PATCH,
        ] {
            if let Ok(route) = droplet_host::admin::AdminRoute::of(&method, probe) {
                let documented_as = if method == Method::HEAD {
                    "GET"
                } else {
                    method.as_str()
                };
                assert!(
                    documented.contains(&(documented_as.to_string(), route.pattern().to_string())),
                    "{method} /_admin{probe} is routed as {} but not documented",
                    route.pattern()
                );
            }
        }
    }

    // Document ⊆ router: every documented operation is answered by the
    // real host as that route (not "no admin endpoint", not "not allowed").
    for (method, pattern) in &documented {
        let path = concrete(pattern);
        let body = (method == "PUT").then(|| serde_json::json!({ "manifest": "budget_ms = 900" }));
        let reply = admin_request(&host, method, &path, body.as_ref()).await;
        let text = reply.text();
        assert!(
            !text.contains("no admin endpoint") && !text.contains("is not allowed"),
            "{method} {path}: {} {text}",
            reply.status
        );
        assert!(
            reply.status < 500,
            "{method} {path}: {} {text}",
            reply.status
        );
    }
}

#[test]
fn the_cli_and_the_dashboard_only_use_documented_routes() {
    let document: Value =
        serde_json::from_str(droplet_host::admin::document()).expect("the document is JSON");
    let paths: Vec<&String> = document["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .collect();
    let sources = [
        (
            "app.js",
            include_str!("../../host/src/admin/ui/app.js").to_string(),
        ),
        (
            "remote.rs",
            include_str!("../../host/src/bin/droplet/remote.rs").to_string(),
        ),
    ];
    for (file, source) in sources {
        let mut found = 0;
        for piece in source
            .split('"')
            .filter(|piece| piece.starts_with("/_admin"))
        {
            // The literal up to its first placeholder or query.
            let literal = piece.split(['{', '?']).next().unwrap_or(piece);
            found += 1;
            assert!(
                paths.iter().any(|path| path.starts_with(literal)),
                "{file} uses {literal}, which no documented route starts with"
            );
        }
        assert!(found >= 2, "{file}: found only {found} admin paths");
    }
}

#[tokio::test]
async fn overview_series_and_tail_show_live_traffic() {
    let host = watched_host().await;
    let token_refused = host.get("/_admin/overview").await;
    token_refused.assert_error(401, "unauthorized");

    for _ in 0..40 {
        assert_eq!(host.get("/hello/").await.status, 200);
    }
    for _ in 0..10 {
        assert_eq!(host.get("/echo/?status=500").await.status, 500);
        assert_eq!(host.get("/echo/").await.status, 200);
    }
    assert_eq!(host.get("/counter/").await.status, 200);

    // The finished seconds reach the overview within a second or two.
    let overview = eventually(Duration::from_secs(5), "hello's rate", || async {
        let reply = admin_request(
            &host,
            "GET",
            "/_admin/overview?sort=requests_per_s&points=60",
            None,
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let overview = reply.json();
        (row(&overview, "hello")["requests_per_s"].as_f64() > Some(0.0)).then_some(overview)
    })
    .await;
    assert_eq!(overview["total"], 3);
    assert_eq!(overview["host"]["droplets"], 3);
    assert!(overview["host"]["requests_per_s"].as_f64() > Some(0.0));
    // Sorted by rate, busiest first.
    assert_eq!(overview["droplets"][0]["name"], "hello");
    let hello = row(&overview, "hello");
    assert_eq!(hello["state"], "active");
    assert_eq!(hello["requests"], 40);
    assert!(hello["p99_ms"].as_f64() > Some(0.0), "{hello}");
    assert_eq!(
        hello["series"]["requests_per_s"].as_array().map(Vec::len),
        Some(60)
    );
    assert!(
        hello["series"]["requests_per_s"]
            .as_array()
            .is_some_and(|points| points.iter().any(|p| p.as_f64() > Some(0.0))),
        "{hello}"
    );
    let echo = row(&overview, "echo");
    assert!(
        (40.0..=60.0).contains(&echo["error_pct"].as_f64().unwrap_or(0.0)),
        "half of echo's answers were 500: {echo}"
    );
    assert_eq!(row(&overview, "counter")["kv"]["keys"], 1);

    // Filtered and paged.
    let filtered = admin_request(&host, "GET", "/_admin/overview?filter=ECH", None)
        .await
        .json();
    assert_eq!(filtered["total"], 1);
    assert_eq!(filtered["droplets"][0]["name"], "echo");
    let paged = admin_request(&host, "GET", "/_admin/overview?limit=1&offset=1", None)
        .await
        .json();
    assert_eq!(paged["droplets"].as_array().map(Vec::len), Some(1));
    assert_eq!(paged["droplets"][0]["name"], "echo");
    admin_request(&host, "GET", "/_admin/overview?sort=bogus", None)
        .await
        .assert_error(400, "bad_request");
    admin_request(&host, "GET", "/_admin/overview?limit=-1", None)
        .await
        .assert_error(400, "bad_request");
    admin_request(&host, "GET", "/_admin/droplets/echo/logs?after=soon", None)
        .await
        .assert_error(400, "bad_request");
    assert_eq!(host.get("/hello/").await.status, 200, "hello still answers");

    // Five minutes of seconds, the traffic in the last of them.
    let series = admin_request(&host, "GET", "/_admin/droplets/hello/series", None)
        .await
        .json();
    let rates = series["requests_per_s"].as_array().expect("rates");
    assert_eq!(rates.len(), 300);
    assert_eq!(series["step_s"], 1);
    let total: f64 = rates.iter().filter_map(Value::as_f64).sum();
    assert!((1.0..=40.0).contains(&total), "{total}");

    // The tail: echo's access lines with their trace ids, filterable.
    let tail = admin_request(&host, "GET", "/_admin/droplets/echo/logs", None)
        .await
        .json();
    let lines = tail["lines"].as_array().expect("lines");
    assert!(lines.len() >= 20, "{tail}");
    assert!(lines.iter().all(|line| line["droplet"] == "echo"));
    let failed = lines
        .iter()
        .find(|line| line["status_code"] == 500)
        .expect("an access line of a 500");
    let trace = failed["trace_id"].as_str().expect("trace id");
    let one = admin_request(
        &host,
        "GET",
        &format!("/_admin/droplets/echo/logs?trace_id={trace}"),
        None,
    )
    .await
    .json();
    assert!(
        one["lines"]
            .as_array()
            .is_some_and(|lines| !lines.is_empty() && lines.iter().all(|l| l["trace_id"] == trace)),
        "{one}"
    );
    // After the cursor: only what came since.
    let next = tail["next"].as_u64().expect("next");
    assert_eq!(host.get("/echo/?marker=after").await.status, 200);
    let newer = eventually(Duration::from_secs(5), "the newer access line", || async {
        let page = admin_request(
            &host,
            "GET",
            &format!("/_admin/droplets/echo/logs?after={next}"),
            None,
        )
        .await
        .json();
        let lines = page["lines"].as_array()?.clone();
        lines
            .iter()
            .any(|line| line["target"] == "droplet::access")
            .then_some(lines)
    })
    .await;
    // The guest's own line and the access line of that one request.
    let traces: BTreeSet<&str> = newer
        .iter()
        .filter_map(|l| l["trace_id"].as_str())
        .collect();
    assert_eq!(traces.len(), 1, "{newer:?}");
    assert!(
        newer
            .iter()
            .any(|line| line["target"] == "droplet::guest" && line["message"] == "echoing")
    );
    assert!(
        newer
            .iter()
            .any(|line| line["status_code"] == 200 && line["endpoint"] == "/echo/")
    );
    admin_request(&host, "GET", "/_admin/droplets/nobody/logs", None)
        .await
        .assert_error(404, "droplet_not_found");

    // The page itself: served with its own narrow CSP, assets embedded.
    let page = host.get("/_admin/ui").await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("/_admin/ui/app.js"));
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(host.get("/_admin/ui/app.js").await.status, 200);
    host.get("/_admin/ui/other.js")
        .await
        .assert_error(404, "droplet_not_found");
}

/// An OTLP/HTTP receiver: keeps every JSON export it is sent.
struct Receiver {
    addr: SocketAddr,
    exports: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("receiver address");
        let exports = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&exports);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let kept = Arc::clone(&kept);
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let kept = Arc::clone(&kept);
                        async move {
                            let path = req.uri().path().to_string();
                            let body = req.into_body().collect().await?.to_bytes();
                            if path == "/v1/traces"
                                && let Ok(export) = serde_json::from_slice::<Value>(&body)
                            {
                                kept.lock().unwrap().push(export);
                            }
                            Ok::<_, hyper::Error>(
                                http::Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from_static(b"{}")))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, exports }
    }

    /// Every span received so far, by span id.
    fn spans(&self) -> HashMap<String, Value> {
        let mut spans = HashMap::new();
        for export in self.exports.lock().unwrap().iter() {
            for resource in export["resourceSpans"].as_array().into_iter().flatten() {
                for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                    for span in scope["spans"].as_array().into_iter().flatten() {
                        if let Some(id) = span["spanId"].as_str() {
                            spans.insert(id.to_string(), span.clone());
                        }
                    }
                }
            }
        }
        spans
    }
}

fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|attribute| attribute["key"] == key)
        .map(|attribute| &attribute["value"])
}

#[tokio::test]
async fn traces_reach_an_otlp_receiver_with_their_steps() {
    let receiver = Receiver::start().await;
    let host = HostBuilder::new()
        .droplet("counter", "counter")
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            &format!("http://{}", receiver.addr),
        )
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_SERVICE_NAME", "droplet-e2e")
        .start()
        .await;

    // A caller's trace is continued: same trace id, its span the parent.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let reply = host
        .send(
            Request::get("/counter/")
                .header("traceparent", format!("00-{trace}-{caller_span}-01"))
                .body(Bytes::new())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-trace-id"), Some(trace));

    let spans = eventually(Duration::from_secs(10), "the request's spans", || async {
        let spans: Vec<Value> = receiver
            .spans()
            .into_values()
            .filter(|span| span["traceId"] == trace)
            .collect();
        let names: BTreeSet<&str> = spans.iter().filter_map(|s| s["name"].as_str()).collect();
        [
            "GET /counter",
            "queue",
            "instantiate",
            "guest",
            "kv.increment",
        ]
        .iter()
        .all(|name| names.contains(name))
        .then_some(spans)
    })
    .await;
    let by_name = |name: &str| {
        spans
            .iter()
            .find(|span| span["name"] == name)
            .unwrap_or_else(|| panic!("no span {name}"))
    };
    let request = by_name("GET /counter");
    assert_eq!(request["parentSpanId"], caller_span);
    assert_eq!(request["kind"], 2, "a server span: {request}");
    assert_eq!(
        attribute(request, "droplet").and_then(|v| v["stringValue"].as_str()),
        Some("counter")
    );
    let status = attribute(request, "http.response.status_code").expect("status attribute");
    assert!(
        status["intValue"] == 200 || status["intValue"] == "200",
        "{status}"
    );
    assert!(attribute(request, "droplet.version").is_some(), "{request}");
    for step in ["queue", "instantiate", "guest"] {
        assert_eq!(
            by_name(step)["parentSpanId"],
            request["spanId"],
            "{step} is a child of the request"
        );
    }
    let kv = by_name("kv.increment");
    assert_eq!(kv["parentSpanId"], by_name("guest")["spanId"]);
    assert_eq!(
        attribute(kv, "kv.op").and_then(|v| v["stringValue"].as_str()),
        Some("increment")
    );
    let resource_named = receiver.exports.lock().unwrap().iter().any(|export| {
        export["resourceSpans"][0]["resource"]["attributes"]
            .as_array()
            .is_some_and(|attrs| {
                attrs.iter().any(|a| {
                    a["key"] == "service.name" && a["value"]["stringValue"] == "droplet-e2e"
                })
            })
    });
    assert!(resource_named, "service.name comes from OTEL_SERVICE_NAME");

    // Without a traceparent the host's trace id is the new trace's id, so
    // `x-trace-id` finds the trace.
    let reply = host.get("/counter/").await;
    let own = reply.header("x-trace-id").expect("x-trace-id").to_string();
    eventually(Duration::from_secs(10), "the second trace", || async {
        receiver
            .spans()
            .values()
            .any(|span| span["traceId"] == own.as_str() && span["name"] == "GET /counter")
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_overview_sorts_filters_and_pages_a_thousand_droplets() {
    let mut builder = HostBuilder::new()
        .arg("--lazy")
        .env("JWT_SECRET", TEST_SECRET);
    for i in 0..1000 {
        builder = builder.file(&format!("d{i:04}.wasm"), example_variant("hello", i));
    }
    let host = builder.start().await;
    for _ in 0..5 {
        assert_eq!(host.get("/d0500/").await.status, 200);
    }
    let overview = |query: &'static str| {
        let host = &host;
        async move {
            let reply =
                admin_request(host, "GET", &format!("/_admin/overview?{query}"), None).await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            reply.json()
        }
    };
    let first = overview("points=60").await;
    assert_eq!(first["total"], 1000);
    assert_eq!(first["droplets"].as_array().map(Vec::len), Some(50));
    assert_eq!(first["droplets"][0]["name"], "d0000");
    assert_eq!(first["droplets"][0]["state"], "inactive");
    let last = overview("offset=990&limit=50").await;
    assert_eq!(last["droplets"].as_array().map(Vec::len), Some(10));
    assert_eq!(last["droplets"][9]["name"], "d0999");
    let busiest = overview("sort=requests&limit=1").await;
    assert_eq!(busiest["droplets"][0]["name"], "d0500");
    assert_eq!(busiest["droplets"][0]["requests"], 5);
    let filtered = overview("filter=d099").await;
    assert_eq!(filtered["total"], 10);
    let backwards = overview("sort=name&order=desc&limit=2").await;
    assert_eq!(backwards["droplets"][0]["name"], "d0999");
}

#[tokio::test]
async fn a_host_without_a_log_tail_says_so_and_keeps_serving() {
    let host = HostBuilder::new()
        .droplet("hello", "hello")
        .env("JWT_SECRET", TEST_SECRET)
        .arg("--log-tail-lines")
        .arg("0")
        .start()
        .await;
    assert_eq!(host.get("/hello/").await.status, 200);
    let message = admin_request(&host, "GET", "/_admin/droplets/hello/logs", None)
        .await
        .assert_error(503, "droplet_unavailable");
    assert!(message.contains("--log-tail-lines 0"), "{message}");
    assert_eq!(host.get("/hello/").await.status, 200, "hello still answers");
    // The rest of the dashboard's data does not depend on the tail.
    let overview = admin_request(&host, "GET", "/_admin/overview", None).await;
    assert_eq!(overview.status, 200, "{}", overview.text());
}
