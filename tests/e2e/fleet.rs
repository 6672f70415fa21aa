//! Fleet mode: real hosts on loopback ports sharing one real PostgreSQL
//! schema (skipped with a printed reason when there is no PostgreSQL).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::Request;
use serde_json::{Value, json};

use crate::pg::{Proxy, TestDatabase};
use crate::support::{
    Host, HostBuilder, TEST_SECRET, admin_request, cli, example, example_variant,
};

/// How long a deploy may take to reach every host.
const CONVERGE_WITHIN: Duration = Duration::from_secs(5);

/// A fleet host on `db`, with `files` in its own droplets directory.
pub fn fleet_host(db: &TestDatabase, id: &str) -> HostBuilder {
    HostBuilder::new()
        .env("DATABASE_URL", &db.url())
        .env("JWT_SECRET", TEST_SECRET)
        .arg("--host-id")
        .arg(id)
        .arg("--no-watch")
}

async fn version_of(host: &Host, path: &str) -> Option<String> {
    let reply = host.try_send(get(path)).await.ok()?;
    (reply.status == 200)
        .then(|| reply.header("x-droplet-version").map(str::to_string))
        .flatten()
}

fn get(path: &str) -> Request<Bytes> {
    Request::builder().uri(path).body(Bytes::new()).unwrap()
}

/// Waits until every host serves `version` at `path`.
async fn wait_until_all_serve(hosts: &[&Host], path: &str, version: &str) {
    let deadline = Instant::now() + CONVERGE_WITHIN;
    loop {
        let mut serving = Vec::new();
        for host in hosts {
            serving.push(version_of(host, path).await);
        }
        if serving.iter().all(|v| v.as_deref() == Some(version)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "hosts serve {serving:?}, not {version}, after {CONVERGE_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn deploy(host: &Host, name: &str, module: &[u8]) -> String {
    let body = json!({ "module": base64::engine::general_purpose::STANDARD.encode(module) });
    let reply = admin_request(
        host,
        "PUT",
        &format!("/_admin/droplets/{name}"),
        Some(&body),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["version"].as_str().unwrap().to_string()
}

/// The admin API's word on `name`'s spread over the fleet.
async fn fleet_summary(host: &Host, name: &str) -> Value {
    let reply = admin_request(host, "GET", &format!("/_admin/droplets/{name}"), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["fleet"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_hosts_share_kv_and_every_deploy_and_rollback_reaches_all() {
    let Some(db) = TestDatabase::create("fleet_three").await else {
        return;
    };
    let one = fleet_host(&db, "one")
        .droplet("counter", "counter")
        .droplet("hello", "hello")
        .start()
        .await;
    // Hosts two and three have empty droplet directories: everything they
    // serve comes from the fleet's store.
    let two = fleet_host(&db, "two").start().await;
    let three = fleet_host(&db, "three").start().await;
    let hosts = [&one, &two, &three];

    // One counter, incremented through all three hosts at once.
    let mut workers = Vec::new();
    for host in hosts {
        let addr = host.url();
        workers.push(tokio::spawn(async move {
            let client = crate::support::reqwest_like::Client::new(&addr);
            let mut counts = Vec::new();
            for _ in 0..100 {
                let reply = client.get("/counter/").await;
                assert_eq!(reply.0, 200, "{}", reply.1);
                let body: Value = serde_json::from_str(&reply.1).unwrap();
                counts.push(body["count"].as_i64().unwrap());
            }
            counts
        }));
    }
    let mut counts = BTreeSet::new();
    for worker in workers {
        counts.extend(worker.await.unwrap());
    }
    assert_eq!(counts, (1..=300).collect(), "every increment counted once");

    // A deploy through host one is served by all three.
    let before = version_of(&one, "/hello/").await.unwrap();
    let deployed = deploy(&one, "hello", &example_variant("hello", 1)).await;
    assert_ne!(before, deployed);
    wait_until_all_serve(&hosts, "/hello/", &deployed).await;

    // Every host says so, and `droplet list` shows it.
    let deadline = Instant::now() + CONVERGE_WITHIN;
    loop {
        let fleet = fleet_summary(&two, "hello").await;
        if fleet["summary"] == json!(format!("{deployed} on 3/3 hosts")) {
            assert_eq!(fleet["on_hosts"].as_array().unwrap().len(), 3);
            break;
        }
        assert!(Instant::now() < deadline, "fleet view: {fleet}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let token = crate::support::hs256_token(&crate::support::claims_with_scope("droplets:admin"));
    let (ok, out, err) = cli(
        &["list", "--host", &three.url()],
        &[("DROPLET_TOKEN", token.as_str())],
    );
    assert!(ok, "{err}");
    assert!(out.contains("FLEET"), "{out}");
    assert!(out.contains(&format!("{deployed} on 3/3 hosts")), "{out}");
    // The dashboard's table says the same, with the fleet's size.
    let overview = admin_request(&three, "GET", "/_admin/overview?filter=hello", None)
        .await
        .json();
    assert_eq!(overview["host"]["fleet_hosts"], 3, "{overview}");
    assert_eq!(
        overview["droplets"][0]["fleet"],
        json!(format!("{deployed} on 3/3 hosts")),
        "{overview}"
    );

    // A rollback through host two: all three go back.
    let reply = admin_request(&two, "POST", "/_admin/droplets/hello/rollback", None).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    wait_until_all_serve(&hosts, "/hello/", &before).await;

    // `droplet deploy` on a fleet returns once every live host serves the
    // new version, and says how many do.
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("hello.wasm");
    std::fs::write(&module, example_variant("hello", 2)).unwrap();
    let (ok, out, err) = cli(
        &[
            "deploy",
            "hello",
            module.to_str().unwrap(),
            "--host",
            &two.url(),
        ],
        &[("DROPLET_TOKEN", token.as_str())],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("served by 3/3 hosts"), "{out}");
    let version = out
        .split("version ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_string();
    for host in hosts {
        assert_eq!(
            version_of(host, "/hello/").await.as_deref(),
            Some(version.as_str())
        );
    }

    // A removal through host three: gone everywhere.
    let reply = admin_request(&three, "DELETE", "/_admin/droplets/hello", None).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let deadline = Instant::now() + CONVERGE_WITHIN;
    for host in hosts {
        while host.get("/hello/").await.status != 404 {
            assert!(Instant::now() < deadline, "hello still served");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_that_cannot_serve_a_version_keeps_its_own_and_says_why() {
    let Some(db) = TestDatabase::create("fleet_refuse").await else {
        return;
    };
    let big = fleet_host(&db, "big")
        .droplet("hello", "hello")
        .start()
        .await;
    let small = fleet_host(&db, "small")
        .arg("--max-memory-mb")
        .arg("128")
        .start()
        .await;
    let first = version_of(&big, "/hello/").await.unwrap();
    wait_until_all_serve(&[&big, &small], "/hello/", &first).await;
    // A manifest only the big host allows.
    let body = json!({
        "module": base64::engine::general_purpose::STANDARD.encode(example("hello")),
        "manifest": "memory_mb = 200\nbudget_ms = 60000\n",
    });
    let reply = admin_request(&big, "PUT", "/_admin/droplets/hello", Some(&body)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let wanted = reply.json()["version"].as_str().unwrap().to_string();
    assert_eq!(
        version_of(&big, "/hello/").await.as_deref(),
        Some(wanted.as_str())
    );
    let deadline = Instant::now() + CONVERGE_WITHIN;
    let refusal = loop {
        let fleet = fleet_summary(&big, "hello").await;
        let small_row = fleet["on_hosts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|row| row["host"] == "small")
            .cloned();
        // Each host reports at its own pace: wait for both records.
        if let Some(row) = small_row.filter(|row| row["error"].is_string())
            && fleet["summary"] == json!(format!("{wanted} on 1/2 hosts"))
        {
            break row;
        }
        assert!(Instant::now() < deadline, "no refusal reported: {fleet}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        refusal["version"],
        json!(first),
        "small keeps serving its version"
    );
    let why = refusal["error"].as_str().unwrap();
    assert!(why.contains(&wanted) && why.contains("memory_mb"), "{why}");
    assert_eq!(version_of(&small, "/hello/").await, Some(first));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_host_leaves_the_others_serving_and_converges_when_it_returns() {
    let Some(db) = TestDatabase::create("fleet_kill").await else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let mut one = fleet_host(&db, "one")
        .droplet("hello", "hello")
        .data(data.path())
        .start()
        .await;
    let two = fleet_host(&db, "two").start().await;
    let three = fleet_host(&db, "three").start().await;
    let first = version_of(&one, "/hello/").await.unwrap();
    wait_until_all_serve(&[&one, &two, &three], "/hello/", &first).await;

    // Load on two and three while one is killed: nothing fails.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for host in [&two, &three] {
        let (addr, stop) = (host.url(), std::sync::Arc::clone(&stop));
        load.push(tokio::spawn(async move {
            let client = crate::support::reqwest_like::Client::new(&addr);
            let (mut ok, mut failed) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match client.get("/hello/").await.0 {
                    200 => ok += 1,
                    _ => failed += 1,
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    one.signal("KILL");
    assert!(one.wait_exit(Duration::from_secs(10)).await.is_some());
    // A deploy while host one is down.
    let deployed = deploy(&two, "hello", &example_variant("hello", 2)).await;
    wait_until_all_serve(&[&two, &three], "/hello/", &deployed).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for worker in load {
        let (ok, failed) = worker.await.unwrap();
        assert!(ok > 0);
        assert_eq!(failed, 0, "requests failed on the surviving hosts");
    }

    // Host one comes back on its own data and serves the fleet's version.
    let one = fleet_host(&db, "one").data(data.path()).start().await;
    wait_until_all_serve(&[&one, &two, &three], "/hello/", &deployed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_whose_hint_was_lost_is_found_by_reconciliation_and_a_storm_compiles_once() {
    let Some(db) = TestDatabase::create("fleet_reconcile").await else {
        return;
    };
    let one = fleet_host(&db, "one")
        .droplet("hello", "hello")
        .start()
        .await;
    let first = version_of(&one, "/hello/").await.unwrap();
    let second = deploy(&one, "hello", &example_variant("hello", 3)).await;
    let two = fleet_host(&db, "two").start().await;
    wait_until_all_serve(&[&one, &two], "/hello/", &second).await;
    let seq = |version: &str| version.split('-').next().unwrap().parse::<i64>().unwrap();

    // Change the current version behind the hosts' backs: no NOTIFY. Only
    // the timer's reconciliation can find it.
    let client = db.client().await;
    client
        .execute(
            "UPDATE droplet_current SET seq = $1 WHERE name = 'hello'",
            &[&seq(&first)],
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while version_of(&two, "/hello/").await.as_deref() != Some(first.as_str()) {
        assert!(
            Instant::now() < deadline,
            "reconciliation never found the change"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A storm: 100 changes with a hint each, in well under a second.
    let channel: String = client
        .query_one("SELECT current_schema()", &[])
        .await
        .unwrap()
        .get(0);
    let channel = format!(
        "droplet_deploys_{}",
        &format!(
            "{:x}",
            <sha2::Sha256 as sha2::Digest>::digest(channel.as_bytes())
        )[..16]
    );
    let adopted_before = adoptions(&two);
    let started = Instant::now();
    for i in 0..100 {
        let version = if i % 2 == 0 { &second } else { &first };
        client
            .execute(
                "UPDATE droplet_current SET seq = $1 WHERE name = 'hello'",
                &[&seq(version)],
            )
            .await
            .unwrap();
        client
            .execute("SELECT pg_notify($1, 'hello')", &[&channel])
            .await
            .unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // The storm ended on `first`.
    wait_until_all_serve(&[&one, &two], "/hello/", &first).await;
    // Hints still queued are handled within one reconcile (well under
    // 100 ms on loopback); 500 ms lets any stragglers be counted. Waiting
    // longer could only count more adoptions, so the wait never flatters
    // the assertion below.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let adopted = adoptions(&two) - adopted_before;
    eprintln!(
        "100 hints in {:?}: host two swapped {adopted} times",
        started.elapsed()
    );
    assert!(
        adopted < 50,
        "host two swapped {adopted} times for 100 hints: they were not coalesced"
    );
}

/// How many versions `host` adopted from the fleet so far.
fn adoptions(host: &Host) -> usize {
    host.log_lines()
        .iter()
        .filter(|line| line["message"] == "droplet version adopted from the fleet")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_connections_killed_mid_load_give_503_lose_nothing_and_heal() {
    let Some(db) = TestDatabase::create("fleet_terminate").await else {
        return;
    };
    let one = fleet_host(&db, "one")
        .droplet("kvstore", "kvstore")
        .droplet("hello", "hello")
        .start()
        .await;
    let two = fleet_host(&db, "two").start().await;
    let first = version_of(&one, "/kvstore/list").await.unwrap();
    wait_until_all_serve(&[&one, &two], "/kvstore/list", &first).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for (w, host) in [&one, &two].into_iter().enumerate() {
        let (addr, stop) = (host.url(), std::sync::Arc::clone(&stop));
        writers.push(tokio::spawn(async move {
            let client = crate::support::reqwest_like::Client::new(&addr);
            let (mut acknowledged, mut unavailable, mut hello_ok) = (Vec::new(), 0u32, 0u32);
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("w{w}-{i}");
                i += 1;
                let (status, body) = client.put(&format!("/kvstore/k/{key}"), "v").await;
                match status {
                    200 => acknowledged.push(key),
                    503 => unavailable += 1,
                    other => panic!("a kv write answered {other}: {body}"),
                }
                // A droplet with no kv keeps answering throughout.
                let (status, body) = client.get("/hello/").await;
                assert_eq!(status, 200, "{body}");
                hello_ok += 1;
            }
            (acknowledged, unavailable, hello_ok)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Kill every connection the hosts hold, again and again for a second
    // and a half: some die mid-statement.
    let admin = db.client().await;
    let mut killed = 0i64;
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        killed += admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE application_name = $1 AND pid <> pg_backend_pid()",
                &[&db.application_name()],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(killed > 0, "no host connection was found to kill");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut acknowledged, mut refused) = (Vec::new(), 0);
    for writer in writers {
        let (keys, unavailable, hello_ok) = writer.await.unwrap();
        assert!(hello_ok > 0);
        acknowledged.extend(keys);
        refused += unavailable;
    }
    eprintln!(
        "{killed} connections killed: {} writes acknowledged, {refused} answered 503",
        acknowledged.len()
    );
    assert!(!acknowledged.is_empty());
    // Every acknowledged write is there, read through the other host.
    let reader = crate::support::reqwest_like::Client::new(&two.url());
    for key in &acknowledged {
        let (status, body) = reader.get(&format!("/kvstore/k/{key}")).await;
        assert_eq!(
            (status, body.as_str()),
            (200, "v"),
            "acknowledged {key} lost"
        );
    }
    // Both hosts healed without a restart: kv works and /health says ok.
    for host in [&one, &two] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let health = host.get("/health").await.json();
            if health["dependencies"]["database"] == "ok" {
                break;
            }
            assert!(Instant::now() < deadline, "{health}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (status, _) = crate::support::reqwest_like::Client::new(&host.url())
            .put("/kvstore/k/after", "v")
            .await;
        assert_eq!(status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn while_the_database_is_away_kv_answers_503_the_rest_serves_and_the_host_heals() {
    let Some(db) = TestDatabase::create("fleet_away").await else {
        return;
    };
    let proxy = Proxy::start(db.server_addr()).await;
    let host = HostBuilder::new()
        .env("DATABASE_URL", &db.url_via(&proxy))
        .env("JWT_SECRET", TEST_SECRET)
        .arg("--no-watch")
        .droplet("kvstore", "kvstore")
        .droplet("hello", "hello")
        .start()
        .await;
    let client = crate::support::reqwest_like::Client::new(&host.url());
    for i in 0..20 {
        assert_eq!(
            client.put(&format!("/kvstore/k/before{i}"), "v").await.0,
            200
        );
    }
    assert_eq!(
        host.get("/health").await.json()["dependencies"]["database"],
        "ok"
    );
    let hello_before = version_of(&host, "/hello/").await.unwrap();

    proxy.pause();
    let started = Instant::now();
    let (status, body) = client.put("/kvstore/k/during", "v").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "a kv call waited {:?}",
        started.elapsed()
    );
    assert!(
        !body.contains("127.0.0.1"),
        "the guest was told where the database is: {body}"
    );
    let reply = host.get("/hello/").await;
    assert_eq!(reply.status, 200, "a droplet without kv stops serving");
    let module = json!({ "module": base64::engine::general_purpose::STANDARD.encode(example_variant("hello", 9)) });
    let reply = admin_request(&host, "PUT", "/_admin/droplets/hello", Some(&module)).await;
    reply.assert_error(503, "store_unavailable");
    assert_eq!(reply.header("retry-after"), Some("1"));
    // A removal the store refused changes nothing: the droplet still
    // serves (it used to leave the table first, and come back at restart).
    let reply = admin_request(&host, "DELETE", "/_admin/droplets/hello", None).await;
    reply.assert_error(503, "store_unavailable");
    assert_eq!(
        host.get("/hello/").await.status,
        200,
        "a refused removal unserved it"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = host.get("/health").await;
        assert_eq!(health.status, 200, "the host itself is fine");
        if health.json()["dependencies"]["database"] == "degraded" {
            break;
        }
        assert!(Instant::now() < deadline, "{}", health.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    proxy.resume();
    let deadline = Instant::now() + Duration::from_secs(15);
    while client.put("/kvstore/k/after", "v").await.0 != 200 {
        assert!(Instant::now() < deadline, "kv never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..20 {
        assert_eq!(
            client.get(&format!("/kvstore/k/before{i}")).await,
            (200, "v".to_string())
        );
    }
    // The deploy refused while the database was away changed nothing.
    let version = version_of(&host, "/hello/").await.unwrap();
    assert!(
        version.ends_with(&hello_before[hello_before.len() - 12..]),
        "{version}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while host.get("/health").await.json()["dependencies"]["database"] != "ok" {
        assert!(Instant::now() < deadline, "/health never said ok again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hosts_starting_together_migrate_the_schema_once() {
    let Some(db) = TestDatabase::create("fleet_together").await else {
        return;
    };
    let (a, b, c, d) = tokio::join!(
        fleet_host(&db, "a").start(),
        fleet_host(&db, "b").start(),
        fleet_host(&db, "c").start(),
        fleet_host(&db, "d").start(),
    );
    for host in [&a, &b, &c, &d] {
        assert_eq!(host.get("/health").await.status, 200);
    }
    let client = db.client().await;
    let versions: Vec<i32> = client
        .query(
            "SELECT version FROM droplet_schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        versions,
        [1, 2, 3, 4],
        "every migration applied exactly once"
    );
    let migrated = [&a, &b, &c, &d]
        .iter()
        .filter(|host| {
            host.log_lines()
                .iter()
                .any(|line| line["message"] == "database migrated")
        })
        .count();
    assert_eq!(migrated, 1, "one host migrated, the others found it done");
}

#[tokio::test]
async fn an_unreachable_database_at_start_is_named_and_the_host_exits() {
    let started = Instant::now();
    let (ok, out, err) = cli(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-connect-timeout-s",
            "2",
        ],
        &[(
            "DATABASE_URL",
            "postgres://app:sekret-password@127.0.0.1:1/fleet",
        )],
    );
    assert!(!ok, "the host started without its database");
    let said = format!("{out}{err}");
    assert!(
        said.contains("cannot reach the database at 127.0.0.1:1"),
        "{said}"
    );
    assert!(!said.contains("sekret"), "the password was printed: {said}");
    assert!(started.elapsed() < Duration::from_secs(30));
    // A server that answers and refuses (no such database) is not retried.
    let Some(db) = TestDatabase::create("fleet_refused").await else {
        return;
    };
    let wrong = db.url().replacen("/test", "/no_such_database_here", 1);
    let (ok, out, err) = cli(
        &["serve", "--listen", "127.0.0.1:0"],
        &[("DATABASE_URL", wrong.as_str())],
    );
    assert!(!ok);
    let said = format!("{out}{err}");
    assert!(said.contains("cannot be used"), "{said}");
    let _ = example("hello");
}
