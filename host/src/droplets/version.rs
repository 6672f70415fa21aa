//! Version ids: `{seq}-{hash12}`, a sequence number increasing across the
//! whole host (and across restarts) and the first 12 hex digits of the
//! content hash of module and manifest together.
//!
//! A [`VersionId`] is parsed once, where it enters the host (a stored file
//! name), and carried as a value from then on; its text is shared, so
//! putting it in a header or a log line allocates nothing.

use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// How many hex digits of the content hash a version id carries.
const SHORT_HASH_LEN: usize = 12;

/// The SHA-256 of a version's module and manifest, in lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentHash(String);

impl ContentHash {
    /// The hash of `wasm` with `manifest`: a manifest change alone is new
    /// content.
    pub fn of(wasm: &[u8], manifest: Option<&str>) -> Self {
        let mut digest = Sha256::new();
        digest.update((wasm.len() as u64).to_le_bytes());
        digest.update(wasm);
        if let Some(manifest) = manifest {
            digest.update(manifest.as_bytes());
        }
        Self(format!("{:x}", digest.finalize()))
    }

    fn short(&self) -> &str {
        &self.0[..SHORT_HASH_LEN]
    }
}

/// One version of a droplet: `{seq}-{hash12}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionId {
    seq: u64,
    /// The whole id as text, shared by every copy.
    text: Arc<str>,
}

impl VersionId {
    /// Version `seq` with content `hash`.
    pub fn new(seq: u64, hash: &ContentHash) -> Self {
        Self {
            seq,
            text: format!("{seq}-{}", hash.short()).into(),
        }
    }

    /// The id of a droplet that has no loadable version (it failed before
    /// any was stored).
    pub fn unloaded() -> Self {
        Self {
            seq: 0,
            text: "0-unloaded".into(),
        }
    }

    /// Parses `{seq}-{hash12}`; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let (seq, hash) = text.split_once('-')?;
        let valid_hash =
            hash.len() == SHORT_HASH_LEN && hash.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid_hash || seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self {
            seq: seq.parse().ok()?,
            text: text.into(),
        })
    }

    /// The sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Whether this version holds content `hash`.
    pub fn has_content(&self, hash: &ContentHash) -> bool {
        self.text
            .split_once('-')
            .is_some_and(|(_, short)| short == hash.short())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The id as shared text, for headers, logs and metric labels.
    pub fn shared(&self) -> &Arc<str> {
        &self.text
    }
}

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_sequence_and_content() {
        let hash = ContentHash::of(b"wasm", Some("budget_ms = 5"));
        let id = VersionId::new(7, &hash);
        assert_eq!(id.seq(), 7);
        assert!(id.has_content(&hash));
        assert!(!id.has_content(&ContentHash::of(b"wasm", None)));
        assert_eq!(VersionId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(id.as_str().len(), 2 + SHORT_HASH_LEN);
    }

    #[test]
    fn only_well_formed_ids_parse() {
        assert!(VersionId::parse("12-0123456789ab").is_some());
        for bad in [
            "",
            "12",
            "x-0123456789ab",
            "12-0123",
            "12-0123456789az",
            "-0123456789ab",
        ] {
            assert_eq!(VersionId::parse(bad), None, "{bad}");
        }
    }
}
