//! Quotes an item: its stock from kv, its price from an upstream, the time
//! and a random quote id — and fails with 500 when the stock is 0. The
//! droplet the README's "When a droplet fails: replay it" walks through:
//! its failure depends on kv, an upstream's answer, the clock and random
//! numbers, and `droplet replay` reproduces it exactly.
//!
//! | request | answers |
//! | --- | --- |
//! | `GET /?item=NAME` | `{"item", "price", "stock", "unit_price", "quoted_at", "quote_id"}` |
//! | … with a stock of 0 | 500 `no_stock` (the bug) |
//! | … with the upstream away | 502 `upstream_unreachable` |
//! | `PUT /?item=NAME` with the stock as the body | `{"item", "stock"}` |
//!
//! kv `stock:NAME` holds the stock (decimal); config `upstream` is where
//! `GET /price?item=NAME` answers the price.

/// Whether a stock of 0 is handled (the fixed build).
const FIXED: bool = false;
/// Where the stock is kept.
const STOCK_PREFIX: &str = "stock:";

include!("pricing.rs");
