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
