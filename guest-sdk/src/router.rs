//! Routing by method and path pattern, with path parameters.
//!
//! ```no_run
//! use droplet_sdk::{droplet, Json, Request, Response, Result, Router};
//!
//! fn handle(req: Request) -> Response {
//!     Router::new()
//!         .get("/todos", list)
//!         .get("/todos/:id", read)
//!         .any("/static/*rest", |req: Request| format!("file {}", req.param("rest").unwrap_or("")))
//!         .handle(req)
//! }
//!
//! fn list(_req: Request) -> Json<Vec<u64>> {
//!     Json(vec![1, 2])
//! }
//!
//! fn read(req: Request) -> Result<String> {
//!     let id: u64 = req.param_as("id")?;
//!     Ok(format!("todo {id}"))
//! }
//!
//! droplet!(handle);
//! ```
//!
//! A pattern's segments are literal (`todos`), a parameter (`:id`, one
//! segment) or, last, a wildcard (`*rest`, the rest of the path, possibly
//! empty). When several routes match, the most specific wins: a literal
//! before a parameter before a wildcard, segment by segment, then the first
//! added. A path that matches no route is a 404, and one that matches only
//! routes of other methods a 405 with `Allow`, both in the host's error
//! shape. `HEAD` is served by a `GET` route unless a `HEAD` route is given;
//! a trailing `/` is ignored.

use std::borrow::Cow;

use crate::request::percent_decode;
use crate::{Error, IntoResponse, Request, Response};

type Handler = Box<dyn Fn(Request) -> Response>;

/// Routes requests to handlers by method and path pattern.
///
/// Cheap to build per request (each request runs in a fresh instance):
/// adding a route stores its pattern as given (no copy for a `&'static
/// str`) and a handler that is a function allocates nothing; matching
/// walks each pattern's bytes against the path split once, and allocates
/// only the winning route's parameters.
///
/// An invalid pattern is answered with a 500 naming it. A debug build (a
/// native `cargo test`) checks every pattern as it is added, so that any
/// request shows the mistake; a release build (the deployed droplet)
/// checks a pattern only when a request matches it, so that a correct
/// table costs nothing to check — no request is ever answered by an
/// invalid route either way.
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
    /// The first invalid pattern a debug build found: every request is
    /// then a 500 naming it.
    invalid: Option<String>,
}

struct Route {
    /// `None`: any method.
    method: Option<Cow<'static, str>>,
    pattern: Cow<'static, str>,
    handler: Handler,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.routes.len())
            .field("invalid", &self.invalid)
            .finish()
    }
}

/// Methods the shorthand methods name, kept without a copy.
fn method_name(method: &str) -> Option<Cow<'static, str>> {
    const KNOWN: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    if method == "*" {
        return None;
    }
    Some(
        match KNOWN
            .iter()
            .find(|known| known.eq_ignore_ascii_case(method))
        {
            Some(known) => Cow::Borrowed(*known),
            None => Cow::Owned(method.to_ascii_uppercase()),
        },
    )
}

impl Router {
    /// A router with no routes (every request is a 404).
    pub fn new() -> Self {
        // Room for a typical table at once, rather than growing through
        // four allocations and copies on every request.
        Self {
            routes: Vec::with_capacity(16),
            invalid: None,
        }
    }

    /// Routes `method` requests (`"*"`: any method) matching `pattern` to
    /// `handler`.
    ///
    /// ```
    /// use droplet_sdk::{Request, Router};
    ///
    /// let router = Router::new()
    ///     .route("OPTIONS", "/items", |_req: Request| "GET, POST")
    ///     .route("*", "/health", |_req: Request| "ok"); // any method
    /// assert_eq!(router.handle(Request::new("OPTIONS", "/items")).body_text(), Some("GET, POST"));
    /// ```
    pub fn route<R, F>(
        self,
        method: &str,
        pattern: impl Into<Cow<'static, str>>,
        handler: F,
    ) -> Self
    where
        F: Fn(Request) -> R + 'static,
        R: IntoResponse,
    {
        self.push(method_name(method), pattern.into(), handler)
    }

    /// Adds a route whose method is already in its canonical form.
    fn push<R, F>(
        mut self,
        method: Option<Cow<'static, str>>,
        pattern: Cow<'static, str>,
        handler: F,
    ) -> Self
    where
        F: Fn(Request) -> R + 'static,
        R: IntoResponse,
    {
        if cfg!(debug_assertions)
            && self.invalid.is_none()
            && let Err(why) = check(&pattern)
        {
            self.invalid = Some(invalid_pattern(&pattern, &why));
        }
        self.routes.push(Route {
            method,
            pattern,
            handler: Box::new(move |req| handler(req).into_response()),
        });
        self
    }

    /// `GET` (and `HEAD`) requests matching `pattern`.
    pub fn get<R: IntoResponse>(
        self,
        pattern: impl Into<Cow<'static, str>>,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Self {
        self.push(Some(Cow::Borrowed("GET")), pattern.into(), handler)
    }

    /// `POST` requests matching `pattern`.
    pub fn post<R: IntoResponse>(
        self,
        pattern: impl Into<Cow<'static, str>>,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Self {
        self.push(Some(Cow::Borrowed("POST")), pattern.into(), handler)
    }

    /// `PUT` requests matching `pattern`.
    pub fn put<R: IntoResponse>(
        self,
        pattern: impl Into<Cow<'static, str>>,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Self {
        self.push(Some(Cow::Borrowed("PUT")), pattern.into(), handler)
    }

    /// `PATCH` requests matching `pattern`.
    pub fn patch<R: IntoResponse>(
        self,
        pattern: impl Into<Cow<'static, str>>,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Self {
        self.push(Some(Cow::Borrowed("PATCH")), pattern.into(), handler)
    }

    /// `DELETE` requests matching `pattern`.
    pub fn delete<R: IntoResponse>(
        self,
        pattern: impl Into<Cow<'static, str>>,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Self {
        self.push(Some(Cow::Borrowed("DELETE")), pattern.into(), handler)
    }

    /// Requests of any method matching `pattern`.
    pub fn any<R: IntoResponse>(
        self,
        pattern: impl Into<Cow<'static, str>>,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Self {
        self.push(None, pattern.into(), handler)
    }

    /// Answers `req` with the most specific matching route's handler, or
    /// with 404, 405 or (for an invalid pattern) 500.
    ///
    /// ```
    /// use droplet_sdk::{Request, Router};
    ///
    /// let router = Router::new()
    ///     .get("/todos/:id", |req: Request| format!("todo {}", req.param("id").unwrap()))
    ///     .get("/todos/new", |_req: Request| "the form");
    /// assert_eq!(router.handle(Request::get("/todos/7")).body_text(), Some("todo 7"));
    /// assert_eq!(router.handle(Request::get("/todos/new")).body_text(), Some("the form"));
    /// assert_eq!(router.handle(Request::get("/nope")).status(), 404);
    /// let refused = router.handle(Request::new("DELETE", "/todos/7"));
    /// assert_eq!((refused.status(), refused.header("allow")), (405, Some("GET, HEAD")));
    /// ```
    pub fn handle(&self, mut req: Request) -> Response {
        if let Some(invalid) = &self.invalid {
            return Error::internal(invalid).respond();
        }
        let (best, others) = self.best_route(&req);
        if let Some(route) = best {
            if let Err(why) = check(&route.pattern) {
                return Error::internal(invalid_pattern(&route.pattern, &why)).respond();
            }
            let params = params(&route.pattern, req.path());
            req.set_params(params);
            return (route.handler)(req);
        }
        let mut allowed: Vec<&str> = Vec::with_capacity(others.len() + 1);
        for route in others {
            if let Err(why) = check(&route.pattern) {
                return Error::internal(invalid_pattern(&route.pattern, &why)).respond();
            }
            allowed.extend(route.method.as_deref());
        }
        if allowed.is_empty() {
            return Error::not_found(format!("no route for {} {}", req.method(), req.path()))
                .respond();
        }
        if allowed.contains(&"GET") {
            allowed.push("HEAD");
        }
        allowed.sort_unstable();
        allowed.dedup();
        let allow = allowed.join(", ");
        Error::new(
            405,
            "method_not_allowed",
            format!(
                "{} is not allowed on {}: use {allow}",
                req.method(),
                req.path()
            ),
        )
        .with_header("allow", allow)
        .respond()
    }

    /// The most specific route for `req`, and the routes whose pattern
    /// matches but not their method.
    fn best_route(&self, req: &Request) -> (Option<&Route>, Vec<&Route>) {
        // The path is split once (on the stack, unless it is long), and each
        // pattern walked against it.
        let mut on_stack = [""; 16];
        let mut long = Vec::new();
        let mut count = 0;
        for segment in segments(req.path()) {
            match on_stack.get_mut(count) {
                Some(slot) => *slot = segment,
                None if long.is_empty() => long.extend(on_stack.iter().copied().chain([segment])),
                None => long.push(segment),
            }
            count += 1;
        }
        let path = if long.is_empty() {
            &on_stack[..count]
        } else {
            &long[..]
        };
        // (specificity, method rank, route): lower is better.
        let mut best: Option<(u64, u8, &Route)> = None;
        let mut others: Vec<&Route> = Vec::new();
        for route in &self.routes {
            let Some(specificity) = specificity(&route.pattern, path) else {
                continue;
            };
            let method_rank = match route.method.as_deref() {
                Some(method) if method == req.method() => 0,
                None => 1,
                Some("GET") if req.method() == "HEAD" => 2,
                Some(_) => {
                    others.push(route);
                    continue;
                }
            };
            if best.is_none_or(|(spec, rank, _)| (specificity, method_rank) < (spec, rank)) {
                best = Some((specificity, method_rank, route));
            }
        }
        (best.map(|(_, _, route)| route), others)
    }
}

/// The segments of a path or pattern, without the empty ones a leading or
/// trailing `/` leaves.
fn segments(path: &str) -> Segments<'_> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    Segments {
        rest: trimmed,
        done: trimmed.is_empty(),
    }
}

/// `str::split('/')` by hand: a byte loop, where `split`'s searcher (a
/// word-at-a-time `memchr`, without SIMD in wasm) cost more than the rest of
/// routing a 20-route table together.
#[derive(Clone)]
struct Segments<'a> {
    rest: &'a str,
    done: bool,
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.done {
            return None;
        }
        let bytes = self.rest.as_bytes();
        let mut slash = 0;
        while slash < bytes.len() && bytes[slash] != b'/' {
            slash += 1;
        }
        match (slash < bytes.len()).then_some(slash) {
            Some(slash) => {
                let segment = &self.rest[..slash];
                self.rest = &self.rest[slash + 1..];
                Some(segment)
            }
            None => {
                self.done = true;
                Some(self.rest)
            }
        }
    }
}

/// The 500's message for an invalid pattern.
fn invalid_pattern(pattern: &str, why: &str) -> String {
    format!("route pattern `{pattern}`: {why}")
}

/// Whether `pattern` is one the router can match, or why not.
fn check(pattern: &str) -> Result<(), String> {
    if !pattern.starts_with('/') {
        return Err("it must start with `/`".to_string());
    }
    // Literal segments only (most routes): nothing more to check.
    if !pattern.bytes().any(|byte| byte == b':' || byte == b'*') {
        return Ok(());
    }
    let mut parts = segments(pattern);
    let mut i = 0;
    while let Some(part) = parts.next() {
        i += 1;
        let name = match part.strip_prefix(':') {
            Some(name) => name,
            None => match part.strip_prefix('*') {
                Some(_) if parts.clone().next().is_some() => {
                    return Err(format!("the wildcard `{part}` must be the last segment"));
                }
                Some(name) => name,
                None => continue,
            },
        };
        if name.is_empty() {
            return Err(format!("segment {i} needs a name after `{part}`"));
        }
        let taken = segments(pattern)
            .take(i - 1)
            .any(|earlier| earlier.get(1..) == Some(name) && earlier.starts_with([':', '*']));
        if taken {
            return Err(format!("the parameter `{name}` appears twice"));
        }
    }
    Ok(())
}

/// How specific `pattern` is when `path` matches it (`None`: it does not):
/// two bits per segment, most significant first — a literal 0, a parameter
/// 1, a wildcard 2 — so that a smaller number is more specific, segment by
/// segment. Allocates nothing.
fn specificity(pattern: &str, path: &[&str]) -> Option<u64> {
    // The pattern's bytes are compared with the path's segments as they are
    // walked, so that most routes are refused at their first byte.
    let mut pattern = pattern.as_bytes();
    if let [b'/', rest @ ..] = pattern {
        pattern = rest;
    }
    if let [rest @ .., b'/'] = pattern {
        pattern = rest;
    }
    if pattern.is_empty() {
        return path.is_empty().then_some(0);
    }
    let (mut at, mut key) = (0, 0u64);
    for i in 0.. {
        let shift = 62u32.saturating_sub(2 * i as u32);
        match pattern.get(at) {
            Some(b'*') => return Some(key | (2 << shift)),
            Some(b':') => {
                path.get(i)?;
                key |= 1 << shift;
                at += pattern[at..]
                    .iter()
                    .position(|&byte| byte == b'/')
                    .unwrap_or(pattern.len() - at);
            }
            _ => {
                let segment = path.get(i)?.as_bytes();
                let literal = pattern.get(at..at + segment.len())?;
                // The first byte before the rest: most routes differ there.
                if literal.first() != segment.first()
                    || literal != segment
                    || pattern.get(at + segment.len()).is_some_and(|&b| b != b'/')
                {
                    return None;
                }
                at += segment.len();
            }
        }
        if at >= pattern.len() {
            return (i + 1 == path.len()).then_some(key);
        }
        at += 1;
    }
    None
}

/// The parameters `path` gives the matching `pattern`, percent-decoded.
fn params(pattern: &str, path: &str) -> Vec<(String, String)> {
    let mut values = segments(path);
    let mut params = Vec::new();
    for part in segments(pattern) {
        if let Some(name) = part.strip_prefix('*') {
            let rest: Vec<&str> = values.by_ref().collect();
            params.push((name.to_string(), percent_decode(&rest.join("/"), false)));
            break;
        }
        let value = values.next().unwrap_or_default();
        if let Some(name) = part.strip_prefix(':') {
            params.push((name.to_string(), percent_decode(value, false)));
        }
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        let echo = |name: &'static str| {
            move |req: Request| {
                let params: Vec<String> = req
                    .params()
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                format!("{name} {}", params.join(" "))
            }
        };
        Router::new()
            .get("/", echo("root"))
            .get("/todos", echo("list"))
            .post("/todos", echo("create"))
            .get("/todos/:id", echo("read"))
            .delete("/todos/:id", echo("delete"))
            .get("/todos/:id/tags/:tag", echo("tag"))
            .get("/todos/special", echo("special"))
            .any("/static/*rest", echo("static"))
            .route("HEAD", "/only-head", echo("head"))
    }

    fn call(router: &Router, method: &str, path: &str) -> (u16, String) {
        let response = router.handle(Request::new(method, path));
        (
            response.status(),
            response.body_text().unwrap_or_default().to_string(),
        )
    }

    #[test]
    fn routes_by_method_and_most_specific_pattern() {
        let router = router();
        assert_eq!(call(&router, "GET", "/"), (200, "root ".into()));
        assert_eq!(call(&router, "GET", "/todos/"), (200, "list ".into()));
        assert_eq!(call(&router, "POST", "/todos"), (200, "create ".into()));
        assert_eq!(call(&router, "GET", "/todos/7"), (200, "read id=7".into()));
        assert_eq!(
            call(&router, "GET", "/todos/special"),
            (200, "special ".into())
        );
        assert_eq!(call(&router, "HEAD", "/todos/7"), (200, "read id=7".into()));
        assert_eq!(
            call(&router, "GET", "/todos/a%20b/tags/x+y"),
            (200, "tag id=a b tag=x+y".into())
        );
        assert_eq!(
            call(&router, "PUT", "/static/css/site.css"),
            (200, "static rest=css/site.css".into())
        );
        assert_eq!(
            call(&router, "GET", "/static"),
            (200, "static rest=".into())
        );
        assert_eq!(call(&router, "HEAD", "/only-head"), (200, "head ".into()));
    }

    #[test]
    fn answers_404_and_405_in_the_host_error_shape() {
        let router = router();
        let (status, body) = call(&router, "GET", "/todos/7/more");
        assert_eq!(status, 404);
        assert!(body.contains(r#""code":"not_found""#), "{body}");
        let response = router.handle(Request::new("PATCH", "/todos/7"));
        assert_eq!(response.status(), 405);
        assert_eq!(response.header("allow"), Some("DELETE, GET, HEAD"));
        assert!(response.body_text().unwrap().contains("method_not_allowed"));
    }

    const INVALID: [(&str, &str); 4] = [
        ("todos", "/todos"),
        ("/a/*rest/b", "/a/x/b"),
        ("/:", "/x"),
        ("/:id/:id", "/1/2"),
    ];

    #[test]
    fn an_invalid_pattern_is_a_500_naming_it() {
        for (bad, _) in INVALID {
            let router = Router::new()
                .get("/todos", |_req: Request| "fine")
                .get(bad, |_req: Request| "never");
            // A debug build finds it as it is added: every request says so
            // (naming it in the host's log, not to the client).
            let response = router.handle(Request::get("/todos"));
            assert_eq!(response.status(), 500, "{bad}");
            assert!(router.invalid.as_deref().unwrap().contains(bad), "{bad}");
        }
    }

    /// What a release build does: the pattern is checked when a request
    /// matches it, by method or by pattern alone.
    #[test]
    fn a_release_build_checks_a_pattern_when_a_request_matches_it() {
        for (bad, path) in INVALID {
            let mut router = Router::new()
                .get("/fine", |_req: Request| "fine")
                .post(bad, |_req: Request| "never");
            router.invalid = None;
            assert_eq!(router.handle(Request::get("/fine")).status(), 200);
            for method in ["POST", "GET"] {
                let response = router.handle(Request::new(method, path));
                assert_eq!(response.status(), 500, "{method} {path} for {bad}");
            }
        }
    }

    #[test]
    fn a_path_longer_than_the_stack_split_still_routes() {
        let router = Router::new().get("/deep/*rest", |req: Request| {
            req.param("rest").unwrap_or("").len().to_string()
        });
        let long = format!("/deep/{}", vec!["s"; 40].join("/"));
        assert_eq!(router.handle(Request::get(&long)).body_text(), Some("79"));
        let router = Router::new().get(long.clone(), |_req: Request| "exact");
        assert_eq!(
            router.handle(Request::get(&long)).body_text(),
            Some("exact")
        );
        assert_eq!(
            router.handle(Request::get(&format!("{long}/x"))).status(),
            404
        );
    }

    /// The byte walk agrees with matching segment by segment, for every
    /// valid pattern and path of up to three segments over a small alphabet.
    #[test]
    fn the_byte_walk_agrees_with_matching_segment_by_segment() {
        fn reference(pattern: &str, path: &str) -> Option<u64> {
            let mut path = segments(path);
            let mut key = 0u64;
            for (i, part) in segments(pattern).enumerate() {
                let shift = 62u32.saturating_sub(2 * i as u32);
                if part.starts_with('*') {
                    return Some(key | (2 << shift));
                }
                let segment = path.next()?;
                if part.starts_with(':') {
                    key |= 1 << shift;
                } else if part != segment {
                    return None;
                }
            }
            path.next().is_none().then_some(key)
        }
        fn joined(parts: &[&str], trailing: bool) -> String {
            let mut s = format!("/{}", parts.join("/"));
            if trailing && !parts.is_empty() {
                s.push('/');
            }
            s
        }
        let words = ["a", "ab", "b", "", "a:b"];
        let pattern_parts = ["a", "ab", "b", "", ":x", ":y", "*r"];
        let mut lists: Vec<Vec<&str>> = vec![vec![]];
        for len in 1..=3 {
            let mut more = Vec::new();
            for list in lists.iter().filter(|l| l.len() == len - 1) {
                for part in pattern_parts {
                    let mut next = list.clone();
                    next.push(part);
                    more.push(next);
                }
            }
            lists.extend(more);
        }
        let mut paths = vec![String::from("/"), String::new()];
        for a in words {
            paths.push(joined(&[a], false));
            for b in words {
                paths.push(joined(&[a, b], false));
                paths.push(joined(&[a, b], true));
                for c in words {
                    paths.push(joined(&[a, b, c], false));
                }
            }
        }
        let mut compared = 0;
        for list in &lists {
            for trailing in [false, true] {
                let pattern = joined(list, trailing);
                if check(&pattern).is_err() {
                    continue;
                }
                for path in &paths {
                    let split: Vec<&str> = segments(path).collect();
                    assert_eq!(
                        specificity(&pattern, &split),
                        reference(&pattern, path),
                        "{pattern} against {path}"
                    );
                    compared += 1;
                }
            }
        }
        assert!(compared > 10_000, "{compared}");
    }
}
