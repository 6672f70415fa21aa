//! `allowed_outbound_hosts`: the only way out of a droplet.
//!
//! Each entry is `scheme://host[:port]`: `scheme` is `http` or `https`;
//! `host` is a name, an IP address, or `*.` and a domain (any subdomain of
//! it, at any depth, but not the domain itself); without a port, the
//! scheme's default port. Anything else in an entry (a path, a query, user
//! information) is refused when the manifest loads, naming the entry.
//!
//! Hosts are read as the outbound client reads them: with the WHATWG URL
//! host parser (the `url` crate, which the client itself uses), so
//! `2130706433`, `0x7f000001`, `127.1` and `0177.0.0.1` are all the
//! address 127.0.0.1, never names. An entry must write an address in its
//! usual form, and a destination that is an address matches only an entry
//! that lists that address.

use std::net::IpAddr;
use std::sync::Arc;

/// One allowed destination.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    https: bool,
    host: Host,
    port: u16,
    /// The entry as the manifest writes it: the metrics' label.
    text: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    /// A name (lower case, no trailing dot) or an IP address, exactly.
    Exact(String),
    /// Any name ending in `.{domain}`.
    SubdomainsOf(String),
}

/// The parsed `allowed_outbound_hosts` of one manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    entries: Vec<Entry>,
}

/// A destination an outbound request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// `https` or not.
    pub https: bool,
    /// The host, lower case, without brackets or trailing dot.
    pub host: String,
    /// The port (the scheme's default when the URI names none).
    pub port: u16,
}

impl Destination {
    /// The destination of `uri`, if it has a scheme we speak and a host
    /// (and no user information, which would be sent on as it is).
    pub fn of(uri: &http::Uri) -> Option<Self> {
        let https = match uri.scheme_str()? {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        if uri.authority()?.as_str().contains('@') {
            return None;
        }
        let host = canonical_host(uri.host()?).ok()?;
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        Some(Self { https, host, port })
    }

    /// The host as an IP address, when it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        match self.ip() {
            Some(IpAddr::V6(_)) => write!(f, "{scheme}://[{}]:{}", self.host, self.port),
            _ => write!(f, "{scheme}://{}:{}", self.host, self.port),
        }
    }
}

/// Lower case, without IPv6 brackets or a trailing dot.
fn normalize(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// The host as the client will connect to it: parsed by the WHATWG host
/// parser, an address written in its usual form (without brackets), a
/// name in lower-case ASCII without a trailing dot.
fn canonical_host(host: &str) -> Result<String, &'static str> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let parsed = if bare.contains(':') {
        url::Host::parse(&format!("[{bare}]"))
    } else {
        url::Host::parse(host)
    }
    .map_err(|_| "the host is not a valid name or address")?;
    let canonical = match parsed {
        url::Host::Domain(name) => normalize(&name),
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Ipv6(ip) => ip.to_string(),
    };
    if canonical.is_empty() {
        return Err("the host is empty");
    }
    Ok(canonical)
}

impl Allowlist {
    /// Parses the manifest's entries; the error names the entry and what is
    /// wrong with it.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let entries = entries
            .iter()
            .map(|entry| {
                parse_entry(entry)
                    .map(|parsed| Entry {
                        text: entry.trim().into(),
                        ..parsed
                    })
                    .map_err(|why| format!("`{entry}`: {why}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { entries })
    }

    /// Whether nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `to` is allowed.
    pub fn allows(&self, to: &Destination) -> bool {
        self.entry_for(to).is_some()
    }

    /// The index of the entry that allows `to` (its label is
    /// [`Allowlist::labels`]'s at that index).
    pub fn entry_for(&self, to: &Destination) -> Option<usize> {
        self.entries.iter().position(|entry| {
            entry.https == to.https
                && entry.port == to.port
                && match &entry.host {
                    Host::Exact(host) => *host == to.host,
                    Host::SubdomainsOf(domain) => {
                        to.ip().is_none()
                            && to
                                .host
                                .strip_suffix(domain.as_str())
                                .is_some_and(|label| !label.is_empty())
                    }
                }
        })
    }

    /// Each entry as the manifest writes it: the metrics' `allowed` label.
    pub fn labels(&self) -> impl Iterator<Item = &Arc<str>> {
        self.entries.iter().map(|entry| &entry.text)
    }

    /// Whether `to`'s host is listed as this very address (the SSRF guard
    /// lets such a destination reach a private address).
    pub fn lists_address(&self, to: &Destination) -> bool {
        to.ip().is_some() && self.allows(to)
    }
}

fn parse_entry(entry: &str) -> Result<Entry, &'static str> {
    let (scheme, rest) = entry
        .split_once("://")
        .ok_or("must be scheme://host[:port]")?;
    let https = match scheme.to_ascii_lowercase().as_str() {
        "https" => true,
        "http" => false,
        _ => return Err("the scheme must be http or https"),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@']) {
        return Err("only scheme, host and port: no path, query or user");
    }
    let (host, port) = split_port(rest)?;
    let port = port.unwrap_or(if https { 443 } else { 80 });
    let host = if let Some(domain) = host.strip_prefix("*.") {
        let wildcard = "a wildcard must be `*.` followed by a domain name";
        if domain.contains('*') {
            return Err(wildcard);
        }
        let domain = canonical_host(domain).map_err(|_| wildcard)?;
        // `*.0.1` would match `127.0.1`, which is an address.
        if domain.parse::<IpAddr>().is_ok() || domain.rsplit('.').next().is_some_and(is_numeric) {
            return Err(wildcard);
        }
        Host::SubdomainsOf(format!(".{domain}"))
    } else {
        if host.contains('*') {
            return Err("the host must be a name, an address or `*.` and a domain");
        }
        let canonical = canonical_host(host)
            .map_err(|_| "the host must be a name, an address or `*.` and a domain")?;
        if canonical.parse::<IpAddr>().is_ok() && canonical != normalize(host) {
            return Err(
                "an address must be written in its usual form (a.b.c.d, or [v6]): the client reads this one as an address",
            );
        }
        Host::Exact(canonical)
    };
    Ok(Entry {
        https,
        host,
        port,
        text: Arc::from(""),
    })
}

/// Whether a label is one the WHATWG parser reads as a number (so a name
/// ending in it is an IPv4 address): decimal, octal or `0x` hex.
fn is_numeric(label: &str) -> bool {
    let hex = label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"));
    match hex {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// `host[:port]`, with IPv6 addresses in brackets.
fn split_port(authority: &str) -> Result<(&str, Option<u16>), &'static str> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address needs its `]`")?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = port
        .map(|port| {
            port.parse::<u16>()
                .map_err(|_| "the port must be 1..=65535")
        })
        .transpose()?;
    if port == Some(0) {
        return Err("the port must be 1..=65535");
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(uri: &str) -> Destination {
        Destination::of(&uri.parse().unwrap()).unwrap()
    }

    fn list(entries: &[&str]) -> Allowlist {
        Allowlist::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn entries_allow_exactly_their_scheme_host_and_port() {
        let allowed = list(&[
            "https://api.example.com",
            "http://127.0.0.1:9000",
            "https://*.example.org",
            "http://[::1]:8080",
        ]);
        assert!(allowed.allows(&to("https://api.example.com/v1?x=1")));
        assert!(allowed.allows(&to("https://API.Example.com.:443/")));
        assert!(!allowed.allows(&to("http://api.example.com/")), "scheme");
        assert!(
            !allowed.allows(&to("https://api.example.com:8443/")),
            "port"
        );
        assert!(!allowed.allows(&to("https://evil.api.example.com/")));
        assert!(allowed.allows(&to("http://127.0.0.1:9000/x")));
        assert!(!allowed.allows(&to("http://127.0.0.1:9001/x")));
        assert!(allowed.allows(&to("https://a.example.org/")));
        assert!(allowed.allows(&to("https://a.b.example.org/")));
        assert!(
            !allowed.allows(&to("https://example.org/")),
            "the domain itself"
        );
        assert!(!allowed.allows(&to("https://badexample.org/")));
        assert!(allowed.allows(&to("http://[::1]:8080/")));
        assert!(allowed.lists_address(&to("http://127.0.0.1:9000/")));
        assert!(!allowed.lists_address(&to("https://api.example.com/")));
        assert!(!Allowlist::default().allows(&to("https://api.example.com/")));
    }

    #[test]
    fn bad_entries_are_named() {
        for (entry, why) in [
            ("api.example.com", "scheme://host"),
            ("ftp://x.com", "http or https"),
            ("https://x.com/path", "no path"),
            ("https://user@x.com", "no path"),
            ("https://x.com:0", "1..=65535"),
            ("https://x.com:99999", "1..=65535"),
            ("https://*", "host"),
            ("https://*.1.2.3.4", "domain name"),
            ("https://a.*.com", "host"),
        ] {
            let err = Allowlist::parse(&[entry.to_string()]).unwrap_err();
            assert!(err.contains(entry) && err.contains(why), "{entry}: {err}");
        }
    }

    /// The attack: numeric forms the client reads as 127.0.0.1.
    #[test]
    fn numeric_hosts_are_addresses_as_the_client_reads_them() {
        for form in ["2130706433", "0x7f000001", "127.1", "0177.0.0.1", "127.0.1"] {
            let destination = to(&format!("http://{form}:9000/"));
            assert_eq!(destination.host, "127.0.0.1", "{form}");
            assert!(
                destination.ip().is_some_and(|ip| ip.is_loopback()),
                "{form}"
            );
            // Listed as names, they are refused at load.
            let err = Allowlist::parse(&[format!("http://{form}:9000")]).unwrap_err();
            assert!(err.contains("usual form"), "{form}: {err}");
        }
        assert_eq!(to("http://0:9000/").host, "0.0.0.0");
        // A wildcard that would match numeric forms is refused, and no
        // wildcard matches an address.
        for entry in ["http://*.0.1:9000", "http://*.1:9000", "http://*.0x1:9000"] {
            let err = Allowlist::parse(&[entry.to_string()]).unwrap_err();
            assert!(err.contains("domain name"), "{entry}: {err}");
        }
        let names = list(&["http://*.example.com:9000", "http://example.net:9000"]);
        assert!(!names.allows(&to("http://127.1:9000/")));
        // An address listed in its usual form matches every way of writing it.
        let address = list(&["http://127.0.0.1:9000"]);
        assert!(address.allows(&to("http://2130706433:9000/")));
        // User information is not a destination.
        assert!(Destination::of(&"http://user:pw@example.net/".parse().unwrap()).is_none());
    }

    proptest::proptest! {
        #[test]
        fn any_entry_parses_or_is_refused_without_panicking(entry in ".{0,60}") {
            let _ = Allowlist::parse(&[entry]);
        }
    }
}
