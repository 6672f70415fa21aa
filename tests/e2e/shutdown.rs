//! Graceful shutdown: in-flight requests finish, then the host exits 0.

use std::time::Duration;

use bytes::Bytes;
use http::Request;

use crate::support::HostBuilder;

#[tokio::test]
async fn graceful_shutdown_lets_an_in_flight_request_finish() {
    let mut host = HostBuilder::new()
        .droplet_with("echo", "echo", "budget_ms = 5000\n")
        .start()
        .await;
    let request = Request::get("/echo/?sleep_ms=700")
        .header("x-request-id", "in-flight-1")
        .body(Bytes::new())
        .unwrap();
    let send = host.try_send(request);
    let terminate = async {
        host.wait_for_log(
            |line| line["trace_id"] == "in-flight-1" && line["message"] == "echoing",
            Duration::from_secs(10),
        )
        .await
        .expect("request started");
        host.signal("TERM");
    };
    let (reply, ()) = tokio::join!(send, terminate);
    let reply = reply.expect("the in-flight request is answered");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["path"], "/");
    let status = host
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("host exits");
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn a_write_acknowledged_just_before_sigterm_is_on_disk_afterwards() {
    let data = tempfile::tempdir().unwrap();
    // Relaxed writes are acknowledged before they reach the disk: only the
    // last flush of an orderly shutdown makes them durable.
    let mut host = HostBuilder::new()
        .droplet("kv", "kvstore")
        .data(data.path())
        .arg("--kv-durability")
        .arg("relaxed")
        .start()
        .await;
    let put = Request::put("/kv/k/last-word")
        .body(Bytes::from_static(b"kept"))
        .unwrap();
    assert_eq!(host.send(put).await.status, 200);
    host.signal("TERM");
    let status = host
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("host exits");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        host.log_lines()
            .iter()
            .any(|line| line["message"] == "kv storage flushed"),
        "the host says it flushed kv storage before exiting"
    );

    let host = HostBuilder::new()
        .droplet("kv", "kvstore")
        .data(data.path())
        .start()
        .await;
    let reply = host.get("/kv/k/last-word").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "kept");
}
