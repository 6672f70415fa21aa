//! The PostgreSQL kv backend's reads share a few connections
//! (`storage::shared_reads`): many reads at once stay on those few, and a
//! shared connection the database dropped is replaced once it is back.
//! Skipped with a printed reason when there is no PostgreSQL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use droplet_host::ops::shutdown::Shutdown;
use droplet_host::storage::database::{Database, DatabaseSettings};
use droplet_host::storage::kv::postgres::PostgresBackend;
use droplet_host::storage::kv::{Durability, KvBackend, KvError, Limits};
use droplet_host::storage::shared_reads::shared_connections;

use crate::pg::{Proxy, TestDatabase};

const POOL_SIZE: usize = 16;

async fn backend(url: String, shutdown: &Shutdown) -> Arc<PostgresBackend> {
    let db = Database::connect(
        &DatabaseSettings {
            url,
            pool_size: POOL_SIZE,
            connect_timeout: Duration::from_secs(5),
        },
        shutdown,
    )
    .await
    .expect("connect the backend");
    Arc::new(PostgresBackend::new(db, Durability::Durable))
}

fn limits() -> Limits {
    Limits {
        quota_bytes: None,
        max_value_bytes: 1 << 20,
    }
}

/// Two hundred gets at once: every one answers, and the backend has opened
/// no more connections than the shared ones (plus the one its start-up used,
/// and one for a probe), where a connection per read would have filled the
/// pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_gets_at_once_share_a_few_connections() {
    let Some(database) = TestDatabase::create("shared_reads_few").await else {
        return;
    };
    let shutdown = Shutdown::new();
    let kv = backend(database.url(), &shutdown).await;
    kv.set("ns", "k", b"value".to_vec(), None, limits())
        .await
        .unwrap();

    let gets: Vec<_> = (0..200)
        .map(|_| {
            let kv = Arc::clone(&kv);
            tokio::spawn(async move { kv.get("ns", "k").await })
        })
        .collect();
    for get in gets {
        assert_eq!(get.await.unwrap().unwrap(), Some(b"value".to_vec()));
    }

    let looker = database.client().await;
    let row = looker
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&database.application_name()],
        )
        .await
        .unwrap();
    // The looker's own connection has the same application name.
    let opened = row.get::<_, i64>(0) as usize - 1;
    let bound = shared_connections(POOL_SIZE) + 2;
    assert!(
        opened <= bound,
        "200 concurrent gets opened {opened} connections; reads share {} of a pool of {POOL_SIZE}, so at most {bound}",
        shared_connections(POOL_SIZE)
    );
    shutdown.trigger();
}

/// The database goes away (every connection cut) and comes back: reads
/// answer `unavailable` meanwhile, and the shared connections are replaced,
/// so reads answer again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shared_reads_come_back_with_the_database() {
    let Some(database) = TestDatabase::create("shared_reads_back").await else {
        return;
    };
    let proxy = Proxy::start(database.server_addr()).await;
    let shutdown = Shutdown::new();
    let kv = backend(database.url_via(&proxy), &shutdown).await;
    kv.set("ns", "k", b"value".to_vec(), None, limits())
        .await
        .unwrap();
    for _ in 0..8 {
        assert_eq!(kv.get("ns", "k").await.unwrap(), Some(b"value".to_vec()));
    }

    proxy.pause();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match kv.get("ns", "k").await {
            Err(KvError::Unavailable(_)) => break,
            other => assert!(
                Instant::now() < deadline,
                "a get still answered {other:?} with the database gone"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    proxy.resume();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Every shared connection in turn: each must have been replaced.
        let mut answered = 0;
        for _ in 0..8 {
            if kv.get("ns", "k").await.ok() == Some(Some(b"value".to_vec())) {
                answered += 1;
            }
        }
        if answered == 8 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "with the database back, only {answered} of 8 gets answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.trigger();
}
