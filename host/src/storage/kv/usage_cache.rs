//! Each droplet's kv usage, as recently read: the dashboard's overview
//! shows it on every row, and reading it from the backend for every row of
//! every refresh would cost a scan per droplet.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::backend::Usage;

/// How long a droplet's usage is reused before it is read again.
pub const USAGE_TTL: Duration = Duration::from_secs(5);

/// Droplets remembered before the stale ones are forgotten.
const FORGET_PAST: usize = 4096;

/// Recently read kv usage, by droplet. A `std` mutex: held only to look up
/// or insert, never across an await.
#[derive(Default)]
pub struct UsageCache(Mutex<HashMap<String, (Instant, Usage)>>);

impl UsageCache {
    /// `name`'s usage if it was read within [`USAGE_TTL`].
    pub fn fresh(&self, name: &str) -> Option<Usage> {
        let cache = self.0.lock().ok()?;
        let (at, usage) = cache.get(name)?;
        (at.elapsed() < USAGE_TTL).then_some(*usage)
    }

    /// Remembers `name`'s usage, just read.
    pub fn keep(&self, name: &str, usage: Usage) {
        if let Ok(mut cache) = self.0.lock() {
            // Forget droplets that are gone, now and then.
            if cache.len() > FORGET_PAST {
                cache.retain(|_, (at, _)| at.elapsed() < USAGE_TTL);
            }
            cache.insert(name.to_string(), (Instant::now(), usage));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_reused_while_fresh() {
        let cache = UsageCache::default();
        assert_eq!(cache.fresh("a"), None);
        let usage = Usage { keys: 3, bytes: 40 };
        cache.keep("a", usage);
        assert_eq!(cache.fresh("a"), Some(usage));
        assert_eq!(cache.fresh("b"), None);
    }
}
