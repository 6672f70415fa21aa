//! The baseline: a native hyper 1.x hello-world server with the host's
//! runtime settings (multi-threaded tokio, hyper-util's auto builder,
//! `TCP_NODELAY`), so a ratio against it measures what running a droplet
//! costs and nothing else.
//!
//! With a PostgreSQL URL it also answers `GET /pg`: one round trip to the
//! database running the host's own kv get query (namespace `kvstore`, key
//! `bench`) over as many connections as the host's default pool (16), so a
//! ratio against it measures what a droplet's kv get on PostgreSQL costs
//! beyond the round trip itself.
//!
//! Usage: `native-hello ADDR [POSTGRES_URL]` (port 0 picks one); prints
//! `listening on ADDR`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use droplet_host::storage::kv::postgres::GET_QUERY;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

/// The host's default PostgreSQL pool size.
const CONNECTIONS: usize = 16;

/// Connections to the database, each with the get prepared, taken in turn.
struct Database {
    clients: Vec<(tokio_postgres::Client, tokio_postgres::Statement)>,
    next: AtomicUsize,
}

impl Database {
    async fn connect(url: &str) -> anyhow::Result<Self> {
        let mut clients = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            let get = client.prepare(GET_QUERY).await?;
            clients.push((client, get));
        }
        Ok(Self {
            clients,
            next: AtomicUsize::new(0),
        })
    }

    /// One round trip: the `bench` key's value, if any.
    async fn get(&self) -> Result<Option<Vec<u8>>, tokio_postgres::Error> {
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        let (client, get) = &self.clients[turn];
        let row = client
            .query_opt(get, &[&"kvstore", &b"bench".as_slice()])
            .await?;
        Ok(row.map(|row| row.get(0)))
    }
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    database: Option<Arc<Database>>,
) -> Response<Full<Bytes>> {
    let (status, body) = match (req.uri().path(), database) {
        ("/pg", Some(database)) => match database.get().await {
            Ok(Some(value)) => (200, Bytes::from(value)),
            Ok(None) => (404, Bytes::from_static(b"no such key\n")),
            Err(err) => (503, Bytes::from(format!("database: {err}\n"))),
        },
        (path, _) => (
            200,
            Bytes::from(format!("Hello from native hyper! You asked for {path}\n")),
        ),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    response.headers_mut().insert(
        "content-type",
        "text/plain; charset=utf-8".parse().expect("static header"),
    );
    response
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    let database = match std::env::args().nth(2) {
        Some(url) => Some(Arc::new(Database::connect(&url).await?)),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let database = database.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let database = database.clone();
                async move { Ok::<_, Infallible>(answer(req, database).await) }
            });
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
