//! Calls several upstreams at once from an async handler: the whole takes
//! about as long as the slowest upstream, not their sum.
//!
//! | request | answers |
//! | --- | --- |
//! | `GET /?url=U&url=V…` (1 to 8) | `{"took_ms", "results": [{"url", "status", "body"} or {"url", "error"}]}`, the calls made at once |
//! | `GET /?url=…&one_by_one=1` | the same, the calls made one after another (to compare) |
//!
//! Its manifest lists the upstreams in `allowed_outbound_hosts`.

use std::time::Instant;

use droplet_sdk::fetch::{self, FetchRequest};
use droplet_sdk::{Error, Json, Request, Result, droplet, rt};
use serde_json::{Value, json};

async fn handle(req: Request) -> Result<Json<Value>> {
    let urls = req.query_params("url");
    if !(1..=8).contains(&urls.len()) {
        return Err(Error::bad_request("give 1 to 8 ?url="));
    }
    let started = Instant::now();
    let calls = urls.iter().map(|url| fetch::send(FetchRequest::get(url)));
    let answers = if req.query_param("one_by_one").is_some() {
        let mut answers = Vec::with_capacity(urls.len());
        for call in calls {
            answers.push(call.await);
        }
        answers
    } else {
        rt::join_all(calls).await
    };
    let took_ms = started.elapsed().as_millis();
    let results: Vec<Value> = urls
        .iter()
        .zip(answers)
        .map(|(url, answer)| match answer {
            Ok(response) => json!({
                "url": url,
                "status": response.status(),
                "body": String::from_utf8_lossy(response.body()),
            }),
            Err(err) => json!({ "url": url, "error": err.to_string() }),
        })
        .collect();
    Ok(Json(json!({ "took_ms": took_ms, "results": results })))
}

droplet!(async handle);

#[cfg(test)]
mod tests {
    use super::*;
    use droplet_sdk::Response;
    use droplet_sdk::testing::TestWorld;

    #[test]
    fn answers_each_upstream_in_order() {
        let mut world = TestWorld::new()
            .with_response("GET", "https://a.example/", Response::text("A"))
            .with_response("GET", "https://b.example/", Response::new(503));
        for query in ["", "&one_by_one=1"] {
            let target = format!(
                "/?url=https://a.example/&url=https://b.example/&url=https://c.example/{query}"
            );
            let reply: Value = world
                .call_async(handle, Request::get(&target))
                .json_body()
                .unwrap();
            let results = &reply["results"];
            assert_eq!(results[0]["body"], "A");
            assert_eq!(results[1]["status"], 503);
            assert!(results[2]["error"].as_str().unwrap().contains("denied"));
        }
        assert_eq!(world.call_async(handle, Request::get("/")).status(), 400);
    }
}
