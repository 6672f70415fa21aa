//! The recording's answers in the replaying guest's terms: conversions
//! from the recording's types to the replay bindings' ones, and the
//! `wasi:http` error codes recorded as their names.

use wasmtime_wasi_http::Error as ErrorCode;

use super::bindings::fp::droplet::{auth, kv};
use crate::capabilities::recording::entry::{ClaimsRecord, KvFailure, Page, TokenFailure};

/// A recorded kv error.
pub fn kv_error(failure: KvFailure) -> kv::Error {
    match failure {
        KvFailure::InvalidKey(why) => kv::Error::InvalidKey(why),
        KvFailure::KeyTooLarge => kv::Error::KeyTooLarge,
        KvFailure::ValueTooLarge => kv::Error::ValueTooLarge,
        KvFailure::QuotaExceeded => kv::Error::QuotaExceeded,
        KvFailure::NotANumber => kv::Error::NotANumber,
        KvFailure::Unavailable(why) => kv::Error::Unavailable(why),
    }
}

/// A recorded page of keys.
pub fn page(page: Page) -> kv::KeyPage {
    kv::KeyPage {
        keys: page.keys,
        next_cursor: page.next_cursor,
    }
}

/// Recorded claims.
pub fn claims(claims: ClaimsRecord) -> auth::Claims {
    auth::Claims {
        subject: claims.subject,
        issuer: claims.issuer,
        audience: claims.audience,
        expires_at: claims.expires_at,
        scopes: claims.scopes,
        json: claims.json,
    }
}

/// A recorded token refusal.
pub fn token_error(failure: TokenFailure) -> auth::Error {
    match failure {
        TokenFailure::Malformed => auth::Error::Malformed,
        TokenFailure::Expired => auth::Error::Expired,
        TokenFailure::Invalid(why) => auth::Error::Invalid(why),
        TokenFailure::Unavailable(why) => auth::Error::Unavailable(why),
    }
}

/// A `wasi:http` error code as recorded (its `Debug` form): the codes
/// without a payload come back as themselves, any other as an internal
/// error that says what was recorded.
pub fn error_code(recorded: &str) -> ErrorCode {
    match recorded {
        "DnsTimeout" => ErrorCode::DnsTimeout,
        "DestinationNotFound" => ErrorCode::DestinationNotFound,
        "DestinationUnavailable" => ErrorCode::DestinationUnavailable,
        "DestinationIpProhibited" => ErrorCode::DestinationIpProhibited,
        "DestinationIpUnroutable" => ErrorCode::DestinationIpUnroutable,
        "ConnectionRefused" => ErrorCode::ConnectionRefused,
        "ConnectionTerminated" => ErrorCode::ConnectionTerminated,
        "ConnectionTimeout" => ErrorCode::ConnectionTimeout,
        "ConnectionReadTimeout" => ErrorCode::ConnectionReadTimeout,
        "ConnectionWriteTimeout" => ErrorCode::ConnectionWriteTimeout,
        "HttpRequestDenied" => ErrorCode::HttpRequestDenied,
        "HttpResponseIncomplete" => ErrorCode::HttpResponseIncomplete,
        "HttpResponseTimeout" => ErrorCode::HttpResponseTimeout,
        "LoopDetected" => ErrorCode::LoopDetected,
        "ConfigurationError" => ErrorCode::ConfigurationError,
        other => ErrorCode::InternalError(Some(format!("recorded: {other}"))),
    }
}
