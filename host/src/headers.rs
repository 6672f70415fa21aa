//! Headers the host puts on every response and reads from every request:
//! security headers, and the request's trace id.

use http::header::{self, HeaderValue};

/// The header that carries the host's trace id: on every response, and on
/// the request a droplet sees (replacing a client's own).
pub const TRACE_ID_HEADER: &str = "x-trace-id";

/// Security headers on every response: `nosniff`, `DENY` framing and no
/// referrer (unless a droplet set its own), and a strict CSP on the host's
/// own JSON (the dashboard's pages bring their own, only a little wider).
pub fn add_security_headers(headers: &mut http::HeaderMap, host_made: bool) {
    let defaults = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in defaults {
        if host_made || !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    if host_made && !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
}

/// The request's trace id: the trace id of a W3C `traceparent`, else a sane
/// `x-request-id`, else a new random one.
pub fn trace_id(headers: &http::HeaderMap) -> String {
    given_trace_id(headers).unwrap_or_else(new_trace_id)
}

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

/// A status's class for metrics labels: `1xx` … `5xx`.
pub fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use http::header::HeaderName;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    #[test]
    fn trace_id_comes_from_traceparent_then_request_id() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            trace_id(&headers(&[("traceparent", tp), ("x-request-id", "abc")])),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(trace_id(&headers(&[("x-request-id", "req-42")])), "req-42");
        let fresh = trace_id(&headers(&[("x-request-id", "bad id with spaces")]));
        assert_eq!(fresh.len(), 32);
        assert_ne!(fresh, trace_id(&headers(&[])));
    }

    #[test]
    fn droplets_keep_their_own_security_headers_but_host_json_does_not() {
        let mut own = headers(&[("x-frame-options", "SAMEORIGIN")]);
        add_security_headers(&mut own, false);
        assert_eq!(own[header::X_FRAME_OPTIONS], "SAMEORIGIN");
        assert!(own.get(header::CONTENT_SECURITY_POLICY).is_none());
        let mut host = headers(&[("x-frame-options", "SAMEORIGIN")]);
        add_security_headers(&mut host, true);
        assert_eq!(host[header::X_FRAME_OPTIONS], "DENY");
        assert!(host.get(header::CONTENT_SECURITY_POLICY).is_some());
    }
}
