//! The split at routing time: which version of a droplet under a rollout
//! answers a request. Each host keeps, beside its table of current
//! versions, the canary of every running rollout it follows ([`Canary`]);
//! a request takes the canary when its bucket (0–99) is under the step's
//! share. A caller with a key (its verified `sub`, else its
//! `x-droplet-rollout-key`) always lands in the same bucket of a rollout,
//! so it sees one version within a step, and once it reaches the canary it
//! stays there as the share grows. No lock and no allocation per request:
//! one atomic load of the canaries, one of the share (`routing.rs` has the
//! table's side).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use super::window::Counts;
use crate::droplets::droplet::Droplet;
use crate::droplets::version::VersionId;

/// What a request carries that keeps it on one version: a hash of its
/// caller's verified `sub` or of its `x-droplet-rollout-key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StickyKey(u64);

impl StickyKey {
    /// The key of `kind` (`sub` or `key`) with value `value`.
    pub fn of(kind: &str, value: &[u8]) -> Self {
        Self(mix(fnv1a(fnv1a(FNV_OFFSET, kind.as_bytes()), value)))
    }
}

/// One running rollout's canary on this host.
pub struct Canary {
    /// The version it rolls out over: the split applies only while the
    /// table serves this version.
    pub stable: VersionId,
    /// The canary version, compiled and ready.
    pub droplet: Arc<Droplet>,
    /// Its share now, percent.
    share: AtomicU8,
    /// The rollout's own bucket seed (from the canary's id): two rollouts
    /// put one caller in unrelated buckets.
    seed: u64,
    /// Both versions' counts when the current step started here.
    pub(super) baseline: Mutex<Baseline>,
}

/// Counts at the start of a step, on this host.
#[derive(Debug, Default, Clone)]
pub(super) struct Baseline {
    /// The step's identity (`Rollout::step_started_at_ms`).
    pub step_started_at_ms: u64,
    pub canary: Counts,
    pub stable: Counts,
}

impl Canary {
    /// `droplet` as the canary of `stable`, at `share` percent.
    pub fn new(stable: VersionId, droplet: Arc<Droplet>, share: u8) -> Self {
        Self {
            seed: fnv1a(FNV_OFFSET, droplet.version.as_str().as_bytes()),
            stable,
            droplet,
            share: AtomicU8::new(share.min(100)),
            baseline: Mutex::new(Baseline::default()),
        }
    }

    /// Its share now, percent.
    pub fn share(&self) -> u8 {
        self.share.load(Ordering::Relaxed)
    }

    /// Sets its share.
    pub fn set_share(&self, share: u8) {
        self.share.store(share.min(100), Ordering::Relaxed);
    }

    /// Whether a request with `key` (or, without one, a random draw) goes
    /// to the canary.
    pub fn takes(&self, key: Option<StickyKey>) -> bool {
        match self.share() {
            0 => false,
            100.. => true,
            share => {
                let bucket = match key {
                    Some(key) => bucket(key, self.seed),
                    None => fastrand::u64(..100),
                };
                bucket < u64::from(share)
            }
        }
    }
}

/// The bucket (0–99) of `key` in the rollout seeded `seed`.
fn bucket(StickyKey(hash): StickyKey, seed: u64) -> u64 {
    mix(hash ^ seed) % 100
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a: the same on every host and every build, so a fleet's hosts
/// put a caller in the same bucket.
fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// splitmix64's finaliser: spreads FNV's low bits before `% 100`.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_lands_in_one_bucket_and_keys_spread_by_the_share() {
        let seed = fnv1a(FNV_OFFSET, b"2-bbbbbbbbbbbb");
        let bucket = |key| bucket(key, seed);
        let alice = StickyKey::of("sub", b"alice");
        assert_eq!(bucket(alice), bucket(StickyKey::of("sub", b"alice")));
        assert_ne!(alice, StickyKey::of("key", b"alice"));
        let under_25 = (0..10_000)
            .filter(|i| bucket(StickyKey::of("sub", format!("user-{i}").as_bytes())) < 25)
            .count();
        assert!(
            (2_200..2_800).contains(&under_25),
            "{under_25} of 10000 under 25 %"
        );
    }
}
