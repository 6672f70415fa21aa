//! The sled backend's entries: how a value and its expiry are encoded, and
//! the compare-and-swap that every write of one key is (with the
//! namespace's byte count and quota kept exact).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use super::{KvError, Limits};

/// An open namespace: its tree and a running count of its bytes (computed
/// by a scan when first opened, then kept up to date by every write).
#[derive(Clone)]
pub(super) struct Namespace {
    pub(super) tree: sled::Tree,
    pub(super) bytes: Arc<AtomicU64>,
}

pub(super) fn storage(err: sled::Error) -> KvError {
    tracing::error!(error = %err, "kv storage error");
    KvError::Unavailable("storage error".to_string())
}

/// What a [`swap_entry`] step decided.
pub(super) enum Swap<T> {
    /// Leave the entry as it is and answer `T`.
    Keep(T),
    /// Replace the entry (`None`: remove it), then answer `T`.
    Write(Option<sled::IVec>, T),
}

/// Changes `key`'s stored entry atomically: `step` sees the current entry
/// and decides; if another writer changed the entry in between, `step` runs
/// again on the new one. Growth is reserved against the namespace's quota
/// *before* the write ([`reserve`]), so concurrent writers cannot pass the
/// quota together.
pub(super) fn swap_entry<T>(
    namespace: &Namespace,
    key: &str,
    limits: Limits,
    mut step: impl FnMut(Option<&[u8]>) -> Result<Swap<T>, KvError>,
) -> Result<T, KvError> {
    loop {
        let current = namespace.tree.get(key.as_bytes()).map_err(storage)?;
        let (new_raw, answer) = match step(current.as_deref())? {
            Swap::Keep(answer) => return Ok(answer),
            Swap::Write(new_raw, answer) => (new_raw, answer),
        };
        let delta = size_delta(
            key.len(),
            current.as_ref().map(|raw| raw.len()),
            new_raw.as_ref().map(|raw| raw.len()),
        );
        let grows = u64::try_from(delta).ok().filter(|&grow| grow > 0);
        if let Some(grow) = grows {
            reserve(namespace, grow, limits)?;
        }
        let outcome = namespace
            .tree
            .compare_and_swap(key.as_bytes(), current.as_ref(), new_raw);
        let swapped = matches!(outcome, Ok(Ok(())));
        if !swapped && let Some(grow) = grows {
            namespace.bytes.fetch_sub(grow, Ordering::SeqCst);
        }
        outcome.map_err(storage)?.ok();
        if swapped {
            if grows.is_none() {
                apply_delta(namespace, delta);
            }
            return Ok(answer);
        }
        // Someone wrote in between: look again.
    }
}

/// Counts `grow` more bytes in the namespace if that stays within its
/// quota, in one atomic step; refuses (counting nothing) otherwise. A
/// reservation that loses its race is given back by the caller.
pub(super) fn reserve(namespace: &Namespace, grow: u64, limits: Limits) -> Result<(), KvError> {
    let before = namespace.bytes.fetch_add(grow, Ordering::SeqCst);
    if limits
        .quota_bytes
        .is_some_and(|quota| before.saturating_add(grow) > quota)
    {
        namespace.bytes.fetch_sub(grow, Ordering::SeqCst);
        return Err(KvError::QuotaExceeded);
    }
    Ok(())
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

pub(super) fn encode(expires_at: u64, value: &[u8]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(8 + value.len());
    raw.extend_from_slice(&expires_at.to_be_bytes());
    raw.extend_from_slice(value);
    raw
}

pub(super) fn expiry(raw: &[u8]) -> u64 {
    raw.get(..8)
        .and_then(|head| head.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

pub(super) fn is_expired(raw: &[u8], now: u64) -> bool {
    let expires_at = expiry(raw);
    expires_at != 0 && expires_at <= now
}

/// The value of a stored entry, unless it expired.
pub(super) fn live_value(raw: &[u8], now: u64) -> Option<&[u8]> {
    (raw.len() >= 8 && !is_expired(raw, now)).then(|| &raw[8..])
}

/// How a namespace's byte count changes when `key`'s stored entry goes from
/// `old` to `new` bytes (`None`: absent).
pub(super) fn size_delta(key_len: usize, old: Option<usize>, new: Option<usize>) -> i64 {
    let size = |len: Option<usize>| len.map_or(0, |len| (key_len + len) as i64);
    size(new) - size(old)
}

pub(super) fn apply_delta(namespace: &Namespace, delta: i64) {
    if delta >= 0 {
        namespace.bytes.fetch_add(delta as u64, Ordering::Relaxed);
    } else {
        namespace
            .bytes
            .fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
    }
}

pub(super) fn poisoned() -> KvError {
    KvError::Unavailable("storage state is poisoned".to_string())
}
