// The handler, shared by `pricing` and its test-only variants (`pricing-fixed`,
// `pricing-rekeyed`), which set `FIXED` and `STOCK_PREFIX` before including it.

use std::time::{SystemTime, UNIX_EPOCH};

use droplet_sdk::{Error, Json, Request, Response, Result, Router, config, droplet, fetch, kv};
use serde_json::{Value, json};

fn handle(req: Request) -> Response {
    Router::new()
        .get("/", quote)
        .put("/", set_stock)
        .handle(req)
}

/// `PUT /?item=NAME` with the stock as the body.
fn set_stock(req: Request) -> Result<Json<Value>> {
    let item = req
        .query_param("item")
        .ok_or_else(|| Error::bad_request("give ?item="))?;
    let stock: i64 = String::from_utf8_lossy(req.body())
        .trim()
        .parse()
        .map_err(|_| Error::bad_request("the body is the stock, a whole number"))?;
    kv::set(&format!("{STOCK_PREFIX}{item}"), stock.to_string().as_bytes(), None)?;
    Ok(Json(json!({ "item": item, "stock": stock })))
}

fn quote(req: Request) -> Result<Json<Value>> {
    let item = req
        .query_param("item")
        .ok_or_else(|| Error::bad_request("give ?item="))?;
    let stock: i64 = kv::get(&format!("{STOCK_PREFIX}{item}"))?
        .and_then(|value| String::from_utf8(value).ok()?.trim().parse().ok())
        .unwrap_or(0);
    let upstream = config::get_or("upstream", "http://127.0.0.1:8099");
    let answer = fetch::get(&format!("{upstream}/price?item={item}"))
        .map_err(|err| Error::new(502, "upstream_unreachable", err.to_string()))?;
    let price: i64 = String::from_utf8_lossy(answer.body())
        .trim()
        .parse()
        .map_err(|_| Error::new(502, "bad_upstream", "the upstream's price is not a number"))?;
    let quoted_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    let quote_id = format!("{:016x}", wasip2::random::random::get_random_u64());
    if stock == 0 && !FIXED {
        // The bug: a unit price over no stock.
        return Err(Error::new(
            500,
            "no_stock",
            format!("cannot price {item} at {price} over a stock of 0 (quote {quote_id} at {quoted_at})"),
        ));
    }
    let unit_price = if stock == 0 { Value::Null } else { json!(price / stock) };
    Ok(Json(json!({
        "item": item,
        "price": price,
        "stock": stock,
        "unit_price": unit_price,
        "quoted_at": quoted_at,
        "quote_id": quote_id,
    })))
}

droplet!(handle);
