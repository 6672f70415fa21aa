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

    /// [`TestDatabase::url`] through `proxy` instead of straight to the
    /// server (the base URL must name its host and port).
    pub fn url_via(&self, proxy: &Proxy) -> String {
        let target = self.server_addr().to_string();
        let url = self.url();
        assert!(
            url.contains(&target),
            "the test database URL must name {target}"
        );
        url.replacen(&target, &proxy.addr().to_string(), 1)
    }

    /// The server's address, from the base URL.
    pub fn server_addr(&self) -> std::net::SocketAddr {
        let config: tokio_postgres::Config = self.base.parse().expect("a valid URL");
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            _ => "127.0.0.1".to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}")
            .parse()
            .expect("an IP address in the test database URL")
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

/// A TCP proxy in front of the test database: pausing it makes the
/// database go away for the hosts behind it (every open connection is cut,
/// new ones are closed at once), without touching the real server that
/// other tests share.
pub struct Proxy {
    addr: std::net::SocketAddr,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    /// A proxy to `target`, listening on a free loopback port.
    pub async fn start(target: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (accepting, cuts) = (std::sync::Arc::clone(&up), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accepting.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                let mut cut = cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { addr, up, cut }
    }

    /// Where hosts connect.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// The database goes away: open connections are cut, new ones refused.
    pub fn pause(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    /// The database is back.
    pub fn resume(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
