//! `pricing` with its bug fixed: a stock of 0 is quoted with no unit price.
//! A test-only build, replayed against `pricing`'s recordings.

/// Whether a stock of 0 is handled (the fixed build).
const FIXED: bool = true;
/// Where the stock is kept.
const STOCK_PREFIX: &str = "stock:";

include!("../../pricing/src/pricing.rs");
