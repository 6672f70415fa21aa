//! Attacks from inside: the `hostile` example droplet tries, one path per
//! attack, what a hostile author could deploy. Each test asserts the
//! documented answer and that a healthy droplet keeps answering meanwhile.

use std::time::Duration;

use futures::future::join_all;
use serde_json::Value;

use crate::support::{GENEROUS, Host, HostBuilder};

async fn hostile_host(manifest: &str) -> Host {
    HostBuilder::new()
        .droplet_with("hostile", "hostile", manifest)
        // The bystander: a budget no load can overrun, so that only the
        // attack can make it fail.
        .droplet_with("hello", "hello", GENEROUS)
        .start()
        .await
}

/// Runs `attack` while `hello` is asked, and checks hello answered 200
/// every time.
async fn while_healthy_answers<T>(host: &Host, attack: impl std::future::Future<Output = T>) -> T {
    let healthy = async {
        let mut statuses = Vec::new();
        for _ in 0..10 {
            statuses.push(host.get("/hello/").await.status);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        statuses
    };
    let (result, statuses) = tokio::join!(attack, healthy);
    assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    result
}

#[tokio::test]
async fn nothing_a_request_leaves_in_memory_is_seen_by_a_later_one() {
    let host = hostile_host("max_concurrency = 64\n").await;
    let check = |reply: crate::support::Reply| {
        assert_eq!(reply.status, 200, "{}", reply.text());
        let seen = reply.json();
        assert_eq!(seen["static"], Value::Null, "static memory leaked: {seen}");
        assert_eq!(seen["heap"], Value::Null, "heap leaked: {seen}");
    };
    // One after another: each instance most likely reuses the last one's slot.
    for i in 0..50 {
        check(host.get(&format!("/hostile/remember?marker=seq-{i}")).await);
    }
    // Many at once, wave after wave.
    for wave in 0..8 {
        let replies = join_all((0..32).map(|i| {
            let host = &host;
            async move {
                host.get(&format!("/hostile/remember?marker=w{wave}-{i}"))
                    .await
            }
        }))
        .await;
        replies.into_iter().for_each(check);
    }
}

/// Slots handed from one droplet to another (no slot stays warm, and a
/// pool of two) are wiped as well: neither droplet sees the other's marker.
#[tokio::test]
async fn a_slot_taken_from_another_droplet_carries_nothing_over() {
    let host = HostBuilder::new()
        .droplet("first", "hostile")
        .droplet("second", "hostile")
        .arg("--warm-slots")
        .arg("0")
        .arg("--max-instances")
        .arg("2")
        .start()
        .await;
    for i in 0..40 {
        let name = if i % 2 == 0 { "first" } else { "second" };
        let reply = host
            .get(&format!("/{name}/remember?marker={name}-{i}"))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let seen = reply.json();
        assert_eq!(seen["static"], Value::Null, "static memory leaked: {seen}");
        assert_eq!(seen["heap"], Value::Null, "heap leaked: {seen}");
    }
}

#[tokio::test]
async fn the_sandbox_denies_files_environment_and_sockets() {
    let host = hostile_host("").await;
    let reply = while_healthy_answers(&host, host.get("/hostile/escape")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let attempts = reply.json();
    for attempt in [
        "read_root",
        "read_passwd",
        "write_tmp",
        "connect",
        "listen",
        "resolve",
    ] {
        assert!(
            attempts[attempt].get("denied").is_some(),
            "{attempt} was allowed: {attempts}"
        );
    }
    assert_eq!(attempts["environment"], serde_json::json!([]), "{attempts}");
}

#[tokio::test]
async fn a_stack_overflow_is_a_500_and_others_keep_answering() {
    let host = hostile_host("").await;
    let reply = while_healthy_answers(&host, host.get("/hostile/stack")).await;
    reply.assert_error(500, "droplet_trap");
}

#[tokio::test]
async fn a_huge_response_is_a_502_and_others_keep_answering() {
    let host = hostile_host("").await;
    let reply = while_healthy_answers(&host, host.get("/hostile/huge?mb=20")).await;
    let message = reply.assert_error(502, "invalid_response");
    assert!(message.contains("over the limit"), "{message}");
    assert_eq!(host.get("/hostile/huge?mb=1").await.status, 200);
}

#[tokio::test]
async fn an_oversized_body_is_refused_before_the_host_copies_it() {
    let host = hostile_host("memory_mb = 200\n").await;
    // Warm up: the droplet compiled and one instance run.
    assert_eq!(host.get("/hostile/huge?mb=1").await.status, 200);
    let before = host.memory_kib("VmRSS");
    // 120 MiB offered in one piece, past the SDK: the guest holds it in its
    // own memory (which counts in the host's RSS); the host must not copy it.
    let reply = while_healthy_answers(&host, host.get("/hostile/huge-chunk?mb=120")).await;
    let message = reply.assert_error(502, "invalid_response");
    assert!(message.contains("over the limit"), "{message}");
    let grown_mib = host.memory_kib("VmHWM").saturating_sub(before) / 1024;
    eprintln!("peak grew {grown_mib} MiB");
    // The guest's 120 MiB plus its allocator's slack; a copy would add 120.
    assert!(
        grown_mib < 190,
        "the host's peak memory grew {grown_mib} MiB for a 120 MiB body"
    );
}

#[tokio::test]
async fn response_bytes_past_the_hosts_budget_are_a_503() {
    let host = HostBuilder::new()
        .droplet("hostile", "hostile")
        .droplet("hello", "hello")
        .arg("--max-response-buffer-mb")
        .arg("1")
        .start()
        .await;
    let reply = host.get("/hostile/huge?mb=2").await;
    reply.assert_error(503, "host_busy");
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(host.get("/hostile/huge?mb=0").await.status, 200);
    assert_eq!(host.get("/hello/").await.status, 200);
}

#[tokio::test]
async fn a_host_call_loop_is_stopped_at_its_budget() {
    let host = hostile_host("budget_ms = 100\n").await;
    let reply = while_healthy_answers(&host, host.get("/hostile/host-loop")).await;
    reply.assert_error(504, "budget_exceeded");
}

/// A `wasi:http` component (no grants at all) that keeps creating `fields`
/// of ~120 KiB makes the host, not itself, hold them: the call is stopped
/// at its limit of host memory and the host keeps serving.
#[tokio::test]
async fn hoarding_wasi_http_resources_stops_the_call_not_the_host() {
    let host = HostBuilder::new()
        .droplet_with("web", "proxy-hello", GENEROUS)
        .droplet_with("hello", "hello", GENEROUS)
        .start()
        .await;
    assert_eq!(host.get("/web/").await.status, 200);
    let before = host.memory_kib("VmRSS");
    let reply = while_healthy_answers(&host, host.get("/web/hoard")).await;
    let message = reply.assert_error(500, "droplet_trap");
    assert!(
        message.contains("made the host hold more than its limit of 112 MiB"),
        "{message}"
    );
    let grown_mib = host.memory_kib("VmHWM").saturating_sub(before) / 1024;
    eprintln!("peak grew {grown_mib} MiB");
    // Its limit (memory_mb 64 + 48) and the allocator's slack; unbounded,
    // it grew past a GiB in seconds.
    assert!(grown_mib < 400, "the host's peak grew {grown_mib} MiB");
    assert_eq!(host.get("/web/").await.status, 200);
}

/// Calls together are held to the host-wide budget: past it, the call that
/// asked for more answers 503 host_busy.
#[tokio::test]
async fn host_memory_past_the_hosts_budget_is_a_503() {
    let host = HostBuilder::new()
        .droplet_with("web", "proxy-hello", GENEROUS)
        .droplet_with("hello", "hello", GENEROUS)
        .arg("--max-guest-held-mb")
        .arg("32")
        .start()
        .await;
    let reply = host.get("/web/hoard").await;
    reply.assert_error(503, "host_busy");
    assert_eq!(reply.header("retry-after"), Some("1"));
    // Its share was handed back: others (and it) are served.
    assert_eq!(host.get("/web/").await.status, 200);
    assert_eq!(host.get("/hello/").await.status, 200);
}

/// A droplet cannot put the dashboard under its service worker: it may not
/// widen a worker's scope with `Service-Worker-Allowed`, nor serve a
/// worker script from `/{name}` (whose folder is `/`); under `/{name}/` it
/// may.
#[tokio::test]
async fn droplet_content_cannot_take_the_dashboards_origin() {
    let host = HostBuilder::new()
        .droplet_with("echo", "echo", GENEROUS)
        .env("JWT_SECRET", crate::support::TEST_SECRET)
        .start()
        .await;
    let widened = host
        .get("/echo/sw.js?set=service-worker-allowed:/&set=x-kept:yes")
        .await;
    assert_eq!(widened.status, 200);
    assert_eq!(widened.header("x-kept"), Some("yes"));
    assert_eq!(widened.header("service-worker-allowed"), None);
    let script = |path: &str| {
        http::Request::get(path)
            .header("service-worker", "script")
            .body(bytes::Bytes::new())
            .unwrap()
    };
    let at_root = host.send(script("/echo?sw")).await;
    let message = at_root.assert_error(403, "forbidden");
    assert!(message.contains("under /echo/"), "{message}");
    assert_eq!(host.send(script("/echo/sw.js")).await.status, 200);
}

/// With `--admin-listen`, the admin API and dashboard have their own
/// origin: not on the droplets' listener, and no droplet on theirs.
#[tokio::test]
async fn the_admin_api_can_live_on_its_own_listener() {
    let host = HostBuilder::new()
        .droplet_with("echo", "echo", GENEROUS)
        .env("JWT_SECRET", crate::support::TEST_SECRET)
        .arg("--admin-listen")
        .arg("127.0.0.1:0")
        .start()
        .await;
    let admin = host
        .admin_addr
        .expect("the listening line names the admin address");
    assert_ne!(admin, host.addr());
    let token = crate::support::hs256_token(&crate::support::claims_with_scope("droplets:admin"));
    let list = |path: &str| {
        http::Request::get(path)
            .header("authorization", format!("Bearer {token}"))
            .body(bytes::Bytes::new())
            .unwrap()
    };
    let public = host.send(list("/_admin/droplets")).await;
    let message = public.assert_error(404, "not_found");
    assert!(message.contains("--admin-listen"), "{message}");
    assert_eq!(host.send(list("/_admin/ui")).await.status, 404);
    let listed = host.send_to(admin, list("/_admin/droplets")).await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert!(listed.text().contains("echo"));
    assert_eq!(host.send_to(admin, list("/_admin/ui")).await.status, 200);
    host.send_to(admin, list("/echo/"))
        .await
        .assert_error(404, "not_found");
    assert_eq!(host.get("/echo/").await.status, 200);
    assert_eq!(host.send_to(admin, list("/health")).await.status, 200);
}
