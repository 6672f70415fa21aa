//! The request's trace id: taken from what the client sent (`traceparent`,
//! `x-request-id`) or made anew, carried on the response and on the
//! request a droplet sees.

/// The header that carries the host's trace id: on every response, and on
/// the request a droplet sees (replacing a client's own).
pub const TRACE_ID_HEADER: &str = "x-trace-id";

/// A new random trace id: 32 hex digits, never all zeros.
pub fn new_trace_id() -> String {
    format!("{:032x}", fastrand::u128(1..))
}

/// The trace id the request brings: its W3C `traceparent`'s, else a sane
/// `x-request-id`.
pub fn given_trace_id(headers: &http::HeaderMap) -> Option<String> {
    let from_traceparent = headers
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let mut parts = value.split('-');
            let (_version, trace) = (parts.next()?, parts.next()?);
            let valid = trace.len() == 32
                && trace.bytes().all(|b| b.is_ascii_hexdigit())
                && trace.bytes().any(|b| b != b'0');
            valid.then(|| trace.to_ascii_lowercase())
        });
    let from_request_id = || {
        headers
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .filter(|value| {
                !value.is_empty()
                    && value.len() <= 128
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
            })
            .map(str::to_string)
    };
    from_traceparent.or_else(from_request_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::headers;

    #[test]
    fn trace_id_comes_from_traceparent_then_request_id() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            given_trace_id(&headers(&[("traceparent", tp), ("x-request-id", "abc")])).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            given_trace_id(&headers(&[("x-request-id", "req-42")])).as_deref(),
            Some("req-42")
        );
        assert_eq!(
            given_trace_id(&headers(&[("x-request-id", "bad id with spaces")])),
            None
        );
        assert_eq!(given_trace_id(&headers(&[])), None);
        let fresh = new_trace_id();
        assert_eq!(fresh.len(), 32);
        assert!(fresh.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(fresh, new_trace_id());
    }
}
