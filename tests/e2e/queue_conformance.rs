//! One conformance suite for every `QueueStore`: the same tests run
//! against sled (in a temporary directory) and PostgreSQL (in a schema of
//! the test's own; skipped with a printed reason when there is none).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use droplet_host::ops::shutdown::Shutdown;
use droplet_host::storage::database::{Database, DatabaseSettings};
use droplet_host::storage::queues::postgres::PostgresQueues;
use droplet_host::storage::queues::sled::SledQueues;
use droplet_host::storage::queues::{NewJob, QueueError, QueueLimits, QueueStore, ScheduleRun};

use crate::pg::TestDatabase;

/// Keeps a store's storage alive for the test, and cleans up after it.
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

/// Small limits, so the limit tests are quick.
const LIMITS: QueueLimits = QueueLimits {
    max_jobs: 300,
    max_payload_bytes: 1024,
};

async fn sled_store() -> (Arc<dyn QueueStore>, Guard) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledQueues::open(&dir.path().join("queues"), LIMITS).unwrap();
    (Arc::new(store), Guard::Sled(dir))
}

async fn postgres_store(test: &str) -> Option<(Arc<dyn QueueStore>, Guard)> {
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
    let store = PostgresQueues::new(db, LIMITS);
    Some((Arc::new(store), Guard::Postgres(database, shutdown)))
}

macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod sled {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let (store, _guard) = super::sled_store().await;
                    super::$test(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let Some((store, _guard)) = super::postgres_store(stringify!($test)).await else {
                        return;
                    };
                    super::$test(store).await;
                }
            )*
        }
    };
}

conformance!(
    jobs_are_claimed_oldest_first_once_and_acknowledged_by_their_holder,
    a_delayed_job_waits_and_a_dedup_key_sends_once,
    an_ended_lease_lets_another_holder_claim_and_the_first_cannot_settle,
    retries_count_attempts_and_dead_jobs_are_listed_and_redriven,
    a_lease_that_ends_on_the_last_attempt_buries_the_job,
    limits_refuse_large_payloads_long_delays_and_a_full_queue,
    a_job_sent_held_is_not_claimed_by_others,
    concurrent_claimers_take_each_job_exactly_once,
    a_schedule_keeps_its_newest_run,
);

fn job<'a>(queue: &'a str, payload: &'a [u8]) -> NewJob<'a> {
    NewJob {
        queue,
        payload,
        delay: Duration::ZERO,
        dedup_key: None,
        hold: None,
    }
}

const LEASE: Duration = Duration::from_secs(30);

async fn jobs_are_claimed_oldest_first_once_and_acknowledged_by_their_holder(
    store: Arc<dyn QueueStore>,
) {
    let mut ids = Vec::new();
    for payload in [&b"one"[..], b"two", b"three"] {
        let sent = store.send(job("mail", payload)).await.unwrap();
        assert!(!sent.duplicate);
        ids.push(sent.id);
    }
    let claimed = store.claim("mail", "h1", LEASE, 2, 5).await.unwrap();
    assert_eq!(
        claimed.iter().map(|job| job.id).collect::<Vec<_>>(),
        ids[..2]
    );
    assert_eq!(claimed[0].payload, b"one");
    assert!(claimed.iter().all(|job| job.attempt == 1));
    assert!(
        store
            .claim("other", "h1", LEASE, 5, 5)
            .await
            .unwrap()
            .is_empty()
    );
    let stats = store.stats().await.unwrap();
    let mail = stats.iter().find(|queue| queue.queue == "mail").unwrap();
    assert_eq!((mail.waiting, mail.in_flight, mail.dead), (1, 2, 0));
    assert!(mail.oldest_age_ms.is_some());
    assert!(!store.ack(claimed[0].id, "someone else").await.unwrap());
    assert!(store.ack(claimed[0].id, "h1").await.unwrap());
    assert!(
        !store.ack(claimed[0].id, "h1").await.unwrap(),
        "acknowledged once"
    );
    let rest = store.claim("mail", "h2", LEASE, 5, 5).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].id, ids[2]);
}

async fn a_delayed_job_waits_and_a_dedup_key_sends_once(store: Arc<dyn QueueStore>) {
    let delayed = NewJob {
        delay: Duration::from_millis(600),
        ..job("later", b"x")
    };
    store.send(delayed).await.unwrap();
    assert!(
        store
            .claim("later", "h", LEASE, 1, 5)
            .await
            .unwrap()
            .is_empty()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let claimed = store.claim("later", "h", LEASE, 1, 5).await.unwrap();
        if !claimed.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the delayed job never came due"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let keyed = |queue| NewJob {
        dedup_key: Some("invoice:42"),
        ..job(queue, b"42")
    };
    let first = store.send(keyed("billing")).await.unwrap();
    let second = store.send(keyed("billing")).await.unwrap();
    assert!(second.duplicate);
    assert_eq!(second.id, first.id);
    let elsewhere = store.send(keyed("refunds")).await.unwrap();
    assert!(!elsewhere.duplicate, "a key is per queue");
    // Still a duplicate once the first job is done.
    let claimed = store.claim("billing", "h", LEASE, 5, 5).await.unwrap();
    assert_eq!(claimed.len(), 1);
    store.ack(claimed[0].id, "h").await.unwrap();
    assert!(store.send(keyed("billing")).await.unwrap().duplicate);
}

async fn an_ended_lease_lets_another_holder_claim_and_the_first_cannot_settle(
    store: Arc<dyn QueueStore>,
) {
    store.send(job("q", b"p")).await.unwrap();
    let first = store
        .claim("q", "gone", Duration::from_millis(100), 1, 5)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert!(
        store
            .claim("q", "h2", LEASE, 1, 5)
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = store.claim("q", "h2", LEASE, 1, 5).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempt), (first[0].id, 2));
    assert!(!store.ack(first[0].id, "gone").await.unwrap());
    assert!(store.ack(first[0].id, "h2").await.unwrap());
}

async fn retries_count_attempts_and_dead_jobs_are_listed_and_redriven(store: Arc<dyn QueueStore>) {
    let id = store.send(job("q", b"flaky")).await.unwrap().id;
    let claimed = store.claim("q", "h", LEASE, 1, 3).await.unwrap();
    assert!(
        store
            .retry(id, "h", Duration::ZERO, "boom 1", true)
            .await
            .unwrap()
    );
    let stats = store.stats().await.unwrap();
    assert_eq!(stats[0].retrying, 1);
    let claimed_again = store.claim("q", "h", LEASE, 1, 3).await.unwrap();
    assert_eq!(claimed_again[0].attempt, claimed[0].attempt + 1);
    // Not delivered: the attempt is given back.
    store
        .retry(id, "h", Duration::ZERO, "host busy", false)
        .await
        .unwrap();
    let third = store.claim("q", "h", LEASE, 1, 3).await.unwrap();
    assert_eq!(third[0].attempt, 2);
    assert!(store.bury(id, "h", "boom 3").await.unwrap());
    assert!(store.claim("q", "h", LEASE, 1, 3).await.unwrap().is_empty());
    let dead = store.dead("q", 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].id, dead[0].attempts, dead[0].error.as_str()),
        (id, 2, "boom 3")
    );
    assert_eq!(dead[0].payload.as_deref(), Some("flaky"));
    assert_eq!(store.stats().await.unwrap()[0].dead, 1);
    assert_eq!(store.redrive("q", Some(id + 1000)).await.unwrap(), 0);
    assert_eq!(store.redrive("q", None).await.unwrap(), 1);
    let redriven = store.claim("q", "h", LEASE, 1, 3).await.unwrap();
    assert_eq!((redriven[0].id, redriven[0].attempt), (id, 1));
}

async fn a_lease_that_ends_on_the_last_attempt_buries_the_job(store: Arc<dyn QueueStore>) {
    let id = store.send(job("q", b"crash")).await.unwrap().id;
    store
        .claim("q", "gone", Duration::from_millis(50), 1, 1)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(store.claim("q", "h", LEASE, 1, 1).await.unwrap().is_empty());
    let dead = store.dead("q", 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, id);
    assert!(dead[0].error.contains("lease"), "{}", dead[0].error);
}

async fn limits_refuse_large_payloads_long_delays_and_a_full_queue(store: Arc<dyn QueueStore>) {
    let large = vec![0u8; LIMITS.max_payload_bytes + 1];
    assert_eq!(
        store.send(job("q", &large)).await.unwrap_err(),
        QueueError::TooLarge(LIMITS.max_payload_bytes)
    );
    let far = NewJob {
        delay: Duration::from_secs(8 * 24 * 3600),
        ..job("q", b"x")
    };
    assert!(matches!(
        store.send(far).await.unwrap_err(),
        QueueError::Invalid(_)
    ));
    let long_key = "k".repeat(300);
    let keyed = NewJob {
        dedup_key: Some(&long_key),
        ..job("q", b"x")
    };
    assert!(matches!(
        store.send(keyed).await.unwrap_err(),
        QueueError::Invalid(_)
    ));
    for _ in 0..LIMITS.max_jobs {
        store.send(job("full", b"x")).await.unwrap();
    }
    // PostgreSQL counts the depth at most once a second: look again.
    store.stats().await.unwrap();
    assert_eq!(
        store.send(job("full", b"x")).await.unwrap_err(),
        QueueError::Full(LIMITS.max_jobs)
    );
    assert!(store.send(job("other", b"x")).await.is_ok(), "per queue");
}

async fn a_job_sent_held_is_not_claimed_by_others(store: Arc<dyn QueueStore>) {
    let held = NewJob {
        hold: Some(("me", LEASE)),
        dedup_key: Some("1700000000000"),
        ..job("@schedule/d/s", b"1700000000000")
    };
    let sent = store.send(held).await.unwrap();
    assert!(
        store
            .claim("@schedule/d/s", "other", LEASE, 1, 5)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.stats().await.unwrap()[0].in_flight, 1);
    assert!(store.ack(sent.id, "me").await.unwrap());
}

async fn concurrent_claimers_take_each_job_exactly_once(store: Arc<dyn QueueStore>) {
    for index in 0..200u32 {
        store
            .send(job("busy", index.to_string().as_bytes()))
            .await
            .unwrap();
    }
    let mut claimers = Vec::new();
    for claimer in 0..4 {
        let store = Arc::clone(&store);
        claimers.push(tokio::spawn(async move {
            let holder = format!("h{claimer}");
            let mut taken = Vec::new();
            loop {
                let jobs = store.claim("busy", &holder, LEASE, 10, 5).await.unwrap();
                if jobs.is_empty() {
                    return taken;
                }
                for job in jobs {
                    assert!(store.ack(job.id, &holder).await.unwrap());
                    taken.push(job.id);
                }
            }
        }));
    }
    let mut seen: HashMap<u64, u32> = HashMap::new();
    for claimer in claimers {
        for id in claimer.await.unwrap() {
            *seen.entry(id).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 200);
    assert!(seen.values().all(|count| *count == 1));
}

async fn a_schedule_keeps_its_newest_run(store: Arc<dyn QueueStore>) {
    let run = |instant_ms, status| ScheduleRun {
        droplet: "chores".into(),
        schedule: "tidy".into(),
        instant_ms,
        finished_at_ms: instant_ms + 10,
        status,
        host: "a".into(),
        attempt: 1,
    };
    store.schedule_ran(&run(2000, 200)).await.unwrap();
    store.schedule_ran(&run(1000, 500)).await.unwrap();
    store.schedule_ran(&run(3000, 502)).await.unwrap();
    let runs = store.schedule_runs().await.unwrap();
    assert_eq!(runs, [run(3000, 502)]);
}
