//! Record and replay: a droplet call that fails in production is recorded
//! (its request, every import's answer, its clocks and random bytes) and
//! run again by `droplet replay` — elsewhere, with no kv and no upstream —
//! answering exactly as it did; a fixed build is replayed against the same
//! recorded world, and one that reads something else is stopped where it
//! departs. On a fleet, any host serves any host's recordings.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::fleet::fleet_host;
use crate::pg::TestDatabase;
use crate::support::{
    Host, HostBuilder, PATIENCE, TEST_SECRET, admin_request, claims_with_scope, cli, hs256_token,
};

/// An upstream that prices every item at 1250; aborted when dropped.
struct Prices {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Prices {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service = service_fn(|_req: hyper::Request<hyper::body::Incoming>| async {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from("1250"))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, task }
    }

    /// The pricing droplet's manifest, calling this upstream.
    fn manifest(&self, extra: &str) -> String {
        format!(
            "allowed_outbound_hosts = [\"http://{0}\"]\n{extra}\n[config]\nupstream = \"http://{0}\"\n",
            self.addr
        )
    }
}

impl Drop for Prices {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn admin_token() -> String {
    hs256_token(&claims_with_scope("droplets:admin"))
}

fn request(method: &str, path: &str, body: &str, headers: &[(&str, String)]) -> Request<Bytes> {
    let mut builder = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    builder.body(Bytes::from(body.to_string())).unwrap()
}

/// The recordings `host` lists for `droplet`, once there are `count`.
async fn wait_for_recordings(host: &Host, droplet: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let listed = admin_request(
            host,
            "GET",
            &format!("/_admin/recordings?droplet={droplet}"),
            None,
        )
        .await;
        assert_eq!(listed.status, 200, "{}", listed.text());
        let recordings = listed.json()["recordings"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if recordings.len() >= count {
            return recordings;
        }
        assert!(
            Instant::now() < deadline,
            "{count} recordings never appeared: {recordings:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The trace ids of `droplet`'s recordings, newest first, once `trace_id`
/// is the newest.
async fn wait_for_newest(host: &Host, droplet: &str, trace_id: &str) -> Vec<String> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let kept: Vec<String> = wait_for_recordings(host, droplet, 1)
            .await
            .iter()
            .map(|recording| recording["trace_id"].as_str().unwrap().to_string())
            .collect();
        if kept.first().map(String::as_str) == Some(trace_id) {
            return kept;
        }
        assert!(
            Instant::now() < deadline,
            "{trace_id} never became the newest: {kept:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn wasm_path(name: &str) -> String {
    let dir = std::env::var_os("DROPLET_EXAMPLES_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/wasm32-wasip2/release")
        });
    // Test-only examples stay in cargo's output directory, named as
    // their crate's library.
    let copied = dir.join(format!("{name}.wasm"));
    if copied.exists() {
        return copied.display().to_string();
    }
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"))
        .display()
        .to_string()
}

/// `droplet replay` with `args`, as JSON: its report, and whether it
/// exited 0.
fn replay(args: &[&str]) -> (bool, Value, String) {
    let mut all = vec!["replay", "--json"];
    all.extend_from_slice(args);
    let (ok, stdout, stderr) = cli(&all, &[]);
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|err| panic!("not a JSON report ({err}): {stdout}\n{stderr}"));
    (ok, report, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_call_is_replayed_exactly_without_its_host_kv_or_upstream() {
    let prices = Prices::start().await;
    let host = HostBuilder::new()
        .env("JWT_SECRET", TEST_SECRET)
        .droplet_with("pricing", "pricing", &prices.manifest(""))
        .start()
        .await;
    let stocked = host
        .send(request("PUT", "/pricing/?item=apple", "3", &[]))
        .await;
    assert_eq!(stocked.status, 200, "{}", stocked.text());
    let quoted = host.get("/pricing/?item=apple").await;
    assert_eq!(quoted.status, 200, "{}", quoted.text());
    assert_eq!(quoted.json()["unit_price"], 416);

    // Pears have no stock: the bug. The caller's token is verified, and
    // must never be kept.
    let caller_token = hs256_token(&claims_with_scope("shop"));
    let failed = host
        .send(request(
            "GET",
            "/pricing/?item=pear",
            "",
            &[("authorization", format!("Bearer {caller_token}"))],
        ))
        .await;
    let message = failed.assert_error(500, "no_stock");
    let trace_id = failed.header("x-trace-id").unwrap().to_string();

    // Errors mode: only the failure was recorded.
    let recordings = wait_for_recordings(&host, "pricing", 1).await;
    assert_eq!(recordings.len(), 1, "{recordings:?}");
    assert_eq!(recordings[0]["trace_id"], trace_id.as_str());
    assert_eq!(recordings[0]["reason"], "error");
    assert_eq!(recordings[0]["status"], 500);
    let document = admin_request(
        &host,
        "GET",
        &format!("/_admin/recordings/{trace_id}"),
        None,
    )
    .await;
    assert_eq!(document.status, 200);
    let text = document.text();
    assert!(!text.contains(&caller_token), "the token was recorded");
    assert!(
        !text.to_ascii_lowercase().contains("authorization"),
        "{text}"
    );
    let recording = document.json();
    assert_eq!(recording["format"], "droplet-recording/1");
    assert_eq!(
        recording["claims"]["scope"], "shop",
        "the verified claims are kept"
    );
    let imports: Vec<&str> = recording["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|call| call["import"].as_str().unwrap())
        .collect();
    assert_eq!(
        imports,
        ["kv.get", "config.get", "http.send"],
        "{recording:#}"
    );
    assert_eq!(recording["calls"][0]["key"], "stock:pear");
    assert!(!recording["sources"]["wall"].as_array().unwrap().is_empty());
    assert!(
        !recording["sources"]["secure_random"]
            .as_str()
            .unwrap()
            .is_empty()
    );

    // Recordings are the admin's alone.
    let user = host
        .send(request(
            "GET",
            "/_admin/recordings",
            "",
            &[("authorization", format!("Bearer {caller_token}"))],
        ))
        .await;
    user.assert_error(403, "forbidden");
    host.get(&format!("/_admin/recordings/{trace_id}"))
        .await
        .assert_error(401, "unauthorized");

    // By trace id, with the module fetched from the host: identical.
    let url = host.url();
    let token = admin_token();
    let (ok, report, stderr) = replay(&[&trace_id, "--host", &url, "--token", &token]);
    assert!(ok, "{report:#}\n{stderr}");
    assert_eq!(report["identical"], true);
    // Saved for elsewhere.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pear.json");
    let file = file.to_str().unwrap();
    let (ok, _, stderr) = cli(
        &[
            "recording",
            "get",
            &trace_id,
            "-o",
            file,
            "--host",
            &url,
            "--token",
            &token,
        ],
        &[],
    );
    assert!(ok, "{stderr}");
    // No host, no kv, no upstream any more.
    drop(host);
    drop(prices);

    let pricing = wasm_path("pricing");
    let (ok, report, stderr) = replay(&[file, "--wasm", &pricing]);
    assert!(ok, "{report:#}\n{stderr}");
    assert_eq!(report["identical"], true);
    assert!(report["divergence"].is_null());
    assert_eq!(report["replayed"]["status"], 500);
    assert_eq!(report["replayed"]["body"], report["recorded"]["body"]);
    assert!(
        report["replayed"]["body"]
            .as_str()
            .unwrap()
            .contains(&message),
        "the same body, quote id and time included: {report:#}"
    );
    let (_, again, _) = replay(&[file, "--wasm", &pricing]);
    assert_eq!(again, report, "a replay is deterministic");

    // The fixed build, in the same recorded world: 200.
    let (ok, fixed, _) = replay(&[file, "--wasm", &wasm_path("pricing_fixed")]);
    assert!(!ok, "a different answer is not identical");
    assert_eq!(fixed["identical"], false);
    assert!(fixed["divergence"].is_null(), "{fixed:#}");
    assert_eq!(fixed["replayed"]["status"], 200, "{fixed:#}");
    let body: Value = serde_json::from_str(fixed["replayed"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["price"], 1250, "the recorded upstream's answer");
    assert_eq!(body["stock"], 0);

    // A build that reads another key departs at that call, and stops.
    let (ok, rekeyed, _) = replay(&[file, "--wasm", &wasm_path("pricing_rekeyed")]);
    assert!(!ok);
    assert_eq!(
        rekeyed["divergence"]["message"],
        r#"call 1: recorded kv.get("stock:pear"), replayed kv.get("inventory:pear")"#,
        "{rekeyed:#}"
    );
    assert_eq!(rekeyed["replayed"]["code"], "replay_diverged");

    let (ok, _, stderr) = cli(&["replay", file, "--continue-live"], &[]);
    assert!(!ok && stderr.contains("never reaches live"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_choose_what_is_recorded_and_bounds_drop_the_oldest_on_files() {
    modes_and_bounds(HostBuilder::new().env("JWT_SECRET", TEST_SECRET)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_choose_what_is_recorded_and_bounds_drop_the_oldest_in_postgresql() {
    let Some(db) = TestDatabase::create("replay_bounds").await else {
        return;
    };
    modes_and_bounds(fleet_host(&db, "a")).await;
}

/// The same checks on either store: what each mode keeps, and the count
/// bound dropping the oldest.
async fn modes_and_bounds(host: HostBuilder) {
    let prices = Prices::start().await;
    let host = host
        .arg("--record-keep")
        .arg("3")
        .droplet_with("pricing", "pricing", &prices.manifest(""))
        .droplet_with("every", "pricing", &prices.manifest("record = \"all\""))
        .droplet_with("never", "pricing", &prices.manifest("record = \"off\""))
        .droplet_with("bad", "pricing", &prices.manifest("record = \"sometimes\""))
        .start()
        .await;
    // A mode that is not one is refused at load, naming the field; the
    // others serve.
    let refused = host.get("/bad/?item=fig").await;
    let why = refused.assert_error(503, "droplet_unavailable");
    assert!(why.contains("record"), "{why}");
    let mut failed = Vec::new();
    for _ in 0..5 {
        let reply = host.get("/pricing/?item=pear").await;
        reply.assert_error(500, "no_stock");
        failed.push(reply.header("x-trace-id").unwrap().to_string());
    }
    host.send(request("PUT", "/pricing/?item=fig", "2", &[]))
        .await;
    assert_eq!(host.get("/pricing/?item=fig").await.status, 200);
    // Asked for, without an admin token: not recorded; with one: recorded.
    let user = hs256_token(&claims_with_scope("shop"));
    let ignored = host
        .send(request(
            "GET",
            "/pricing/?item=fig",
            "",
            &[
                ("x-droplet-record", "1".into()),
                ("authorization", format!("Bearer {user}")),
            ],
        ))
        .await;
    assert_eq!(ignored.status, 200);
    let asked = host
        .send(request(
            "GET",
            "/pricing/?item=fig",
            "",
            &[
                ("x-droplet-record", "1".into()),
                ("authorization", format!("Bearer {}", admin_token())),
            ],
        ))
        .await;
    assert_eq!(asked.status, 200);
    let asked_trace = asked.header("x-trace-id").unwrap().to_string();

    // The newest three of six: the requested one and the last two failures.
    let kept = wait_for_newest(&host, "pricing", &asked_trace).await;
    assert_eq!(
        kept,
        [asked_trace.clone(), failed[4].clone(), failed[3].clone()]
    );
    let oldest = admin_request(
        &host,
        "GET",
        &format!("/_admin/recordings/{}", failed[0]),
        None,
    )
    .await;
    oldest.assert_error(404, "not_found");
    let requested = admin_request(
        &host,
        "GET",
        &format!("/_admin/recordings/{asked_trace}"),
        None,
    )
    .await;
    assert_eq!(requested.json()["reason"], "requested");

    // `record = "all"` keeps successes; `off` keeps nothing.
    assert_eq!(
        host.get("/every/?item=fig").await.status,
        500,
        "no stock in its own namespace"
    );
    host.send(request("PUT", "/every/?item=fig", "2", &[]))
        .await;
    assert_eq!(host.get("/every/?item=fig").await.status, 200);
    let every = wait_for_recordings(&host, "every", 3).await;
    assert!(
        every
            .iter()
            .any(|recording| recording["status"] == 200 && recording["reason"] == "all"),
        "{every:?}"
    );
    host.get("/never/?item=pear")
        .await
        .assert_error(500, "no_stock");
    // Recordings are written in order: once `every`'s next one is listed,
    // `never`'s failure would have been too.
    let last = host.get("/every/?item=fig").await;
    assert_eq!(last.status, 200);
    wait_for_newest(&host, "every", last.header("x-trace-id").unwrap()).await;
    let never = admin_request(&host, "GET", "/_admin/recordings?droplet=never", None).await;
    assert_eq!(never.json()["recordings"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_made_on_one_host_is_replayed_through_another() {
    let Some(db) = TestDatabase::create("replay_fleet").await else {
        return;
    };
    let prices = Prices::start().await;
    let a = fleet_host(&db, "a")
        .droplet_with("pricing", "pricing", &prices.manifest(""))
        .start()
        .await;
    let b = fleet_host(&db, "b").start().await;
    let failed = a.get("/pricing/?item=pear").await;
    failed.assert_error(500, "no_stock");
    let trace_id = failed.header("x-trace-id").unwrap().to_string();
    let listed = wait_for_recordings(&b, "pricing", 1).await;
    // B serves the droplet (and so its stored versions) once it follows A.
    let deadline = Instant::now() + PATIENCE;
    while b.get("/pricing/health").await.status != 200 {
        assert!(Instant::now() < deadline, "b never followed a");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(listed[0]["host"], "a");
    let (url, token) = (b.url(), admin_token());
    drop(a);
    drop(prices);
    let (ok, report, stderr) = replay(&[&trace_id, "--host", &url, "--token", &token]);
    assert!(ok, "{report:#}\n{stderr}");
    assert_eq!(report["identical"], true);
    assert_eq!(report["replayed"]["status"], 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasi_http_components_calls_are_recorded_and_replayed() {
    let prices = Prices::start().await;
    let manifest = format!(
        "record = \"all\"\nallowed_outbound_hosts = [\"http://{}\"]\n",
        prices.addr
    );
    let host = HostBuilder::new()
        .env("JWT_SECRET", TEST_SECRET)
        .droplet_with("proxy", "proxy-hello", &manifest)
        .start()
        .await;
    let sent = "a body the component reads as it streams";
    let echoed = host.send(request("POST", "/proxy/echo", sent, &[])).await;
    assert_eq!((echoed.status, echoed.text().as_str()), (200, sent));
    let echo_trace = echoed.header("x-trace-id").unwrap().to_string();
    // It calls the upstream, which answers too little: a 502 of its own.
    let called = host
        .get(&format!("/proxy/double-echo?to=http://{}", prices.addr))
        .await;
    let called_trace = called.header("x-trace-id").unwrap().to_string();
    wait_for_newest(&host, "proxy", &called_trace).await;

    let echo = admin_request(
        &host,
        "GET",
        &format!("/_admin/recordings/{echo_trace}"),
        None,
    )
    .await;
    let echo = echo.json();
    assert_eq!(echo["world"], "wasi:http/proxy");
    assert_eq!(echo["request"]["method"], "POST");
    let body = echo["request"]["body"].as_str().unwrap();
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    assert_eq!(body, sent.as_bytes(), "the body as the component read it");
    let call = admin_request(
        &host,
        "GET",
        &format!("/_admin/recordings/{called_trace}"),
        None,
    )
    .await;
    let call = call.json();
    assert_eq!(call["calls"][0]["import"], "http.send", "{call:#}");
    assert_eq!(call["outcome"]["response"]["status"], called.status);

    drop(prices);
    let (url, token) = (host.url(), admin_token());
    for trace in [&echo_trace, &called_trace] {
        let (ok, report, stderr) = replay(&[trace, "--host", &url, "--token", &token]);
        assert!(ok, "{report:#}\n{stderr}");
        assert_eq!(report["identical"], true);
        assert_eq!(report["replayed"]["body"], report["recorded"]["body"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_droplets_calls_are_recorded_and_replayed() {
    let host = HostBuilder::new()
        .env("JWT_SECRET", TEST_SECRET)
        .droplet_with("sse", "sse", "record = \"all\"\n")
        .start()
        .await;
    // A response streamed as it is written; a body read piece by piece and
    // sent back; a body counted; a response returned whole.
    let events = host.get("/sse/events").await;
    assert_eq!(events.status, 200);
    let sent = "pieces read as they arrive";
    let echoed = host.send(request("POST", "/sse/echo", sent, &[])).await;
    assert_eq!((echoed.status, echoed.text().as_str()), (200, sent));
    let counted = host.send(request("POST", "/sse/count", sent, &[])).await;
    assert_eq!(counted.status, 200);
    let missing = host.get("/sse/nowhere").await;
    assert_eq!(missing.status, 404);
    let traces: Vec<String> = [&events, &echoed, &counted, &missing]
        .iter()
        .map(|reply| reply.header("x-trace-id").unwrap().to_string())
        .collect();
    wait_for_newest(&host, "sse", &traces[3]).await;

    let echo = admin_request(
        &host,
        "GET",
        &format!("/_admin/recordings/{}", traces[1]),
        None,
    )
    .await;
    let echo = echo.json();
    assert_eq!(echo["world"], "fp:droplet/droplet");
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let read = engine
        .decode(echo["request"]["body"].as_str().unwrap())
        .unwrap();
    assert_eq!(read, sent.as_bytes(), "the body as the droplet read it");
    let written = engine
        .decode(echo["outcome"]["response"]["body"].as_str().unwrap())
        .unwrap();
    assert_eq!(written, sent.as_bytes(), "the body as the droplet wrote it");

    let (url, token) = (host.url(), admin_token());
    for (trace, reply) in traces.iter().zip([&events, &echoed, &counted, &missing]) {
        let (ok, report, stderr) = replay(&[trace, "--host", &url, "--token", &token]);
        assert!(ok, "{report:#}\n{stderr}");
        assert_eq!(report["replayed"]["status"], reply.status);
        assert_eq!(
            report["replayed"]["body"],
            reply.text().as_str(),
            "{report:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_to_other_droplets_are_recorded_and_replayed() {
    let host = HostBuilder::new()
        .env("JWT_SECRET", TEST_SECRET)
        .droplet_with(
            "gateway",
            "gateway",
            "record = \"all\"\nallowed_outbound_hosts = [\"http://echo.droplet.internal\"]\n",
        )
        .droplet("echo", "echo")
        .start()
        .await;
    // One call answered by the echo droplet, one refused by the allowlist:
    // both kept, in order, and both answered from the recording.
    let relayed = host
        .get("/gateway/relay?url=http%3A%2F%2Fecho.droplet.internal%2Fsaid%3Fx%3D1")
        .await;
    assert_eq!(relayed.status, 200, "{}", relayed.text());
    assert_eq!(relayed.json()["path"], "/said");
    let relayed_trace = relayed.header("x-trace-id").unwrap().to_string();
    let denied = host
        .get("/gateway/fetch?url=http%3A%2F%2Fother.droplet.internal%2F")
        .await;
    assert_eq!(denied.status, 502, "{}", denied.text());
    assert_eq!(
        denied.json()["error"]["kind"],
        "denied",
        "{}",
        denied.text()
    );
    let denied_trace = denied.header("x-trace-id").unwrap().to_string();
    wait_for_newest(&host, "gateway", &denied_trace).await;

    let recording = admin_request(
        &host,
        "GET",
        &format!("/_admin/recordings/{relayed_trace}"),
        None,
    )
    .await
    .json();
    assert_eq!(
        recording["calls"][0]["import"], "http.send",
        "{recording:#}"
    );
    assert_eq!(
        recording["calls"][0]["url"], "http://echo.droplet.internal/said?x=1",
        "{recording:#}"
    );
    let (url, token) = (host.url(), admin_token());
    for trace in [&relayed_trace, &denied_trace] {
        let (ok, report, stderr) = replay(&[trace, "--host", &url, "--token", &token]);
        assert!(ok, "{report:#}\n{stderr}");
        assert_eq!(report["identical"], true, "{report:#}");
        assert_eq!(report["replayed"]["body"], report["recorded"]["body"]);
    }
}
