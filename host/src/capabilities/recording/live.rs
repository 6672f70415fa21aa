//! The live host's answers, in the recording's types: conversions from the
//! generated bindings' types, for the capabilities that keep their calls
//! on a [`super::Tape`].

use super::entry::{Blob, ClaimsRecord, KvFailure, Page, TokenFailure};
use crate::bindings::fp::droplet::{auth, kv};

/// A kv error as recorded.
pub fn kv_failure(err: &kv::Error) -> KvFailure {
    match err {
        kv::Error::InvalidKey(why) => KvFailure::InvalidKey(why.clone()),
        kv::Error::KeyTooLarge => KvFailure::KeyTooLarge,
        kv::Error::ValueTooLarge => KvFailure::ValueTooLarge,
        kv::Error::QuotaExceeded => KvFailure::QuotaExceeded,
        kv::Error::NotANumber => KvFailure::NotANumber,
        kv::Error::Unavailable(why) => KvFailure::Unavailable(why.clone()),
    }
}

/// A kv result as recorded, its value converted by `ok`.
pub fn kv_result<T, R>(
    result: &Result<T, kv::Error>,
    ok: impl FnOnce(&T) -> R,
) -> Result<R, KvFailure> {
    result.as_ref().map(ok).map_err(kv_failure)
}

/// A stored value as recorded.
pub fn value(value: &Option<Vec<u8>>) -> Option<Blob> {
    value.as_ref().map(|bytes| Blob(bytes.clone()))
}

/// A page of keys as recorded.
pub fn page(page: &kv::KeyPage) -> Page {
    Page {
        keys: page.keys.clone(),
        next_cursor: page.next_cursor.clone(),
    }
}

/// Verified claims as recorded.
pub fn claims(claims: &auth::Claims) -> ClaimsRecord {
    ClaimsRecord {
        subject: claims.subject.clone(),
        issuer: claims.issuer.clone(),
        audience: claims.audience.clone(),
        expires_at: claims.expires_at,
        scopes: claims.scopes.clone(),
        json: claims.json.clone(),
    }
}

/// A token's refusal as recorded.
pub fn token_failure(err: &auth::Error) -> TokenFailure {
    match err {
        auth::Error::Malformed => TokenFailure::Malformed,
        auth::Error::Expired => TokenFailure::Expired,
        auth::Error::Invalid(why) => TokenFailure::Invalid(why.clone()),
        auth::Error::Unavailable(why) => TokenFailure::Unavailable(why.clone()),
    }
}

/// The hex SHA-256 of a token: what `auth.verify` keeps instead of it.
pub fn token_digest(token: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
