//! The SSRF guard: a droplet reaches a name only at its public addresses.
//!
//! Names are resolved by the host ([`public_addresses`], the outbound
//! client's resolver), and every address that is not public — loopback, private,
//! link-local (which holds cloud metadata services such as
//! 169.254.169.254), carrier-grade NAT, unique-local, unspecified,
//! multicast, documentation and benchmarking ranges — is dropped before
//! connecting. The resolved address is checked, not the name, so a name
//! that points at `127.0.0.1` is refused like the address itself. An IP
//! address written in the URL is not resolved: it is allowed only when the
//! manifest lists that very address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why a name gave no address to connect to.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The name does not resolve.
    #[error("the name does not resolve")]
    NotFound,
    /// It resolves only to addresses that are not public.
    #[error("the name resolves only to addresses that are not public (SSRF guard)")]
    PrivateOnly,
}

impl Refused {
    /// The refusal whose text is `text`, if it is one.
    pub fn from_text(text: &str) -> Option<Self> {
        [Refused::NotFound, Refused::PrivateOnly]
            .into_iter()
            .find(|refused| refused.to_string() == text)
    }

    /// What the guest is told.
    pub fn code(&self) -> wasmtime_wasi_http::Error {
        match self {
            Refused::NotFound => wasmtime_wasi_http::Error::DnsError {
                rcode: Some("NXDOMAIN".to_string()),
                info_code: None,
            },
            Refused::PrivateOnly => wasmtime_wasi_http::Error::DestinationIpProhibited,
        }
    }
}

/// The system's answers for `host`, public addresses only: what the
/// outbound client connects to ([`super::transport::PublicOnly`]).
pub async fn public_addresses(host: &str) -> Result<Vec<SocketAddr>, Refused> {
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|_| Refused::NotFound)?
        .collect();
    if found.is_empty() {
        return Err(Refused::NotFound);
    }
    let public: Vec<SocketAddr> = found
        .into_iter()
        .filter(|addr| is_public(addr.ip()))
        .collect();
    if public.is_empty() {
        tracing::warn!(host = %host, "outbound request refused: the name resolves only to addresses that are not public");
        return Err(Refused::PrivateOnly);
    }
    Ok(public)
}

/// Whether `ip` is a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => match embedded_v4(ip) {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(ip),
        },
    }
}

/// The IPv4 address an IPv6 address carries and reaches: mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`, deprecated but still
/// routed by some stacks) and 6to4 (`2002:aabb:ccdd::`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let octets = ip.octets();
    if s[..6] == [0; 6] && !(ip.is_unspecified() || ip.is_loopback()) {
        return Some(Ipv4Addr::new(
            octets[12], octets[13], octets[14], octets[15],
        ));
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(octets[2], octets[3], octets[4], octets[5]));
    }
    None
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // Carrier-grade NAT, 100.64.0.0/10.
        || (a == 100 && (64..128).contains(&b))
        // IETF protocol assignments, 192.0.0.0/24.
        || (a == 192 && b == 0 && c == 0)
        // Benchmarking, 198.18.0.0/15.
        || (a == 198 && (b == 18 || b == 19))
        // Reserved, 240.0.0.0/4.
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // Unique local, fc00::/7.
        || (first & 0xfe00) == 0xfc00
        // Link-local, fe80::/10.
        || (first & 0xffc0) == 0xfe80
        // Documentation, 2001:db8::/32.
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        // NAT64 well-known prefix, 64:ff9b::/96, can reach IPv4 inside.
        || first == 0x0064)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
            "::169.254.169.254",
            "::10.0.0.1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn a_name_that_points_at_loopback_is_refused() {
        let refused = public_addresses("localhost")
            .await
            .expect_err("localhost is loopback");
        assert!(matches!(refused, Refused::PrivateOnly));
    }
}
