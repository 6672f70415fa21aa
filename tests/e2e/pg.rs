//! The machine's PostgreSQL for tests: each test gets a schema of its own
//! (created now, dropped with everything in it when the test ends), so
//! tests run in parallel and leave nothing behind.
//!
//! The server is `DROPLET_TEST_DATABASE_URL`, else
//! `postgres://postgres@127.0.0.1:5432/test`. When it cannot be reached a
//! test is skipped with the reason printed — unless
//! `DROPLET_REQUIRE_POSTGRES=1` (CI sets it), when that fails the test.

use std::time::Duration;

use tokio_postgres::NoTls;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A schema of this test's own in the test database.
pub struct TestDatabase {
    base: String,
    schema: String,
}

impl TestDatabase {
    /// A fresh schema, or `None` (with the reason printed) when there is no
    /// PostgreSQL to use.
    pub async fn create(test: &str) -> Option<Self> {
        let base = std::env::var("DROPLET_TEST_DATABASE_URL").unwrap_or(DEFAULT_URL.to_string());
        let schema = format!(
            "t_{}_{:08x}",
            test.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(30)
                .collect::<String>(),
            fastrand::u32(..)
        )
        .to_ascii_lowercase();
        let client = match connect(&base).await {
            Ok(client) => client,
            Err(err) => {
                let reason = format!("PostgreSQL is not reachable at {base}: {err}");
                if std::env::var("DROPLET_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                    panic!("{reason} (and DROPLET_REQUIRE_POSTGRES=1)");
                }
                eprintln!("skipped {test}: {reason} (set DROPLET_TEST_DATABASE_URL)");
                return None;
            }
        };
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .expect("create the test schema");
        Some(Self { base, schema })
    }

    /// The URL a host uses: the test database with this schema first on
    /// its `search_path`, and the schema's name as the application name (so
    /// a test can find its hosts' connections, and only theirs).
    pub fn url(&self) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-c%20search_path%3D{schema}&application_name={schema}",
            self.base,
            schema = self.schema
        )
    }

    /// The application name hosts on [`TestDatabase::url`] connect with.
    pub fn application_name(&self) -> &str {
        &self.schema
    }

    /// A plain connection in this schema, to look at what hosts stored.
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url())
            .await
            .expect("connect to the test schema")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (base, schema) = (self.base.clone(), self.schema.clone());
        // Dropping runs outside any runtime the test may still hold.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the test schema");
            runtime.block_on(async {
                if let Ok(client) = connect(&base).await {
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.connect_timeout(Duration::from_secs(3));
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}
