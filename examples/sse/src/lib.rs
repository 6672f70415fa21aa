//! Streaming both ways with the SDK's [`stream`] module.
//!
//! | request | answers |
//! | --- | --- |
//! | `GET /events` | three server-sent events, 300 ms apart, each sent as it is written |
//! | `POST /echo` | the request body, each piece sent back as it arrives |
//! | `POST /count` | how many bytes the body had, read piece by piece (never held whole) |

use std::io::Read;
use std::time::Duration;

use droplet_sdk::{Request, Response, droplet, stream};

fn handle(req: Request) -> Response {
    match (req.method(), req.path()) {
        ("GET", "/events") => events(),
        ("POST", "/echo") => echo(),
        ("POST", "/count") => count(),
        _ => Response::error(
            404,
            "not_found",
            "try GET /events, POST /echo or POST /count",
        ),
    }
}

fn events() -> Response {
    let head = Response::new(200)
        .with_header("content-type", "text/event-stream")
        .with_header("cache-control", "no-cache");
    let Ok(mut events) = stream::start(head) else {
        return Response::error(503, "unavailable", "the response could not start");
    };
    for n in 0..3 {
        if n > 0 {
            std::thread::sleep(Duration::from_millis(300));
        }
        if events
            .write(format!("data: event {n}\n\n").as_bytes())
            .is_err()
        {
            break;
        }
    }
    events.finish()
}

fn echo() -> Response {
    let Ok(mut out) = stream::start(Response::new(200)) else {
        return Response::error(503, "unavailable", "the response could not start");
    };
    let mut body = stream::body();
    while let Ok(Some(piece)) = body.next_piece(64 * 1024) {
        if out.write(&piece).is_err() {
            break;
        }
    }
    out.finish()
}

fn count() -> Response {
    let mut body = stream::body();
    let mut buffer = [0u8; 16 * 1024];
    let mut total = 0usize;
    loop {
        match body.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => total += read,
            Err(err) => return Response::error(400, "bad_request", &err.to_string()),
        }
    }
    Response::text(format!("{total} bytes\n"))
}

droplet!(handle);
