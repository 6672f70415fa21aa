//! The security headers the host puts on every response.

use http::header::{self, HeaderValue};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::headers;

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
