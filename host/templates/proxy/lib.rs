//! A proxy: forwards each request to the upstream named in the manifest's
//! `[config] upstream`, with the same method, path, query and body, and
//! answers with what came back. The upstream's origin must also be in
//! `allowed_outbound_hosts`: outbound HTTP is denied by default.

use droplet_sdk::fetch::{self, FetchRequest};
use droplet_sdk::{Request, Response, Result, config, droplet};

/// Request headers passed on to the upstream (the host sets the rest).
const FORWARDED: &[&str] = &["accept", "content-type", "user-agent"];

fn handle(req: Request) -> Result<Response> {
    let upstream = config::require("upstream")?;
    let target = match req.query() {
        "" => format!("{}{}", upstream.trim_end_matches('/'), req.path()),
        query => format!("{}{}?{query}", upstream.trim_end_matches('/'), req.path()),
    };
    let mut outgoing = FetchRequest::new(req.method(), &target).with_body(req.body());
    for name in FORWARDED {
        if let Some(value) = req.header(name) {
            outgoing = outgoing.with_header(name, value);
        }
    }
    // A failure answers 502 (504 past the budget) in the host's error shape.
    let answer = fetch::fetch(outgoing)?;
    Ok(answer.with_header("x-proxied-by", "droplet"))
}

droplet!(handle);

#[cfg(test)]
mod tests {
    use super::*;
    use droplet_sdk::testing::TestWorld;

    #[test]
    fn forwards_the_request_and_relays_the_answer() {
        let upstream = Response::new(201).with_body("made");
        let mut world = TestWorld::new()
            .with_config("upstream", "https://api.example.com/")
            .with_response("POST", "https://api.example.com/items?x=1", upstream);
        let answer = world.call(handle, Request::post("/items?x=1", "{}"));
        assert_eq!((answer.status(), answer.body_text()), (201, Some("made")));
        assert_eq!(answer.header("x-proxied-by"), Some("droplet"));
        assert_eq!(world.fetched()[0].body(), b"{}");
        let unknown = world.call(handle, Request::get("/elsewhere"));
        assert_eq!(unknown.status(), 502);
    }
}
