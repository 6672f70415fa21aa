//! One conformance suite for every `KvBackend`: the same tests run against
//! sled (in a temporary directory) and PostgreSQL (in a schema of the
//! test's own; skipped with a printed reason when there is none).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use droplet_host::ops::shutdown::Shutdown;
use droplet_host::storage::database::{Database, DatabaseSettings};
use droplet_host::storage::kv::postgres::PostgresBackend;
use droplet_host::storage::kv::sled::SledBackend;
use droplet_host::storage::kv::{Durability, KvBackend, KvError, Limits, Usage, entry_bytes};

use crate::pg::TestDatabase;

/// Keeps a backend's storage alive for the test, and cleans up after it.
#[allow(dead_code)]
enum Guard {
    Sled(tempfile::TempDir),
    Postgres(TestDatabase, Shutdown),
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Guard::Postgres(_, shutdown) = self {
            shutdown.trigger();
        }
    }
}

async fn sled_backend() -> (Arc<dyn KvBackend>, Guard) {
    let dir = tempfile::tempdir().unwrap();
    let backend = SledBackend::open(&dir.path().join("kv"), Durability::Durable, 64 << 20).unwrap();
    (Arc::new(backend), Guard::Sled(dir))
}

async fn postgres_backend(test: &str) -> Option<(Arc<dyn KvBackend>, Guard)> {
    let (backend, guard) = postgres(test, Durability::Durable).await?;
    Some((backend, guard))
}

/// The PostgreSQL backend on a schema of `test`'s own, or `None` (said why)
/// without a database.
async fn postgres(test: &str, durability: Durability) -> Option<(Arc<PostgresBackend>, Guard)> {
    let database = TestDatabase::create(test).await?;
    let shutdown = Shutdown::new();
    let db = Database::connect(
        &DatabaseSettings {
            url: database.url(),
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
        },
        &shutdown,
    )
    .await
    .unwrap();
    let backend = PostgresBackend::new(db, durability);
    Some((Arc::new(backend), Guard::Postgres(database, shutdown)))
}

macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod sled {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let (kv, _guard) = super::sled_backend().await;
                    super::$test(kv).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let Some((kv, _guard)) = super::postgres_backend(stringify!($test)).await else {
                        return;
                    };
                    super::$test(kv).await;
                }
            )*
        }
    };
}

conformance!(
    every_operation_does_what_the_wit_says,
    expired_values_are_never_returned,
    keys_list_in_byte_order_by_prefix_and_cursor,
    pagination_is_stable_under_concurrent_inserts,
    compare_and_swap_lets_exactly_one_of_many_win,
    fifty_concurrent_increments_make_fifty,
    increment_needs_a_decimal_number,
    concurrent_writers_cannot_pass_the_quota_together,
    the_largest_keys_and_values_round_trip,
    namespaces_are_separate_and_purge_removes_one,
);

fn unlimited() -> Limits {
    Limits {
        quota_bytes: None,
        max_value_bytes: 1 << 20,
    }
}

async fn every_operation_does_what_the_wit_says(kv: Arc<dyn KvBackend>) {
    let limits = unlimited();
    assert_eq!(kv.get("ns", "a").await.unwrap(), None);
    assert!(!kv.exists("ns", "a").await.unwrap());
    kv.set("ns", "a", b"one".to_vec(), None, limits)
        .await
        .unwrap();
    assert_eq!(kv.get("ns", "a").await.unwrap(), Some(b"one".to_vec()));
    assert!(kv.exists("ns", "a").await.unwrap());
    kv.set("ns", "a", b"two!".to_vec(), None, limits)
        .await
        .unwrap();
    assert_eq!(kv.get("ns", "a").await.unwrap(), Some(b"two!".to_vec()));
    kv.set("ns", "b", Vec::new(), None, limits).await.unwrap();
    assert_eq!(
        kv.get("ns", "b").await.unwrap(),
        Some(Vec::new()),
        "an empty value is a value"
    );
    assert_eq!(
        kv.usage("ns").await.unwrap(),
        Usage {
            keys: 2,
            bytes: entry_bytes(1, 4) + entry_bytes(1, 0)
        }
    );
    assert!(kv.delete("ns", "a").await.unwrap());
    assert!(!kv.delete("ns", "a").await.unwrap(), "deleting twice");
    assert_eq!(kv.get("ns", "a").await.unwrap(), None);
    // CAS: create only when absent, replace only the expected value,
    // delete with `None`.
    assert!(
        kv.compare_and_swap("ns", "c", None, Some(b"1".to_vec()), limits)
            .await
            .unwrap()
    );
    assert!(
        !kv.compare_and_swap("ns", "c", None, Some(b"2".to_vec()), limits)
            .await
            .unwrap()
    );
    assert!(
        !kv.compare_and_swap("ns", "c", Some(b"9".to_vec()), Some(b"2".to_vec()), limits)
            .await
            .unwrap()
    );
    assert!(
        kv.compare_and_swap("ns", "c", Some(b"1".to_vec()), Some(b"2".to_vec()), limits)
            .await
            .unwrap()
    );
    assert_eq!(kv.get("ns", "c").await.unwrap(), Some(b"2".to_vec()));
    assert!(
        kv.compare_and_swap("ns", "c", Some(b"2".to_vec()), None, limits)
            .await
            .unwrap()
    );
    assert_eq!(kv.get("ns", "c").await.unwrap(), None);
    assert_eq!(kv.increment("ns", "n", 5, limits).await.unwrap(), 5);
    assert_eq!(kv.increment("ns", "n", -7, limits).await.unwrap(), -2);
    assert_eq!(kv.get("ns", "n").await.unwrap(), Some(b"-2".to_vec()));
    kv.delete("ns", "b").await.unwrap();
    kv.delete("ns", "n").await.unwrap();
    assert_eq!(
        kv.usage("ns").await.unwrap(),
        Usage::default(),
        "every byte given back"
    );
    kv.flush().await.unwrap();
}

async fn expired_values_are_never_returned(kv: Arc<dyn KvBackend>) {
    let limits = unlimited();
    kv.set(
        "ns",
        "short",
        b"v".to_vec(),
        Some(Duration::from_millis(300)),
        limits,
    )
    .await
    .unwrap();
    kv.set(
        "ns",
        "long",
        b"v".to_vec(),
        Some(Duration::from_secs(600)),
        limits,
    )
    .await
    .unwrap();
    kv.set(
        "ns",
        "count",
        b"41".to_vec(),
        Some(Duration::from_secs(600)),
        limits,
    )
    .await
    .unwrap();
    assert_eq!(kv.get("ns", "short").await.unwrap(), Some(b"v".to_vec()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while kv.get("ns", "short").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the value never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!kv.exists("ns", "short").await.unwrap());
    assert!(
        !kv.delete("ns", "short").await.unwrap(),
        "an expired value was not there"
    );
    let page = kv.list_keys("ns", "", None, 100).await.unwrap();
    assert_eq!(page.keys, ["count", "long"]);
    // An expired counter starts again from 0; a live one keeps its expiry.
    kv.set(
        "ns",
        "gone",
        b"7".to_vec(),
        Some(Duration::from_millis(1)),
        limits,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(kv.increment("ns", "gone", 1, limits).await.unwrap(), 1);
    assert_eq!(kv.increment("ns", "count", 1, limits).await.unwrap(), 42);
    // A CAS sees an expired value as absent.
    kv.set(
        "ns",
        "cas",
        b"old".to_vec(),
        Some(Duration::from_millis(1)),
        limits,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        !kv.compare_and_swap(
            "ns",
            "cas",
            Some(b"old".to_vec()),
            Some(b"x".to_vec()),
            limits
        )
        .await
        .unwrap()
    );
    assert!(
        kv.compare_and_swap("ns", "cas", None, Some(b"new".to_vec()), limits)
            .await
            .unwrap()
    );
}

async fn keys_list_in_byte_order_by_prefix_and_cursor(kv: Arc<dyn KvBackend>) {
    let limits = unlimited();
    let keys = [
        "a",
        "a/1",
        "a/2",
        "a/10",
        "a\u{7f}",
        "a/é",
        "b",
        "a/\u{0}nul",
        "Z",
    ];
    for key in keys {
        kv.set("ns", key, b"v".to_vec(), None, limits)
            .await
            .unwrap();
    }
    let all = kv.list_keys("ns", "", None, 100).await.unwrap();
    let mut sorted: Vec<&str> = keys.to_vec();
    sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(all.keys, sorted);
    assert_eq!(all.next_cursor, None);
    let page = kv.list_keys("ns", "a/", None, 2).await.unwrap();
    assert_eq!(page.keys, ["a/\u{0}nul", "a/1"]);
    assert_eq!(page.next_cursor.as_deref(), Some("a/1"));
    let page = kv.list_keys("ns", "a/", page.next_cursor, 2).await.unwrap();
    assert_eq!(page.keys, ["a/10", "a/2"]);
    let page = kv.list_keys("ns", "a/", page.next_cursor, 2).await.unwrap();
    assert_eq!(page.keys, ["a/é"]);
    assert_eq!(page.next_cursor, None);
    // A cursor before the prefix starts at the prefix; one after it, nowhere.
    let page = kv
        .list_keys("ns", "a/", Some("A".into()), 10)
        .await
        .unwrap();
    assert_eq!(page.keys.len(), 5);
    let page = kv
        .list_keys("ns", "a/", Some("zzz".into()), 10)
        .await
        .unwrap();
    assert!(page.keys.is_empty());
    // A limit of 0 is 1; a huge limit is capped, not refused.
    assert_eq!(kv.list_keys("ns", "", None, 0).await.unwrap().keys.len(), 1);
    assert_eq!(
        kv.list_keys("ns", "", None, u32::MAX)
            .await
            .unwrap()
            .keys
            .len(),
        keys.len()
    );
}

async fn pagination_is_stable_under_concurrent_inserts(kv: Arc<dyn KvBackend>) {
    let limits = unlimited();
    let originals: BTreeSet<String> = (0..200).map(|i| format!("k{i:04}")).collect();
    for key in &originals {
        kv.set("ns", key, b"v".to_vec(), None, limits)
            .await
            .unwrap();
    }
    let writer = {
        let kv = Arc::clone(&kv);
        tokio::spawn(async move {
            for i in 0..200 {
                // Keys between the originals, before and after them.
                for key in [format!("k{i:04}x"), format!("a{i}"), format!("z{i}")] {
                    kv.set("ns", &key, b"new".to_vec(), None, limits)
                        .await
                        .unwrap();
                }
            }
        })
    };
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = kv.list_keys("ns", "k", cursor, 17).await.unwrap();
        seen.extend(page.keys);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a key was listed twice");
    assert!(
        seen.windows(2).all(|pair| pair[0] < pair[1]),
        "keys out of order"
    );
    assert!(
        originals.is_subset(&unique),
        "a key that was there all along was skipped"
    );
    assert!(seen.iter().all(|key| key.starts_with('k')));
}

async fn compare_and_swap_lets_exactly_one_of_many_win(kv: Arc<dyn KvBackend>) {
    let limits = unlimited();
    kv.set("ns", "slot", b"start".to_vec(), None, limits)
        .await
        .unwrap();
    let racers: Vec<_> = (0..20)
        .map(|i| {
            let kv = Arc::clone(&kv);
            tokio::spawn(async move {
                kv.compare_and_swap(
                    "ns",
                    "slot",
                    Some(b"start".to_vec()),
                    Some(format!("winner {i}").into_bytes()),
                    limits,
                )
                .await
                .unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for racer in racers {
        winners += racer.await.unwrap() as u32;
    }
    assert_eq!(winners, 1);
    let value = kv.get("ns", "slot").await.unwrap().unwrap();
    assert!(value.starts_with(b"winner "));
}

async fn fifty_concurrent_increments_make_fifty(kv: Arc<dyn KvBackend>) {
    let limits = unlimited();
    let adders: Vec<_> = (0..50)
        .map(|_| {
            let kv = Arc::clone(&kv);
            tokio::spawn(async move { kv.increment("ns", "counter", 1, limits).await.unwrap() })
        })
        .collect();
    let mut answers = BTreeSet::new();
    for adder in adders {
        answers.insert(adder.await.unwrap());
    }
    assert_eq!(
        answers,
        (1..=50).collect(),
        "every increment saw its own total"
    );
    assert_eq!(kv.get("ns", "counter").await.unwrap(), Some(b"50".to_vec()));
}

async fn increment_needs_a_decimal_number(kv: Arc<dyn KvBackend>) {
    let limits = unlimited();
    kv.set("ns", "word", b"ten".to_vec(), None, limits)
        .await
        .unwrap();
    assert_eq!(
        kv.increment("ns", "word", 1, limits).await,
        Err(KvError::NotANumber)
    );
    assert_eq!(
        kv.get("ns", "word").await.unwrap(),
        Some(b"ten".to_vec()),
        "left as it was"
    );
    kv.set("ns", "big", i64::MAX.to_string().into_bytes(), None, limits)
        .await
        .unwrap();
    assert_eq!(
        kv.increment("ns", "big", 1, limits).await,
        Err(KvError::NotANumber)
    );
    kv.set("ns", "spaced", b" 41 ".to_vec(), None, limits)
        .await
        .unwrap();
    assert_eq!(kv.increment("ns", "spaced", 1, limits).await, Ok(42));
}

async fn concurrent_writers_cannot_pass_the_quota_together(kv: Arc<dyn KvBackend>) {
    let limits = Limits {
        quota_bytes: Some(1 << 20),
        max_value_bytes: 1 << 20,
    };
    let writers: Vec<_> = (0..16)
        .map(|i| {
            let kv = Arc::clone(&kv);
            tokio::spawn(async move {
                kv.set(
                    "ns",
                    &format!("k{i:02}"),
                    vec![7u8; 300 * 1024],
                    None,
                    limits,
                )
                .await
            })
        })
        .collect();
    let mut stored = 0;
    for writer in writers {
        match writer.await.unwrap() {
            Ok(()) => stored += 1,
            Err(KvError::QuotaExceeded) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        stored, 3,
        "three 300 KiB values fit in 1 MiB, a fourth does not"
    );
    let usage = kv.usage("ns").await.unwrap();
    assert_eq!(usage.keys, 3);
    assert_eq!(usage.bytes, 3 * entry_bytes(3, 300 * 1024));
    // At the quota, a write that shrinks is fine, and frees room.
    let page = kv.list_keys("ns", "", None, 10).await.unwrap();
    kv.set("ns", &page.keys[0], b"small".to_vec(), None, limits)
        .await
        .unwrap();
    kv.set("ns", "k99", vec![1u8; 200 * 1024], None, limits)
        .await
        .unwrap();
    assert_eq!(
        kv.set("ns", "k98", vec![1u8; 300 * 1024], None, limits)
            .await,
        Err(KvError::QuotaExceeded)
    );
}

async fn the_largest_keys_and_values_round_trip(kv: Arc<dyn KvBackend>) {
    let limits = unlimited();
    let key = "é".repeat(droplet_host::storage::kv::MAX_KEY_BYTES / 2);
    let value: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    kv.set("ns", &key, value.clone(), None, limits)
        .await
        .unwrap();
    assert_eq!(kv.get("ns", &key).await.unwrap(), Some(value));
    assert_eq!(kv.list_keys("ns", "é", None, 10).await.unwrap().keys, [key]);
}

async fn namespaces_are_separate_and_purge_removes_one(kv: Arc<dyn KvBackend>) {
    let limits = unlimited();
    kv.set("one", "k", b"1".to_vec(), None, limits)
        .await
        .unwrap();
    kv.set("two", "k", b"2".to_vec(), None, limits)
        .await
        .unwrap();
    assert_eq!(kv.get("one", "k").await.unwrap(), Some(b"1".to_vec()));
    assert_eq!(kv.get("two", "k").await.unwrap(), Some(b"2".to_vec()));
    assert_eq!(kv.list_keys("one", "", None, 10).await.unwrap().keys, ["k"]);
    kv.purge("one").await.unwrap();
    assert_eq!(kv.get("one", "k").await.unwrap(), None);
    assert_eq!(kv.usage("one").await.unwrap(), Usage::default());
    assert_eq!(kv.get("two", "k").await.unwrap(), Some(b"2".to_vec()));
}

/// The expired-key purge takes the namespace's lock before the entries, as
/// every write does: run beside writes to expiring keys, it never makes
/// PostgreSQL abort a write as a deadlock (which a guest saw as
/// `unavailable`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_postgres_purge_beside_writes_to_expiring_keys_fails_no_write() {
    let Some((kv, _guard)) = postgres("purge_beside_writes", Durability::Relaxed).await else {
        return;
    };
    let limits = Limits {
        quota_bytes: None,
        max_value_bytes: 1 << 20,
    };
    let deadline = Instant::now() + Duration::from_secs(4);
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let kv = Arc::clone(&kv);
            tokio::spawn(async move {
                let mut written = 0u32;
                while Instant::now() < deadline {
                    for key in 0..16 {
                        let key = format!("k{}", (key * 7 + writer) % 16);
                        kv.set(
                            "ns",
                            &key,
                            b"v".to_vec(),
                            Some(Duration::from_millis(1)),
                            limits,
                        )
                        .await
                        .unwrap_or_else(|err| panic!("a write failed beside the purge: {err}"));
                        written += 1;
                    }
                }
                written
            })
        })
        .collect();
    let purger = {
        let kv = Arc::clone(&kv);
        tokio::spawn(async move {
            let mut purged = 0;
            while Instant::now() < deadline {
                purged += kv.purge_expired().await.expect("the purge itself succeeds");
            }
            purged
        })
    };
    let mut written = 0;
    for writer in writers {
        written += writer.await.expect("no write failed");
    }
    let purged = purger.await.expect("the purge ran");
    eprintln!("{written} writes, {purged} purged");
    assert!(purged > 0, "the purge never met an expired key");
}
