//! A standard `wasi:http/proxy` component, built with the published `wstd`
//! crate and nothing of droplet's: the droplet host serves it unchanged, as
//! Spin or `wasmtime serve` would.
//!
//! | path | answers |
//! | --- | --- |
//! | `/` | a greeting |
//! | `/echo` | the request body |
//! | `/spin` | never: loops forever (the host's budget stops it) |
//! | `/stream` | a body that streams a piece every 10 ms, forever |
//! | `/big` | a 20 MiB body |
//! | `/hoard` | never: makes the host hold `fields` of ~120 KiB each, without end (the host stops it) |
//! | `/generate` | a 5 MiB body, generated and written 64 KiB at a time |
//! | `/duplex` | the request body, each piece sent back as it arrives |
//! | `/sse` | three server-sent events, 300 ms apart |
//! | `/headers` | the request's `x-raw` header bytes in `x-raw-echo`, and its own `server-timing` and `x-trace-id` |
//! | `/print` | writes `start a print 1234` to stderr one piece at a time |
//! | `/double-echo?to=URL` | sends `ping ` to URL, waits for the echoed response head while its request body is still open, then sends `pong`: answers what came back |

use futures_lite::stream::unfold;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use wstd::http::body::{Body, Bytes};
use wstd::http::{Error, Request, Response, StatusCode};
use wstd::time::Duration;

/// An incoming body handed back as the response body.
struct Passed(http_body_util::combinators::UnsyncBoxBody<Bytes, Error>);

// SAFETY: a wasm32-wasip2 component has one thread; the body never
// crosses to another.
unsafe impl Send for Passed {}

impl http_body::Body for Passed {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        Pin::new(&mut self.0).poll_frame(cx)
    }
}

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    match request.uri().path() {
        "/" => Ok(Response::new(
            "Hello from a wasi:http component\n".to_owned().into(),
        )),
        "/echo" => {
            let mut body = request.into_body();
            let bytes = body.contents().await?.to_vec();
            Ok(Response::new(bytes.into()))
        }
        "/spin" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "/stream" => {
            let pieces = unfold((), |()| async {
                wstd::task::sleep(Duration::from_millis(10)).await;
                Some((Ok::<_, Infallible>(Bytes::from_static(b"tick\n")), ()))
            });
            Ok(Response::new(Body::from_try_stream(pieces)))
        }
        "/big" => Ok(Response::new(vec![b'b'; 20 << 20].into())),
        "/generate" => {
            let pieces = unfold(0u32, |n| async move {
                (n < 80).then(|| {
                    (
                        Ok::<_, Infallible>(Bytes::from(vec![b'g'; 64 << 10])),
                        n + 1,
                    )
                })
            });
            Ok(Response::new(Body::from_try_stream(pieces)))
        }
        "/duplex" => {
            let body = request.into_body().into_boxed_body();
            Ok(Response::new(Body::from_http_body(Passed(body))))
        }
        "/sse" => {
            let events = unfold(0, |n| async move {
                if n == 3 {
                    return None;
                }
                if n > 0 {
                    wstd::task::sleep(Duration::from_millis(300)).await;
                }
                let event = Bytes::from(format!("data: event {n}\n\n"));
                Some((Ok::<_, Infallible>(event), n + 1))
            });
            Ok(Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_try_stream(events))?)
        }
        "/headers" => {
            let mut response = Response::builder()
                .header("server-timing", "app;dur=1.5")
                .header("x-trace-id", "from-the-component");
            if let Some(raw) = request.headers().get("x-raw") {
                response = response.header("x-raw-echo", raw.clone());
            }
            Ok(response.body("headers\n".to_owned().into())?)
        }
        "/print" => {
            eprint!("start a print ");
            for piece in 1..=4 {
                eprint!("{piece}");
            }
            eprintln!();
            eprintln!();
            eprint!("unfinished at the end");
            Ok(Response::new("printed\n".to_owned().into()))
        }
        "/double-echo" => {
            let to = request
                .uri()
                .query()
                .and_then(|query| query.strip_prefix("to="))
                .unwrap_or("")
                .to_owned();
            match double_echo(&to) {
                Ok(echoed) => Ok(Response::new(echoed.into())),
                Err(err) => Ok(Response::builder()
                    .status(StatusCode::BAD_GATEWAY)
                    .body(format!("{err}\n").into())?),
            }
        }
        "/hoard" => {
            // Each `fields` lives in the host's resource table, not in this
            // component's memory: only its handle stays here.
            let value = vec![b'v'; 120 << 10];
            let mut kept = Vec::new();
            loop {
                let entry = ("x-hoard".to_owned(), value.clone());
                match wasip2::http::types::Fields::from_list(&[entry]) {
                    Ok(fields) => kept.push(fields),
                    Err(err) => {
                        return Ok(Response::new(format!("refused: {err:?}\n").into()));
                    }
                }
            }
        }
        _ => Ok(Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body("not found\n".to_owned().into())?),
    }
}

/// Sends `ping ` to `to`, waits for the response head while the request
/// body is still open, reads the echo, then sends `pong` and finishes:
/// only a host that sends a request's head before its body is complete
/// answers.
fn double_echo(to: &str) -> Result<Vec<u8>, String> {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};

    let authority = to
        .strip_prefix("http://")
        .ok_or("to= must be an http:// URL")?;
    let request = OutgoingRequest::new(Fields::new());
    request.set_method(&Method::Post).map_err(|()| "method")?;
    request
        .set_scheme(Some(&Scheme::Http))
        .map_err(|()| "scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| "authority")?;
    request
        .set_path_with_query(Some("/"))
        .map_err(|()| "path")?;
    let body = request.body().map_err(|()| "body")?;
    let future = outgoing_handler::handle(request, None).map_err(|err| format!("{err:?}"))?;
    let out = body.write().map_err(|()| "write")?;
    out.blocking_write_and_flush(b"ping ")
        .map_err(|err| format!("{err:?}"))?;
    future.subscribe().block();
    let response = future
        .get()
        .ok_or("no response")?
        .map_err(|()| "response taken")?
        .map_err(|err| format!("{err:?}"))?;
    let incoming = response.consume().map_err(|()| "consume")?;
    let input = incoming.stream().map_err(|()| "stream")?;
    let mut echoed = Vec::new();
    while echoed.len() < 5 {
        let piece = input.blocking_read(64).map_err(|err| format!("{err:?}"))?;
        echoed.extend_from_slice(&piece);
    }
    out.blocking_write_and_flush(b"pong")
        .map_err(|err| format!("{err:?}"))?;
    drop(out);
    OutgoingBody::finish(body, None).map_err(|err| format!("{err:?}"))?;
    while let Ok(piece) = input.blocking_read(64) {
        echoed.extend_from_slice(&piece);
    }
    Ok(echoed)
}
