//! The SDK's async handlers in the real runtime: the `aggregator` droplet
//! sends its outbound requests at once.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::support::HostBuilder;

/// A server whose `/gate/NAME` answers `NAME` only once three such
/// requests are in flight together (or `alone` with 504 after 20 s), and
/// whose `/plain/NAME` answers `NAME` at once.
async fn gated_upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gate = Arc::new(tokio::sync::Barrier::new(3));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let gate = Arc::clone(&gate);
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let gate = Arc::clone(&gate);
                    async move {
                        let path = req.uri().path().to_string();
                        let (status, body) = match path.split_once('/').map(|(_, rest)| rest) {
                            Some(rest) if rest.starts_with("gate/") => {
                                let waited =
                                    tokio::time::timeout(Duration::from_secs(20), gate.wait())
                                        .await;
                                match waited {
                                    Ok(_) => (200, rest["gate/".len()..].to_string()),
                                    Err(_) => (504, "alone".to_string()),
                                }
                            }
                            Some(rest) => (200, rest.trim_start_matches("plain/").to_string()),
                            None => (404, String::new()),
                        };
                        let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
                        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// The aggregator's answer to `urls`, which reach the gate's `a`, `b` and
/// `c`: each answered, so all three were under way together.
async fn gated_answers(host: &crate::support::Host, urls: &[String]) {
    let reply = host.get(&format!("/aggregator/?{}", urls.join("&"))).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let results = &reply.json()["results"];
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        assert_eq!(results[i]["status"], 200, "{results}");
        assert_eq!(results[i]["body"], *name, "{results}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_handler_sends_its_requests_at_once() {
    let addr = gated_upstream().await;
    let host = HostBuilder::new()
        .droplet_with(
            "aggregator",
            "aggregator",
            &format!("allowed_outbound_hosts = [\"http://{addr}\"]\nbudget_ms = 30000\n"),
        )
        .start()
        .await;
    // Each upstream answers only while all three are waiting: one after
    // another, the first would wait alone.
    let urls = ["a", "b", "c"].map(|name| format!("url=http://{addr}/gate/{name}"));
    gated_answers(&host, &urls).await;
    // One after another, in order.
    let urls = ["x", "y"].map(|name| format!("url=http://{addr}/plain/{name}"));
    let reply = host
        .get(&format!("/aggregator/?{}&one_by_one=1", urls.join("&")))
        .await;
    let results = &reply.json()["results"];
    assert_eq!(
        (results[0]["body"].as_str(), results[1]["body"].as_str()),
        (Some("x"), Some("y"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_to_other_droplets_run_at_once_too() {
    // aggregator → relay (in process, through `fp:droplet/calls`) → the
    // gate: each gated request is answered only while all three wait, so
    // the three in-process calls must be under way together.
    let addr = gated_upstream().await;
    let host = HostBuilder::new()
        .droplet_with(
            "aggregator",
            "aggregator",
            "allowed_outbound_hosts = [\"http://*.droplet.internal\"]\nbudget_ms = 30000\n",
        )
        .droplet_with(
            "relay",
            "gateway",
            &format!("allowed_outbound_hosts = [\"http://{addr}\"]\nbudget_ms = 30000\n"),
        )
        .start()
        .await;
    let encoded = |url: &str| url.replace(':', "%3A").replace('/', "%2F");
    let urls = ["a", "b", "c"].map(|name| {
        let upstream = encoded(&format!("http://{addr}/gate/{name}"));
        let relayed = format!("http://relay.droplet.internal/relay?url={upstream}");
        format!(
            "url={}",
            encoded(&relayed).replace('?', "%3F").replace('=', "%3D")
        )
    });
    gated_answers(&host, &urls).await;
}
