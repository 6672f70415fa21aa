//! The baseline: a native hyper 1.x hello-world server with the host's
//! runtime settings (multi-threaded tokio, hyper-util's auto builder,
//! `TCP_NODELAY`), so a ratio against it measures what running a droplet
//! costs and nothing else.
//!
//! Usage: `native-hello ADDR` (port 0 picks one); prints `listening on ADDR`.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                let body = format!(
                    "Hello from native hyper! You asked for {}\n",
                    req.uri().path()
                );
                let mut response = Response::new(Full::new(Bytes::from(body)));
                response.headers_mut().insert(
                    "content-type",
                    "text/plain; charset=utf-8".parse().expect("static header"),
                );
                Ok::<_, Infallible>(response)
            });
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
