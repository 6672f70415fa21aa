//! Request → droplet + inner path, or one of the host's own endpoints.
//!
//! `/{name}/{rest}` routes to droplet `name` with path `/{rest}`; with a
//! domain configured, `Host: {name}.{domain}` routes to droplet `name` with
//! the path unchanged. Paths whose first segment starts with `_`, and the
//! host's `/health` and `/metrics`, belong to the host.

use crate::droplets::name::is_valid_name;
use crate::error::clip;

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// `GET /health`: the host's own status.
    HostHealth,
    /// `GET /metrics`: Prometheus text.
    Metrics,
    /// `/_admin/...`: the admin API, with the path after `/_admin`.
    Admin(&'a str),
    /// A droplet, with the path it sees.
    Droplet {
        /// The droplet's name.
        name: &'a str,
        /// The path inside the droplet, starting with `/`.
        path: &'a str,
    },
    /// Nothing is there; the message says why.
    NotFound(String),
}

/// A host name as routing compares it: lower case, without a port or a
/// trailing dot (`Hello.Example.COM.:8080` → `hello.example.com`).
pub fn normalize_host(host: &str) -> String {
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// How much of a request's path an error message repeats.
const ECHO_MAX: usize = 80;

/// Routes a request by its host (when `domain` is set; both normalized with
/// [`normalize_host`]) and path.
pub fn route<'a>(host: Option<&'a str>, path: &'a str, domain: Option<&str>) -> Route<'a> {
    if let (Some(host), Some(domain)) = (host, domain)
        && let Some(name) = droplet_from_host(host, domain)
    {
        return if is_valid_name(name) {
            Route::Droplet { name, path }
        } else {
            Route::NotFound(format!(
                "`{}` is not a valid droplet name",
                clip(name, ECHO_MAX)
            ))
        };
    }
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let (first, rest) = match trimmed.find('/') {
        Some(at) => (&trimmed[..at], &trimmed[at..]),
        None => (trimmed, "/"),
    };
    match first {
        "" => Route::NotFound("no droplet named in the path: use /{name}/...".to_string()),
        "health" if rest == "/" => Route::HostHealth,
        "metrics" if rest == "/" => Route::Metrics,
        "_admin" => Route::Admin(rest),
        _ if first.starts_with('_') => {
            Route::NotFound(format!("no host endpoint at {}", clip(path, ECHO_MAX)))
        }
        _ if is_valid_name(first) => Route::Droplet {
            name: first,
            path: rest,
        },
        _ => Route::NotFound(format!(
            "`{}` is not a valid droplet name",
            clip(first, ECHO_MAX)
        )),
    }
}

/// The droplet named by host `{name}.{domain}`, if the (normalized) host is
/// under `domain`.
fn droplet_from_host<'a>(host: &'a str, domain: &str) -> Option<&'a str> {
    let name = host.strip_suffix(domain)?.strip_suffix('.')?;
    (!name.is_empty() && !name.contains('.')).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_routes_to_droplet_and_inner_path() {
        assert_eq!(
            route(None, "/hello/a/b", None),
            Route::Droplet {
                name: "hello",
                path: "/a/b"
            }
        );
        assert_eq!(
            route(None, "/hello", None),
            Route::Droplet {
                name: "hello",
                path: "/"
            }
        );
        assert_eq!(
            route(None, "/hello/", None),
            Route::Droplet {
                name: "hello",
                path: "/"
            }
        );
    }

    #[test]
    fn host_paths_and_bad_names_are_not_droplets() {
        assert_eq!(route(None, "/health", None), Route::HostHealth);
        assert_eq!(
            route(None, "/_admin/droplets", None),
            Route::Admin("/droplets")
        );
        assert!(matches!(route(None, "/_other/x", None), Route::NotFound(_)));
        assert!(matches!(route(None, "/", None), Route::NotFound(_)));
        assert!(matches!(route(None, "/Hello/", None), Route::NotFound(_)));
        assert!(matches!(route(None, "/-x/", None), Route::NotFound(_)));
    }

    #[test]
    fn hosts_are_compared_case_insensitively_without_port_or_trailing_dot() {
        assert_eq!(
            normalize_host("Hello.Droplets.TEST.:8080"),
            "hello.droplets.test"
        );
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        let host = normalize_host("HELLO.droplets.test.");
        assert_eq!(
            route(Some(&host), "/a", Some("droplets.test")),
            Route::Droplet {
                name: "hello",
                path: "/a"
            }
        );
    }

    #[test]
    fn host_header_routes_under_the_domain() {
        let domain = Some("droplets.test");
        assert_eq!(
            route(Some("hello.droplets.test"), "/a", domain),
            Route::Droplet {
                name: "hello",
                path: "/a"
            }
        );
        assert_eq!(
            route(Some("hello.droplets.test"), "/health", domain),
            Route::Droplet {
                name: "hello",
                path: "/health"
            }
        );
        // Not under the domain: path routing applies.
        assert_eq!(
            route(Some("localhost:8080"), "/echo/x", domain),
            Route::Droplet {
                name: "echo",
                path: "/x"
            }
        );
        assert_eq!(
            route(Some("a.b.droplets.test"), "/echo/x", domain),
            Route::Droplet {
                name: "echo",
                path: "/x"
            }
        );
    }

    proptest::proptest! {
        #[test]
        fn any_host_and_path_route_without_panicking(
            host in proptest::option::of(".{0,80}"),
            path in ".{0,200}",
            domain in proptest::option::of("[a-zA-Z.]{0,20}"),
        ) {
            let host = host.map(|host| normalize_host(&host));
            let route = route(host.as_deref(), &path, domain.as_deref());
            if let Route::Droplet { name, path } = route {
                proptest::prop_assert!(is_valid_name(name));
                proptest::prop_assert!(path.starts_with('/') || host.is_some());
            }
        }
    }

    #[test]
    fn echoed_input_is_clipped() {
        let long = format!("/_{}", "x".repeat(10_000));
        let Route::NotFound(message) = route(None, &long, None) else {
            panic!("not found");
        };
        assert!(message.chars().count() < 120, "{message}");
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("abcdef", 3), "abc…");
    }
}
