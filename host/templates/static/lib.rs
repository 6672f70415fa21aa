//! A static site: the files under `static/` are built into the droplet and
//! served with their content type, an `ETag` (a `304` when the browser has
//! the file already) and a cache policy. Add files to `static/` and to
//! `FILES` below, then `droplet build`.

use droplet_sdk::{Error, Request, Response, Result, Router, droplet};

/// Every file served: its path, its content type, its bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "/index.html",
        "text/html; charset=utf-8",
        include_bytes!("../static/index.html"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_bytes!("../static/style.css"),
    ),
];

fn handle(req: Request) -> Response {
    Router::new().get("/*path", file).handle(req)
}

/// `GET /path` (and `HEAD`): the file, `/` being `/index.html`.
fn file(req: Request) -> Result<Response> {
    let path = match req.path() {
        "/" | "" => "/index.html",
        path => path,
    };
    let (_, content_type, bytes) = FILES
        .iter()
        .find(|(name, _, _)| *name == path)
        .ok_or_else(|| Error::not_found(format!("no file {path}")))?;
    let etag = format!("\"{:016x}\"", fnv1a(bytes));
    let cached = req
        .header_values("if-none-match")
        .flat_map(|value| value.split(','))
        .any(|tag| tag.trim() == etag || tag.trim() == "*");
    let response = Response::new(if cached { 304 } else { 200 })
        .with_header("etag", etag)
        .with_header("cache-control", "public, max-age=60");
    Ok(if cached {
        response
    } else {
        response.with_header("content-type", *content_type).with_body(*bytes)
    })
}

/// The 64-bit FNV-1a hash of `bytes`: a stable `ETag` for the built file.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

droplet!(handle);

#[cfg(test)]
mod tests {
    use super::*;
    use droplet_sdk::testing::TestWorld;

    #[test]
    fn serves_files_with_their_type_and_answers_304_for_a_known_etag() {
        let mut world = TestWorld::new();
        let index = world.call(handle, Request::get("/"));
        assert_eq!(index.status(), 200);
        assert_eq!(index.header("content-type"), Some("text/html; charset=utf-8"));
        let etag = index.header("etag").unwrap().to_string();
        let again = world.call(handle, Request::get("/index.html").with_header("if-none-match", &etag));
        assert_eq!((again.status(), again.body().len()), (304, 0));
        let css = world.call(handle, Request::get("/style.css"));
        assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
        assert_eq!(world.call(handle, Request::get("/missing.js")).status(), 404);
        assert_eq!(world.call(handle, Request::post("/", "")).status(), 405);
    }
}
