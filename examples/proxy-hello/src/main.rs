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

use futures_lite::stream::unfold;
use std::convert::Infallible;
use wstd::http::body::{Body, Bytes};
use wstd::http::{Error, Request, Response, StatusCode};
use wstd::time::Duration;

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
