//! `pricing` reading its stock from another key: a test-only build whose
//! replay against `pricing`'s recordings diverges at its first import call.

/// Whether a stock of 0 is handled (the fixed build).
const FIXED: bool = true;
/// Where the stock is kept.
const STOCK_PREFIX: &str = "inventory:";

include!("../../pricing/src/pricing.rs");
