//! Key-value storage through real droplets on a real sled store on disk.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use http::Request;
use serde_json::{Value, json};

use crate::support::{Host, HostBuilder};

async fn put(host: &Host, path: &str, body: impl Into<Bytes>) -> crate::support::Reply {
    host.send(Request::put(path).body(body.into()).unwrap())
        .await
}

async fn post(host: &Host, path: &str, body: impl Into<Bytes>) -> crate::support::Reply {
    host.send(Request::post(path).body(body.into()).unwrap())
        .await
}

async fn delete(host: &Host, path: &str) -> crate::support::Reply {
    host.send(Request::delete(path).body(Bytes::new()).unwrap())
        .await
}

#[tokio::test]
async fn every_kv_operation_works_through_a_droplet() {
    let host = HostBuilder::new().droplet("kv", "kvstore").start().await;
    assert_eq!(host.get("/kv/k/color").await.status, 404);
    assert_eq!(put(&host, "/kv/k/color", "blue").await.status, 200);
    let got = host.get("/kv/k/color").await;
    assert_eq!((got.status, got.text().as_str()), (200, "blue"));
    assert_eq!(host.get("/kv/exists/color").await.json()["exists"], true);
    // Binary values round-trip.
    let bytes: Vec<u8> = (0..=255u8).collect();
    put(&host, "/kv/k/bin", bytes.clone()).await;
    assert_eq!(host.get("/kv/k/bin").await.body.to_vec(), bytes);
    // compare-and-swap
    let cas = |expected: Value, new: Value| json!({ "expected": expected, "new": new }).to_string();
    assert_eq!(
        post(&host, "/kv/cas/color", cas(json!("red"), json!("green")))
            .await
            .json()["swapped"],
        false
    );
    assert_eq!(
        post(&host, "/kv/cas/color", cas(json!("blue"), json!("green")))
            .await
            .json()["swapped"],
        true
    );
    assert_eq!(host.get("/kv/k/color").await.text(), "green");
    assert_eq!(
        post(&host, "/kv/cas/fresh", cas(Value::Null, json!("1")))
            .await
            .json()["swapped"],
        true
    );
    assert_eq!(
        post(&host, "/kv/cas/fresh", cas(Value::Null, json!("2")))
            .await
            .json()["swapped"],
        false
    );
    assert_eq!(
        post(&host, "/kv/cas/fresh", cas(json!("1"), Value::Null))
            .await
            .json()["swapped"],
        true
    );
    assert_eq!(host.get("/kv/exists/fresh").await.json()["exists"], false);
    // increment
    assert_eq!(
        post(&host, "/kv/incr/n?delta=5", "").await.json()["value"],
        5
    );
    assert_eq!(
        post(&host, "/kv/incr/n?delta=-2", "").await.json()["value"],
        3
    );
    assert_eq!(host.get("/kv/k/n").await.text(), "3");
    assert_eq!(
        post(&host, "/kv/incr/color", "").await.status,
        409,
        "not a number"
    );
    // list
    let listed = host.get("/kv/list?prefix=").await.json();
    assert_eq!(listed["keys"], json!(["bin", "color", "n"]));
    assert_eq!(listed["next_cursor"], Value::Null);
    // delete
    assert_eq!(delete(&host, "/kv/k/color").await.json()["existed"], true);
    assert_eq!(delete(&host, "/kv/k/color").await.json()["existed"], false);
    assert_eq!(host.get("/kv/k/color").await.status, 404);
}

#[tokio::test]
async fn two_droplets_writing_the_same_key_see_only_their_own_values() {
    let host = HostBuilder::new()
        .droplet("alpha", "kvstore")
        .droplet("beta", "kvstore")
        .start()
        .await;
    put(&host, "/alpha/k/shared", "from alpha").await;
    put(&host, "/beta/k/shared", "from beta").await;
    // Keys that look like paths or tree names stay inside the namespace.
    put(&host, "/alpha/k/..%2Fbeta%2Fshared", "sneaky").await;
    assert_eq!(host.get("/alpha/k/shared").await.text(), "from alpha");
    assert_eq!(host.get("/beta/k/shared").await.text(), "from beta");
    assert_eq!(
        host.get("/beta/list?prefix=").await.json()["keys"],
        json!(["shared"])
    );
}

#[tokio::test]
async fn keys_expire_after_their_ttl() {
    let host = HostBuilder::new().droplet("kv", "kvstore").start().await;
    put(&host, "/kv/k/session?ttl_ms=300", "token").await;
    put(&host, "/kv/k/forever", "stays").await;
    assert_eq!(host.get("/kv/k/session").await.status, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if host.get("/kv/k/session").await.status == 404 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "key never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(host.get("/kv/exists/session").await.json()["exists"], false);
    assert_eq!(
        host.get("/kv/list?prefix=").await.json()["keys"],
        json!(["forever"])
    );
}

#[tokio::test]
async fn pagination_walk_returns_every_key_once_under_concurrent_inserts() {
    // A budget no load can overrun: this test is not about budgets.
    let host = HostBuilder::new()
        .droplet_with("kv", "kvstore", crate::support::GENEROUS)
        .start()
        .await;
    let originals: Vec<String> = (0..60).map(|i| format!("p:{i:03}")).collect();
    join_all(originals.iter().map(|key| {
        let (host, path) = (&host, format!("/kv/k/{key}"));
        async move { put(host, &path, "x").await }
    }))
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let inserter = {
        let stop = Arc::clone(&stop);
        let host = &host;
        async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && i < 200 {
                put(host, &format!("/kv/k/p:{:03}x", i % 60), "new").await;
                i += 1;
            }
        }
    };
    let walk = {
        let stop = Arc::clone(&stop);
        let host = &host;
        async move {
            let mut seen = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let path = match &cursor {
                    Some(cursor) => format!("/kv/list?prefix=p:&limit=7&cursor={cursor}"),
                    None => "/kv/list?prefix=p:&limit=7".to_string(),
                };
                let page = host.get(&path).await.json();
                seen.extend(
                    page["keys"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|k| k.as_str().unwrap().to_string()),
                );
                match page["next_cursor"].as_str() {
                    Some(next) => cursor = Some(next.to_string()),
                    None => break,
                }
            }
            stop.store(true, Ordering::Relaxed);
            seen
        }
    };
    let ((), seen) = tokio::join!(inserter, walk);
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a key came back twice: {seen:?}");
    for key in &originals {
        assert!(unique.contains(key), "{key} missing from the walk");
    }
}

#[tokio::test]
async fn fifty_concurrent_increments_give_exactly_fifty() {
    let host = HostBuilder::new()
        .droplet_with("kv", "kvstore", "max_concurrency = 64\n")
        .start()
        .await;
    let replies = join_all((0..50).map(|_| post(&host, "/kv/incr/hits", ""))).await;
    let mut values: Vec<i64> = replies
        .iter()
        .map(|reply| {
            assert_eq!(reply.status, 200, "{}", reply.text());
            reply.json()["value"].as_i64().unwrap()
        })
        .collect();
    values.sort();
    assert_eq!(values, (1..=50).collect::<Vec<_>>());
    assert_eq!(host.get("/kv/k/hits").await.text(), "50");
}

#[tokio::test]
async fn oversized_values_and_quota_get_the_guest_error() {
    let host = HostBuilder::new()
        .droplet_with("kv", "kvstore", "kv_quota_mb = 1\nmax_body_kb = 2048\n")
        .start()
        .await;
    let too_big = put(&host, "/kv/k/big", vec![b'v'; (1 << 20) + 1]).await;
    assert_eq!(too_big.status, 413, "{}", too_big.text());
    assert_eq!(too_big.json()["error"]["code"], "value_too_large");
    let long_key = "k".repeat(513);
    assert_eq!(
        put(&host, &format!("/kv/k/{long_key}"), "v").await.status,
        400
    );
    assert_eq!(
        put(&host, "/kv/k/a", vec![b'v'; 600 << 10]).await.status,
        200
    );
    let over = put(&host, "/kv/k/b", vec![b'v'; 600 << 10]).await;
    assert_eq!(over.status, 507, "{}", over.text());
    assert_eq!(over.json()["error"]["code"], "quota_exceeded");
    // Replacing a value with a smaller one is always allowed.
    assert_eq!(put(&host, "/kv/k/a", "small").await.status, 200);
    assert_eq!(
        put(&host, "/kv/k/b", vec![b'v'; 600 << 10]).await.status,
        200
    );
}

#[tokio::test]
async fn data_survives_a_host_restart() {
    let data = tempfile::tempdir().unwrap();
    let mut host = HostBuilder::new()
        .droplet("counter", "counter")
        .data(data.path())
        .start()
        .await;
    for expected in 1..=3 {
        assert_eq!(host.get("/counter/").await.json()["count"], expected);
    }
    host.signal("TERM");
    host.wait_exit(Duration::from_secs(10))
        .await
        .expect("host exits");
    let host = HostBuilder::new()
        .droplet("counter", "counter")
        .data(data.path())
        .start()
        .await;
    assert_eq!(host.get("/counter/").await.json()["count"], 4);
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let data = tempfile::tempdir().unwrap();
    let host = HostBuilder::new()
        .droplet_with("kv", "kvstore", "max_concurrency = 64\n")
        .data(data.path())
        .start()
        .await;
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let writers = (0..8).map(|writer| {
        let acknowledged = Arc::clone(&acknowledged);
        let host = &host;
        async move {
            for i in 0.. {
                let key = format!("w{writer}-{i}");
                match host
                    .try_send(
                        Request::put(format!("/kv/k/{key}"))
                            .body(Bytes::from(key.clone()))
                            .unwrap(),
                    )
                    .await
                {
                    Ok(reply) if reply.status == 200 => acknowledged.lock().unwrap().push(key),
                    _ => break,
                }
            }
        }
    });
    let killer = async {
        // Kill mid-stream, once a good number of writes were acknowledged.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while acknowledged.lock().unwrap().len() < 300 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        host.signal("KILL");
    };
    tokio::join!(join_all(writers), killer);
    drop(host);
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 300,
        "only {} writes before the kill",
        acknowledged.len()
    );

    let host = HostBuilder::new()
        .droplet("kv", "kvstore")
        .data(data.path())
        .start()
        .await;
    let mut missing = Vec::new();
    for key in &acknowledged {
        let reply = host.get(&format!("/kv/k/{key}")).await;
        if reply.status != 200 || reply.text() != *key {
            missing.push(key.clone());
        }
    }
    println!(
        "kill -9: {} acknowledged writes, {} recovered",
        acknowledged.len(),
        acknowledged.len() - missing.len()
    );
    assert!(
        missing.is_empty(),
        "acknowledged writes lost after kill -9: {missing:?}"
    );
}

#[tokio::test]
async fn concurrent_writers_cannot_pass_the_quota_together() {
    let host = HostBuilder::new()
        // Sixteen 300 KiB writes at once on a loaded 2-core machine: a
        // budget no load can overrun (this test is about the quota).
        .droplet_with(
            "kv",
            "kvstore",
            "kv_quota_mb = 1\nmax_concurrency = 32\nbudget_ms = 60000\n",
        )
        .droplet_with("free", "kvstore", crate::support::GENEROUS)
        .droplet("hello", "hello")
        .arg("--kv-default-quota-mb")
        .arg("1")
        .start()
        .await;
    for name in ["kv", "free"] {
        let writes = (0..16).map(|i| {
            let host = &host;
            async move {
                put(host, &format!("/{name}/k/w{i}"), vec![b'v'; 300 << 10])
                    .await
                    .status
            }
        });
        let (statuses, healthy) = tokio::join!(join_all(writes), host.get("/hello/"));
        assert_eq!(healthy.status, 200, "a healthy droplet answers meanwhile");
        let stored = statuses.iter().filter(|status| **status == 200).count();
        assert!(
            statuses
                .iter()
                .all(|status| *status == 200 || *status == 507),
            "{statuses:?}"
        );
        assert_eq!(
            stored, 3,
            "{name}: three 300 KiB values fit in 1 MiB: {statuses:?}"
        );
        let state = host.get(&format!("/{name}/state")).await.json();
        let bytes = state["kv"]["bytes"].as_u64().unwrap();
        assert!(bytes <= 1 << 20, "{name} stores {bytes} bytes");
    }
}
