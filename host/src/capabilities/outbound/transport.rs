//! The outbound client's connections: hyper's pooled client (keep-alive,
//! HTTP/1.1 and HTTP/2 by ALPN) over the SSRF-guarding resolver
//! ([`guard::public_addresses`]) and rustls with the webpki roots. A
//! request goes out with exactly the headers the guest set, plus the
//! host's `traceparent`: no `accept` or `user-agent` of the host's own.
//! Redirects are not followed and no proxy is used (a proxy would connect
//! wherever the name resolves, past the guard).

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::bodies::SentBody;
use super::guard;

/// The pooled client every droplet's requests go through.
pub type Transport = Client<hyper_rustls::HttpsConnector<HttpConnector<PublicOnly>>, SentBody>;

/// Builds the client: idle connections kept 30 s.
pub fn transport() -> Transport {
    let mut http = HttpConnector::new_with_resolver(PublicOnly);
    // `https` URLs are handed to this connector by the TLS one.
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_timer(TokioTimer::new())
        .build(https)
}

/// Names resolved by the host, public addresses only.
#[derive(Clone, Copy)]
pub struct PublicOnly;

impl tower_service::Service<Name> for PublicOnly {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = guard::Refused;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, guard::Refused>> + Send + 'static>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), guard::Refused>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let host = name.as_str().to_string();
        Box::pin(async move { Ok(guard::public_addresses(&host).await?.into_iter()) })
    }
}
